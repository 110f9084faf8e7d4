//! The console in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (chromedriver, started and stopped by its PID here). It signs in, watches a pipeline's jobs
//! change state without a reload, follows a job's coloured output, reads why a job is pending,
//! keeps its event sequence intact when the node serving the page is killed, and shows a
//! viewer no action (the API refuses the one it tries). Each page's screenshot is saved under
//! `$CARGO_TARGET_TMPDIR/console-screenshots` (`FLOTILLA_SCREENSHOT_DIR` to choose).
//!
//! Chromium and chromedriver are required: `apt-get install chromium chromium-driver` (`.ci/run`
//! installs them); without them the test fails and says so.

mod common;
use common::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thirtyfour::prelude::*;

const WAIT: Duration = Duration::from_secs(30);

/// chromedriver, stopped by its PID when dropped.
struct Driver {
    child: std::process::Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let child = std::process::Command::new(&path)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {path}: {e}; install it: apt-get install -y chromium chromium-driver (or set CHROMEDRIVER)")
            });
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium_binary() -> String {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return path;
    }
    for candidate in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    panic!("no Chromium found: apt-get install -y chromium chromium-driver (or set CHROMIUM)");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> WebDriver {
    // thirtyfour's own HTTP client (plain HTTP to chromedriver) asks for rustls's process-wide
    // provider, which this build leaves to each client: ring, the build's one crypto stack.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(&chromium_binary()).unwrap();
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        // The test cluster's CA is its own; the browser is told to accept it.
        "--ignore-certificate-errors",
        "--window-size=1280,900",
        &format!("--user-data-dir={}", profile.display()),
    ] {
        caps.add_arg(arg).unwrap();
    }
    let url = format!("http://127.0.0.1:{}", driver.port);
    let deadline = Instant::now() + WAIT;
    loop {
        match WebDriver::new(&url, caps.clone()).await {
            Ok(d) => return d,
            Err(e) if Instant::now() > deadline => panic!("chromedriver at {url} never started a browser: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn screenshots() -> PathBuf {
    let dir = std::env::var("FLOTILLA_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(d: &WebDriver, name: &str) {
    d.screenshot(&screenshots().join(format!("{name}.png"))).await.unwrap();
}

/// Runs `script` until it returns `true` (bounded by `WAIT`).
async fn until(d: &WebDriver, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = d.execute(script, Vec::new()).await.map(|r| r.json().clone());
        if matches!(v, Ok(Value::Bool(true))) {
            return;
        }
        if Instant::now() > deadline {
            let html = d.source().await.unwrap_or_default();
            panic!("{what} never happened (last: {v:?})\n{}", &html[..html.len().min(4000)]);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn eval(d: &WebDriver, script: &str) -> Value {
    d.execute(script, Vec::new()).await.unwrap().json().clone()
}

async fn sign_in(d: &WebDriver, base: &str, token: &str) {
    d.goto(format!("{base}/ui/pipelines")).await.unwrap();
    let url = d.current_url().await.unwrap();
    assert!(url.path().ends_with("/ui/sign-in"), "not sent to sign in: {url}");
    d.find(By::Id("token")).await.unwrap().send_keys(token).await.unwrap();
    d.find(By::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(d, "signed in", "return location.pathname === '/ui/pipelines'").await;
    // The cookie is HttpOnly: script cannot read it.
    assert_eq!(
        eval(d, "return document.cookie.includes('flotilla_session')").await,
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lives_in_a_browser_through_a_node_kill() {
    let mut c = Cluster::start(3, &["--leader-tick-ms", "100"]).await;
    c.register_pool(1).await;
    let tight = json!({ "name": "tight", "provider": "process", "capacity": { "cpu_millis": 200, "memory_mib": 256 }, "max_workers": 1, "labels": { "lane": "tight" } });
    assert_eq!(c.post(1, "/v1/pools", tight).await.0, 201);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let d = browser(&driver, profile.path()).await;
    let origins: Vec<String> = (1..=3).map(|id| format!("https://{}", c.node(id).api_addr)).collect();
    let base = |id: u64| origins[id as usize - 1].clone();

    // Sign in on node 2 (screenshot of the form first).
    d.goto(format!("{}/ui/sign-in", base(2))).await.unwrap();
    shot(&d, "sign-in").await;
    sign_in(&d, &base(2), c.token.get().unwrap()).await;

    // A pipeline whose jobs change state while the page watches, without a reload.
    let spec = json!({ "name": "build-and-test", "jobs": [
        job_spec("build", json!({ "steps": ["sleep 1", "printf '\\033[32mgreen\\033[0m build ok\\n'"] })),
        job_spec("test", json!({ "needs": ["build"], "steps": ["sleep 1", "echo tests passed"] })),
        job_spec("lint", json!({ "needs": ["build"], "steps": ["echo lint clean"] })),
    ]});
    // Submitted through the console's own form (its script sends the session's CSRF value),
    // which then shows the new pipeline's page.
    d.find(By::Css("details.submit summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    d.execute(
        "document.getElementById('submit-spec').value = arguments[0]; return true",
        vec![Value::String(spec.to_string())],
    )
    .await
    .unwrap();
    d.find(By::Css("#submit-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &d,
        "the new pipeline's page shown",
        "return /^\\/ui\\/pipelines\\/[0-9]+$/.test(location.pathname)",
    )
    .await;
    let url = d.current_url().await.unwrap();
    let p: u64 = url.path().rsplit('/').next().unwrap().parse().unwrap();
    let (s, v) = c.get(1, &format!("/v1/pipelines/{p}?consistency=linearizable")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "build-and-test");
    let build = v["jobs"][0].as_u64().unwrap();
    eval(&d, "window.notReloaded = true; return true").await;
    until(
        &d,
        "every job shown as succeeded",
        "return [...document.querySelectorAll('tr[data-job] [data-state]')].every(e => e.dataset.state === 'succeeded') && document.querySelectorAll('tr[data-job]').length === 3",
    )
    .await;
    assert_eq!(
        eval(
            &d,
            "return window.notReloaded === true && window.flotilla.refreshes > 0"
        )
        .await,
        true
    );
    until(
        &d,
        "the pipeline shown as succeeded",
        "return document.getElementById('pipeline-state').textContent.trim() === 'SUCCEEDED'",
    )
    .await;
    shot(&d, "pipeline").await;

    // The job's output, with its colours.
    d.goto(format!("{}/ui/jobs/{build}", base(2))).await.unwrap();
    until(
        &d,
        "the output shown",
        "return document.getElementById('output').textContent.includes('build ok')",
    )
    .await;
    assert_eq!(
        eval(&d, "return document.querySelector('#output .fg-32').textContent").await,
        "green"
    );
    shot(&d, "job").await;

    // A manual job approved from its page (the confirmation accepted): its state follows
    // live, and the page says who approved it.
    let gated =
        json!({ "name": "gated", "jobs": [job_spec("ship", json!({ "manual": true, "steps": ["echo shipped"] }))] });
    let (s, v) = c.post(1, "/v1/pipelines", gated).await;
    assert_eq!(s, 201, "{v}");
    let ship = v["jobs"][0]["id"].as_u64().unwrap();
    d.goto(format!("{}/ui/jobs/{ship}", base(2))).await.unwrap();
    until(
        &d,
        "the approve button shown",
        "return !!document.getElementById('approve')",
    )
    .await;
    eval(&d, "window.confirm = () => true; return true").await;
    d.find(By::Id("approve")).await.unwrap().click().await.unwrap();
    until(
        &d,
        "the approved job shown as succeeded",
        "return document.getElementById('job-state').dataset.state === 'succeeded'",
    )
    .await;
    let gate = eval(&d, "return document.getElementById('job-gate').textContent").await;
    assert!(gate.as_str().unwrap().starts_with("approved by "), "{gate}");

    // Why pending: the tight pool runs one worker, taken by a long job.
    let hog = json!({ "name": "hog", "jobs": [job_spec("hog", json!({ "labels": { "lane": "tight" }, "steps": ["sleep 120"] }))] });
    let (s, v) = c.post(1, "/v1/pipelines", hog).await;
    assert_eq!(s, 201, "{v}");
    let hog_pipeline = v["pipeline"].as_u64().unwrap();
    c.wait_get(1, &format!("/v1/pipelines/{hog_pipeline}"), "the hog runs", |_, v| {
        v["job_states"][0]["state"] == "RUNNING"
    })
    .await;
    let waiter = json!({ "name": "waiter", "jobs": [job_spec("waiter", json!({ "labels": { "lane": "tight" } }))] });
    let (s, v) = c.post(1, "/v1/pipelines", waiter).await;
    assert_eq!(s, 201, "{v}");
    let waiting = v["jobs"][0]["id"].as_u64().unwrap();
    d.goto(format!("{}/ui/jobs/{waiting}", base(2))).await.unwrap();
    until(
        &d,
        "the reasons shown",
        "return !!document.getElementById('why-pending')",
    )
    .await;
    let why = eval(&d, "return document.getElementById('why-pending').textContent").await;
    let why = why.as_str().unwrap();
    assert!(why.contains("pool tight runs its most workers (1 of 1)"), "{why}");
    assert!(why.contains("pool main lacks label lane=tight"), "{why}");
    shot(&d, "why-pending").await;
    assert_eq!(
        c.post(1, &format!("/v1/pipelines/{hog_pipeline}/cancel"), json!({}))
            .await
            .0,
        200
    );

    // A job's output followed from node 3, which is killed halfway: the page resumes on
    // another node after the bytes it has, and shows every line once.
    c.lead(1).await;
    let counter = json!({ "name": "counter", "jobs": [job_spec("count", json!({ "steps": ["for i in $(seq 1 40); do echo line $i; sleep 0.1; done"] }))] });
    let (s, v) = c.post(1, "/v1/pipelines", counter).await;
    assert_eq!(s, 201, "{v}");
    let count_job = v["jobs"][0]["id"].as_u64().unwrap();
    d.goto(format!("{}/ui/jobs/{count_job}", base(3))).await.unwrap();
    until(
        &d,
        "the first lines shown",
        "return [...document.querySelectorAll('#output .line')].some(l => l.textContent === 'line 5')",
    )
    .await;
    c.node_mut(3).kill9();
    until(
        &d,
        "the output complete",
        "return document.getElementById('output-state').textContent === 'complete'",
    )
    .await;
    let lines: Vec<String> = serde_json::from_value(
        eval(&d, "return [...document.querySelectorAll('#output .line')].map(l => l.textContent).filter(t => t.startsWith('line '))").await,
    )
    .unwrap();
    let wanted: Vec<String> = (1..=40).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, wanted, "every line once, in order, across the kill");
    c.node_mut(3).spawn();
    c.wait_http(3).await;

    // The event feed on node 2; node 2 is killed; the feed goes on from another node with
    // nothing missed and nothing twice.
    d.goto(format!("{}/ui/events", base(2))).await.unwrap();
    until(&d, "the stream open", "return window.flotilla.origin !== null").await;
    for i in 0..3 {
        let (s, v) = c.submit(1, &format!("before-{i}"), None).await;
        assert_eq!(s, 201, "{v}");
    }
    until(&d, "events shown", "return window.flotilla.ids.length >= 3").await;
    let first = eval(&d, "return window.flotilla.ids[0]")
        .await
        .as_str()
        .unwrap()
        .to_string();
    c.node_mut(2).kill9();
    for i in 0..3 {
        let (s, v) = c.submit(1, &format!("after-{i}"), None).await;
        assert_eq!(s, 201, "{v}");
    }
    let origin_2 = base(2);
    until(
        &d,
        "the stream resumed on another node",
        &format!("return window.flotilla.origin !== null && window.flotilla.origin !== '{origin_2}' && window.flotilla.reconnects > 0"),
    )
    .await;
    // Everything the surviving leader's journal holds after the page's first event, once
    // the page has caught up with its last.
    let deadline = Instant::now() + WAIT;
    let (expected, shown, rows) = loop {
        let r = c
            .authorized(
                c.http
                    .get(c.node(1).url(&format!("/v1/events?after={first}&follow=false"))),
            )
            .send()
            .await
            .unwrap();
        let text = r.text().await.unwrap();
        let mut expected = vec![first.clone()];
        expected.extend(text.lines().filter_map(|l| {
            l.strip_prefix("id: ")
                .or(l.strip_prefix("id:"))
                .map(|s| s.trim().to_string())
        }));
        // The page's ids and its feed's rows, read together (the page may receive more events
        // between two reads: the cluster goes on working).
        let page = eval(
            &d,
            "return { ids: window.flotilla.ids, rows: [...document.querySelectorAll('#event-feed li')].map(li => li.dataset.id).reverse() }",
        )
        .await;
        let shown: Vec<String> = serde_json::from_value(page["ids"].clone()).unwrap();
        let rows: Vec<String> = serde_json::from_value(page["rows"].clone()).unwrap();
        if shown == expected || Instant::now() > deadline {
            break (expected, shown, rows);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(shown, expected, "the page's events against the journal of node 1");
    assert!(
        expected.len() > 6,
        "the run produced events after the kill: {expected:?}"
    );
    // The feed shows each of them once, newest first.
    assert_eq!(rows, shown, "the feed's rows");
    assert_eq!(
        eval(&d, "return window.flotilla.errors").await,
        json!([]),
        "script errors"
    );
    shot(&d, "events").await;

    // The cluster and pools pages, from node 1 now.
    d.goto(format!("{}/ui/cluster", base(1))).await.unwrap();
    until(
        &d,
        "the members listed",
        "return document.querySelectorAll('tr[data-member]').length === 3",
    )
    .await;
    // Each member is asked: node 2, killed above, is not ready; the others are.
    until(
        &d,
        "the members' health shown",
        "return document.querySelectorAll('[data-health=ready]').length === 2 && document.querySelector('tr[data-member=\"2\"] [data-health=not-ready]') !== null",
    )
    .await;
    // Node 1 saw the transfer to itself: at least two leaders in its record.
    until(
        &d,
        "the leadership changes listed",
        "return document.querySelectorAll('#leader-changes tbody tr').length >= 2",
    )
    .await;
    shot(&d, "cluster").await;
    d.goto(format!("{}/ui/pools", base(1))).await.unwrap();
    until(
        &d,
        "the pools listed",
        "return document.querySelectorAll('tr[data-pool]').length === 2",
    )
    .await;
    shot(&d, "pools").await;

    // A viewer: no action offered, and the one it tries is refused by the API.
    let (s, v) = c
        .post(1, "/v1/tokens", json!({ "name": "look", "role": "viewer" }))
        .await;
    assert_eq!(s, 201, "{v}");
    d.find(By::Css(".session button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&d, "signed out", "return location.pathname === '/ui/sign-in'").await;
    sign_in(&d, &base(1), v["token"].as_str().unwrap()).await;
    let (s, v) = c
        .post(
            1,
            "/v1/pipelines",
            json!({ "name": "slow", "jobs": [job_spec("slow", json!({ "steps": ["sleep 60"] }))] }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let slow = v["pipeline"].as_u64().unwrap();
    d.goto(format!("{}/ui/pipelines/{slow}", base(1))).await.unwrap();
    assert_eq!(
        eval(&d, "return document.querySelectorAll('[data-action]').length").await,
        0
    );
    let refused = d
        .execute_async(
            &format!(
                "const done = arguments[0]; fetch('/v1/pipelines/{slow}/cancel', {{ method: 'POST', headers: {{ 'Content-Type': 'application/json', 'X-Flotilla-Csrf': document.body.dataset.csrf }}, body: '{{}}' }}).then(r => done(r.status))"
            ),
            Vec::new(),
        )
        .await
        .unwrap()
        .json()
        .clone();
    assert_eq!(refused, 403);
    shot(&d, "viewer").await;
    assert_eq!(
        c.post(1, &format!("/v1/pipelines/{slow}/cancel"), json!({})).await.0,
        200
    );
    d.quit().await.unwrap();
}
