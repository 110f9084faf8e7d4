//! Secrets end to end: set over the API, used by a job, masked in its output, and never in
//! plain text in an API answer, an event, or any byte of any node's data directory; keys
//! rotated on a running cluster; refused where a node has no key file.

mod common;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A key file holding `keys` (one per line, the first active), mode 0600.
fn key_file(dir: &Path, name: &str, keys: &[&str]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, keys.iter().map(|k| format!("{k}\n")).collect::<String>()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A fresh random value no test writes anywhere else.
fn random_value(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!(
        "{prefix}-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn new_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("fsk_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

async fn wait_job_done(c: &Cluster, job: u64) -> Value {
    c.wait_get(1, &format!("/v1/jobs/{job}"), "the job finished", |s, v| {
        s == 200 && ["SUCCEEDED", "FAILED"].contains(&v["state"].as_str().unwrap_or(""))
    })
    .await
}

async fn logs(c: &Cluster, job: u64) -> String {
    let r = c
        .authorized(c.http.get(c.node(1).url(&format!("/v1/jobs/{job}/logs"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// The events of the whole history, as an admin reads them (audit events included).
async fn all_events(c: &Cluster) -> String {
    let r = c
        .authorized(c.http.get(c.node(2).url("/v1/events?after=0&follow=false")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_its_job_masked_and_no_node_holds_it_in_plain_text() {
    let keys = tempfile::tempdir().unwrap();
    let file = key_file(keys.path(), "secrets.key", &[&new_key()]);
    let file = file.to_str().unwrap().to_string();
    let c = Cluster::start(3, &["--secrets-key-file", &file, "--snapshot-after-entries", "20"]).await;
    c.register_pool(1).await;
    let secret = random_value("s3cr3t");
    // The positive control: a plain `env` value is stored as submitted, so a search of the
    // data directories that cannot find this one could not find the secret either.
    let plain = random_value("plain");

    let (s, v) = c.put(2, "/v1/secrets/db-password", json!({ "value": secret })).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 1);
    assert!(!v.to_string().contains(&secret));
    let (s, v) = c.put(2, "/v1/secrets/short", json!({ "value": "1234567" })).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("value")), "{v}");

    // A job that prints the secret, once where a 64 KiB read of the output ends.
    let steps = json!([
        "echo \"the password is $DB_PASSWORD\"",
        "head -c 65500 /dev/zero | tr '\\0' x; echo \"$DB_PASSWORD$DB_PASSWORD\"",
        "test \"$DB_PASSWORD\" != '' && echo \"plain is $PLAIN\"",
        // The same secret as a file on a tmpfs, printed too (and masked).
        "test \"$(cat \"$DB_PASSWORD_FILE\")\" = \"$DB_PASSWORD\" && echo \"file says $(cat \"$DB_PASSWORD_FILE\")\"",
        "echo \"path $DB_PASSWORD_FILE\"",
        "df -P \"$DB_PASSWORD_FILE\" | tail -n 1"
    ]);
    let job = job_spec(
        "deploy",
        json!({
            "steps": steps,
            "secrets": { "DB_PASSWORD": "db-password" },
            "secret_files": { "DB_PASSWORD_FILE": "db-password" },
            "env": { "PLAIN": plain }
        }),
    );
    let (s, v) = c
        .post(3, "/v1/pipelines", json!({ "name": "uses-secret", "jobs": [job] }))
        .await;
    assert_eq!(s, 201, "{v}");
    let job_id = v["jobs"][0]["id"].as_u64().unwrap();
    let done = wait_job_done(&c, job_id).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let out = logs(&c, job_id).await;
    let stars = "*".repeat(secret.len());
    assert!(out.contains(&format!("the password is {stars}\n")), "{out}");
    assert!(
        out.contains(&format!("{stars}{stars}\n")),
        "{}",
        &out[out.len().saturating_sub(300)..]
    );
    assert!(out.contains(&format!("plain is {plain}")), "{out}");
    assert!(out.contains(&format!("file says {stars}\n")), "{out}");
    assert!(out.lines().last().is_some_and(|l| l.starts_with("tmpfs ")), "{out}");
    assert!(!out.contains(&secret));
    assert!(out.contains("path /dev/shm/flotilla-secrets/"), "{out}");
    // The file goes with its worker (removed once the job is done).
    let shm = Path::new("/dev/shm/flotilla-secrets");
    let mut left = files_holding(shm, secret.as_bytes());
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = files_holding(shm, secret.as_bytes());
    }
    assert!(left.is_empty(), "the secret file outlived its worker: {left:?}");

    // A job using a secret its tenant lacks is refused, naming the field.
    let missing = job_spec("x", json!({ "secrets": { "TOKEN": "nope" } }));
    let (s, v) = c
        .post(1, "/v1/pipelines", json!({ "name": "missing", "jobs": [missing] }))
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["field"], "jobs[x].secrets.TOKEN");

    // No answer and no event holds it.
    let (_, listed) = c.get(1, "/v1/secrets").await;
    assert_eq!(listed["items"][0]["name"], "db-password", "{listed}");
    for path in [
        format!("/v1/jobs/{job_id}"),
        "/v1/jobs".to_string(),
        "/v1/pipelines".to_string(),
        "/v1/secrets".to_string(),
    ] {
        let (_, v) = c.get(1, &path).await;
        assert!(!v.to_string().contains(&secret), "{path}: {v}");
    }
    let events = all_events(&c).await;
    assert!(events.contains("SecretSet"), "the change is audited: {events}");
    // Every change made with a token names it: here the pre-shared admin token, the first.
    let audited: Vec<Value> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|e| e["type"] == "Audited")
        .collect();
    for (action, target) in [
        ("register_pool", "main".to_string()),
        ("set_secret", "default/db-password".to_string()),
        (
            "submit_pipeline",
            format!("default/p{}", done["pipeline"].as_u64().unwrap()),
        ),
    ] {
        assert!(
            audited
                .iter()
                .any(|e| e["action"] == action && e["target"] == target.as_str() && e["token"] == 1),
            "no audit of {action} {target}: {audited:?}"
        );
    }
    assert!(
        !audited
            .iter()
            .any(|e| e["action"] == "apply_plan" || e["action"] == "batch"),
        "the leader's own work is not a caller's: {audited:?}"
    );
    assert!(!events.contains(&secret));
    // Enough entries for a snapshot (every 20), then every node's files: log, state machine,
    // snapshots.
    for i in 0..30 {
        let (s, v) = c.post(1, "/v1/pipelines", pipeline(&format!("filler-{i}"))).await;
        assert_eq!(s, 201, "{v}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let data_dirs: Vec<PathBuf> = c.nodes.iter().map(|n| n.data_dir.clone()).collect();
    let snapshots: usize = data_dirs.iter().map(|d| files_holding(d, b"uses-secret").len()).sum();
    assert!(snapshots > 0, "the history is on disk");
    for dir in &data_dirs {
        assert!(
            !files_holding(dir, plain.as_bytes()).is_empty(),
            "the search finds what is stored in plain: {}",
            dir.display()
        );
        assert_eq!(
            files_holding(dir, secret.as_bytes()),
            Vec::<PathBuf>::new(),
            "{}",
            dir.display()
        );
    }
    // Nor do the logs of the nodes.
    assert!(!c.logs().contains(&secret));

    // A secret a running job uses cannot change; once it is done it can.
    let sleeper = job_spec(
        "sleeper",
        json!({ "steps": ["sleep 30"], "secrets": { "DB": "db-password" } }),
    );
    let (s, v) = c
        .post(1, "/v1/pipelines", json!({ "name": "long", "jobs": [sleeper] }))
        .await;
    assert_eq!(s, 201, "{v}");
    let sleeper_id = v["jobs"][0]["id"].as_u64().unwrap();
    c.wait_get(1, &format!("/v1/jobs/{sleeper_id}"), "the sleeper runs", |s, v| {
        s == 200 && v["state"] == "RUNNING"
    })
    .await;
    let (s, v) = c
        .put(1, "/v1/secrets/db-password", json!({ "value": random_value("next") }))
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("secret_in_use")), "{v}");
    let (s, v) = c.delete(1, "/v1/secrets/db-password").await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = c.post(1, &format!("/v1/jobs/{sleeper_id}/cancel"), json!({})).await;
    assert_eq!(s, 200);
    c.wait_get(1, &format!("/v1/jobs/{sleeper_id}"), "the sleeper stopped", |s, v| {
        s == 200 && v["state"] == "CANCELLED"
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = c.delete(1, "/v1/secrets/db-password").await;
        if s == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never deletable: {s} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, _) = c.delete(1, "/v1/secrets/db-password").await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_on_a_running_cluster_and_the_old_key_can_then_go() {
    let keys = tempfile::tempdir().unwrap();
    let (old, new) = (new_key(), new_key());
    let old_file = key_file(keys.path(), "old.key", &[&old]).to_str().unwrap().to_string();
    let mut c = Cluster::start(3, &["--secrets-key-file", &old_file]).await;
    c.register_pool(1).await;
    let value = random_value("rotated");
    let (s, v) = c.put(1, "/v1/secrets/api-key", json!({ "value": value })).await;
    assert_eq!(s, 200, "{v}");

    // 1. Every node gets the new key first and keeps the old one, one node at a time.
    let both = key_file(keys.path(), "both.key", &[&new, &old]);
    for id in 1..=3u64 {
        let node = c.node_mut(id);
        let at = node.extra_args.iter().position(|a| a == &old_file).unwrap();
        node.extra_args[at] = both.to_str().unwrap().to_string();
        assert!(node.terminate(), "node {id} stops");
        node.spawn();
        c.wait_http(id).await;
        c.wait_leader_among(&[1, 2, 3]).await;
    }
    // 2. Everything is sealed again under a data key of the new key.
    let (s, v) = c.post(1, "/v1/secrets/rotate-keys", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["resealed"], 1, "{v}");
    let new_id = v["kek_id"].as_str().unwrap().to_string();
    assert_eq!(v["data_keys_in_use"], json!([v["data_key"]]), "{v}");
    // 3. The old key goes from every file; the secret still opens.
    let new_only = key_file(keys.path(), "new.key", &[&new]);
    for id in 1..=3u64 {
        let node = c.node_mut(id);
        let at = node.extra_args.iter().position(|a| a.ends_with("both.key")).unwrap();
        node.extra_args[at] = new_only.to_str().unwrap().to_string();
        assert!(node.terminate(), "node {id} stops");
        node.spawn();
        c.wait_http(id).await;
        c.wait_leader_among(&[1, 2, 3]).await;
    }
    let job = job_spec(
        "check",
        json!({ "steps": [format!("test \"$KEY\" = \"$(echo {value})\" && echo same")], "secrets": { "KEY": "api-key" } }),
    );
    let (s, v) = c
        .post(2, "/v1/pipelines", json!({ "name": "after-rotation", "jobs": [job] }))
        .await;
    assert_eq!(s, 201, "{v}");
    let job_id = v["jobs"][0]["id"].as_u64().unwrap();
    let done = wait_job_done(&c, job_id).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}\n{}", c.logs());
    assert!(logs(&c, job_id).await.ends_with("same\n"));
    assert!(!new_id.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_key_file_stores_no_secret_and_starts_no_job_that_uses_one() {
    let c = Cluster::start(1, &[]).await;
    let (s, v) = c
        .put(1, "/v1/secrets/db", json!({ "value": "a-long-enough-value" }))
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("secrets_disabled")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("--secrets-key-file"));
}
