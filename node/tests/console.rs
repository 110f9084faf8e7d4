//! The web console over HTTP (the browser test in `console_browser.rs` drives the same pages in
//! Chromium): signing in sets an HttpOnly, SameSite=Strict cookie and nothing else reaches a
//! page; the cookie changes nothing without the session's CSRF value; the BFF answers a page's
//! data in one request; pages render the pipeline's graph and a pending job's reasons; actions
//! appear only for roles the API admits; only members' origins may read across nodes.

mod common;
use common::*;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};

/// A client that sends no token and follows no redirect.
fn browser() -> reqwest::Client {
    client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `pairs` as an `application/x-www-form-urlencoded` body, as a browser's form sends it.
fn form(request: reqwest::RequestBuilder, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    request
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.join("&"))
}

/// Signs in with `token` at node `id` once the token has reached it; returns the cookie pair
/// (`flotilla_session=...`).
async fn sign_in(c: &Cluster, id: u64, token: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let r = loop {
        let r = form(
            browser().post(c.node(id).url("/ui/sign-in")),
            &[("token", token), ("next", "/ui/cluster")],
        )
        .send()
        .await
        .unwrap();
        if r.status() != 401 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(r.headers()[LOCATION], "/ui/cluster");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(part), "{set}");
    }
    set.split(';').next().unwrap().to_string()
}

async fn page(id: u64, c: &Cluster, cookie: &str, path: &str) -> (u16, String) {
    let r = browser()
        .get(c.node(id).url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of `data-csrf` in a page.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("data-csrf=\"")
        .expect("the page carries the session's csrf value")
        + 11;
    html[at..].split('"').next().unwrap().to_string()
}

async fn create_token(c: &Cluster, role: &str) -> String {
    let (s, v) = c
        .post(
            1,
            "/v1/tokens",
            json!({ "name": format!("console-{role}"), "role": role }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_reads_live_pages_and_acts_only_with_csrf_and_role() {
    let c = Cluster::start(3, &["--leader-tick-ms", "100"]).await;
    c.register_pool(1).await;

    // No session: pages send the browser to sign in, the BFF answers 401, assets are public.
    let r = browser()
        .get(c.node(2).url("/ui/pipelines?state=RUNNING"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()[LOCATION],
        "/ui/sign-in?next=/ui/pipelines%3Fstate%3DRUNNING"
    );
    let r = browser().get(c.node(2).url("/ui/api/cluster")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = browser()
        .get(c.node(2).url("/ui/assets/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("EventSource"));

    // A bad token is refused on the form, with the reason.
    let unknown = format!("flt_{}", "0".repeat(64));
    let r = form(browser().post(c.node(2).url("/ui/sign-in")), &[("token", &unknown)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("unknown or revoked token"));

    let admin = c.token.get().unwrap().clone();
    let cookie = sign_in(&c, 2, &admin).await;

    // A pipeline with a graph: build -> (test, lint) -> deploy, and one job too big to place.
    let spec = json!({ "name": "web", "jobs": [
        job_spec("build", json!({})),
        job_spec("test", json!({ "needs": ["build"] })),
        job_spec("lint", json!({ "needs": ["build"] })),
        job_spec("deploy", json!({ "needs": ["test", "lint"], "steps": ["sleep 30"] })),
    ]});
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let p = v["pipeline"].as_u64().unwrap();

    // The BFF: the pipeline with its jobs and edges in one answer, from any node.
    let (s, body) = page(3, &c, &cookie, &format!("/ui/api/pipelines/{p}")).await;
    assert_eq!(s, 200, "{body}");
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["jobs"].as_array().unwrap().len(), 4);
    assert_eq!(detail["edges"].as_array().unwrap().len(), 4, "{detail}");
    assert!(detail["freshness"]["applied_index"].as_u64().unwrap() > 0);

    // A followed log resumes after the bytes a reader already has (on any node).
    let build = detail["jobs"][0]["id"].as_u64().unwrap();
    c.wait_get(1, &format!("/v1/jobs/{build}"), "build succeeded", |_, v| {
        v["state"] == "SUCCEEDED"
    })
    .await;
    let log = |node: u64, query: &'static str| {
        let url = c.node(node).url(&format!("/v1/jobs/{build}/logs{query}"));
        let request = c.authorized(c.http.get(url));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let whole = log(1, "").await;
    assert!(whole.len() > 3, "{whole:?}");
    assert_eq!(log(3, "?follow=true&offset=3").await, whole[3..]);
    assert_eq!(log(2, "?follow=true&offset=100000").await, "");

    // The page: the graph, a box per job linking to it, the freshness line.
    let (s, html) = page(2, &c, &cookie, &format!("/ui/pipelines/{p}")).await;
    assert_eq!(s, 200);
    assert!(html.contains("<svg"), "{html}");
    assert_eq!(html.matches("class=\"edge\"").count(), 4);
    assert!(html.contains("read on node"));
    let csrf = csrf_of(&html);

    // The list, filtered; a partial answers the live region alone.
    let (s, html) = page(2, &c, &cookie, "/ui/pipelines?state=RUNNING").await;
    assert_eq!(s, 200);
    assert!(html.contains(&format!("href=\"/ui/pipelines/{p}\"")));
    let (_, partial) = page(2, &c, &cookie, "/ui/pipelines?partial=1").await;
    assert!(!partial.contains("<html") && partial.contains("<table"));
    let (s, _) = page(2, &c, &cookie, "/ui/pipelines?state=BOGUS").await;
    assert_eq!(s, 400);

    // Why pending: a job that no pool can fit now (the pool drained after it was submitted).
    assert_eq!(c.post(1, "/v1/pools/main/drain", json!({})).await.0, 200);
    let (s, v) = c
        .post(
            1,
            "/v1/pipelines",
            json!({ "name": "stuck", "jobs": [job_spec("wait", json!({}))] }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let stuck = v["jobs"][0]["id"].as_u64().unwrap();
    let stuck_pipeline = v["pipeline"].as_u64().unwrap();
    // The name search: part of the name, any case; a long one is refused naming the field.
    let (s, html) = page(1, &c, &cookie, "/ui/pipelines?name=TUC").await;
    assert_eq!(s, 200);
    assert!(
        html.contains(&format!("href=\"/ui/pipelines/{stuck_pipeline}\"")),
        "{html}"
    );
    assert!(!html.contains(&format!("href=\"/ui/pipelines/{p}\"")), "{html}");
    let (s, _) = page(1, &c, &cookie, &format!("/ui/pipelines?name={}", "x".repeat(2000))).await;
    assert_eq!(s, 400);
    let why = c
        .wait_get(
            2,
            &format!("/v1/jobs/{stuck}/why-pending"),
            "the job is known",
            |s, _| s == 200,
        )
        .await;
    assert_eq!(why["ready"], false, "{why}");
    assert!(
        why["pools"][0]["reason"].as_str().unwrap().contains("draining"),
        "{why}"
    );
    let (s, html) = page(2, &c, &cookie, &format!("/ui/jobs/{stuck}")).await;
    assert_eq!(s, 200);
    assert!(
        html.contains("Why is this job pending?") && html.contains("pool main is draining"),
        "{html}"
    );

    // The cookie alone changes nothing; with the session's CSRF value it does.
    let cancel = c.node(2).url(&format!("/v1/jobs/{stuck}/cancel"));
    let r = browser()
        .post(&cancel)
        .header(COOKIE, &cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "csrf");
    let r = browser()
        .post(&cancel)
        .header(COOKIE, &cookie)
        .header("X-Flotilla-Csrf", "0".repeat(64))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = browser()
        .post(&cancel)
        .header(COOKIE, &cookie)
        .header("X-Flotilla-Csrf", &csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status() == 307, "{}", r.status());

    // A viewer sees no action and may take none, whatever it sends.
    let viewer = create_token(&c, "viewer").await;
    let viewer_cookie = sign_in(&c, 2, &viewer).await;
    let (_, html) = page(2, &c, &viewer_cookie, &format!("/ui/pipelines/{p}")).await;
    assert!(!html.contains("data-action"), "a viewer is offered an action");
    assert!(!html.contains("Submit a pipeline"));
    let (_, html) = page(2, &c, &viewer_cookie, "/ui/pools").await;
    assert!(!html.contains("data-action"));
    let r = browser()
        .post(c.node(2).url(&format!("/v1/pipelines/{p}/cancel")))
        .header(COOKIE, &viewer_cookie)
        .header("X-Flotilla-Csrf", csrf_of(&html))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (_, html) = page(2, &c, &cookie, &format!("/ui/pipelines/{p}")).await;
    assert!(
        html.contains(&format!("data-action=\"/v1/pipelines/{p}/cancel\"")),
        "the admin is offered cancel"
    );

    // Cross-node reads: a member's origin may read with credentials, another origin may not.
    let member = format!("https://{}", c.node(1).api_addr);
    let r = browser()
        .get(c.node(3).url("/ui/api/cluster"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, &member)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], member.as_str());
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let r = browser()
        .get(c.node(3).url("/ui/api/cluster"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Pools and cluster pages render their tables; the cluster's BFF names the leader.
    let (s, html) = page(1, &c, &cookie, "/ui/pools").await;
    assert_eq!(s, 200);
    assert!(html.contains("data-pool=\"main\"") && html.contains("Undrain"));
    let (s, body) = page(1, &c, &cookie, "/ui/api/cluster").await;
    assert_eq!(s, 200);
    let cluster: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cluster["members"].as_array().unwrap().len(), 3);
    let health = cluster["health"].as_array().unwrap();
    assert!(
        health.len() == 3 && health.iter().all(|h| h["ready"] == true),
        "{cluster}"
    );
    let changes = cluster["leader_changes"].as_array().unwrap();
    assert!(
        changes.first().is_some_and(|c| c["leader"] == cluster["leader"]),
        "the newest leadership change names the leader: {cluster}"
    );

    // An unknown pipeline is a page saying so; signing out clears the cookie.
    let (s, html) = page(2, &c, &cookie, "/ui/pipelines/999999").await;
    assert_eq!(s, 404);
    assert!(html.contains("no pipeline p999999"), "{html}");
    let r = form(
        browser().post(c.node(2).url("/ui/sign-out")).header(COOKIE, &cookie),
        &[("csrf", "wrong")],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let r = form(
        browser().post(c.node(2).url("/ui/sign-out")).header(COOKIE, &cookie),
        &[("csrf", &csrf)],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_token_ends_its_console_sessions_on_every_node() {
    let c = Cluster::start(3, &[]).await;
    let (s, v) = c
        .post(1, "/v1/tokens", json!({ "name": "short", "role": "viewer" }))
        .await;
    assert_eq!(s, 201, "{v}");
    let (token, id) = (
        v["token"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    );
    let cookie = sign_in(&c, 1, &token).await;
    // Each node admits the session once the token has reached it.
    for node in 1..=3 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while page(node, &c, &cookie, "/ui/cluster").await.0 != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "node {node} never admitted the session"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(c.delete(1, &format!("/v1/tokens/{id}")).await.0, 200);
    for node in 1..=3 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let r = browser()
                .get(c.node(node).url("/ui/cluster"))
                .header(COOKIE, &cookie)
                .send()
                .await
                .unwrap();
            if r.status() == 303 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {node} still admits the revoked session"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
