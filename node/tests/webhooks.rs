//! Pipelines from source, end to end: a real git server on loopback (`git daemon`) holding a
//! repository the test commits to, and webhook deliveries built as GitHub, GitLab and Gitea
//! document them. A push runs the pipeline file at that commit and its job sees the commit's
//! files and variables; a replayed delivery runs nothing more; a bad signature runs nothing
//! and records nothing; an event that asks for nothing, and a commit without a pipeline file,
//! are recorded with the reason.

mod common;
#[path = "common/git.rs"]
mod git;
use common::*;
use flotilla_node::source::forge::sign;
use flotilla_state_machine::Forge;
use git::{GitServer, commit, repository, repository_at};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WEBHOOK_SECRET: &str = "webhook-shared-secret-1";

const PIPELINE_FILE: &str = r#"name: ci
jobs:
  - name: test
    steps:
      - cat greeting.txt
      - echo "on $FLOTILLA_BRANCH at $FLOTILLA_COMMIT by $FLOTILLA_AUTHOR ($FLOTILLA_EVENT)"
    resources: { cpu_millis: 100, memory_mib: 64 }
"#;

/// A delivery as `forge` sends it: its event and delivery headers, signed with the secret.
async fn deliver(
    c: &Cluster,
    node: u64,
    repo: &str,
    forge: Forge,
    event: &str,
    id: &str,
    body: &Value,
) -> (u16, Value) {
    deliver_signed(c, node, repo, forge, event, id, body, WEBHOOK_SECRET).await
}

#[allow(clippy::too_many_arguments)]
async fn deliver_signed(
    c: &Cluster,
    node: u64,
    repo: &str,
    forge: Forge,
    event: &str,
    id: &str,
    body: &Value,
    secret: &str,
) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let (sig_header, sig) = sign(forge, secret.as_bytes(), &bytes);
    let (event_header, id_header) = match forge {
        Forge::Github | Forge::Git => ("X-GitHub-Event", "X-GitHub-Delivery"),
        Forge::Gitlab => ("X-Gitlab-Event", "X-Gitlab-Event-UUID"),
        Forge::Gitea => ("X-Gitea-Event", "X-Gitea-Delivery"),
    };
    // No API token: a delivery proves itself with its signature alone.
    let r = c
        .anonymous
        .post(c.node(node).url(&format!("/v1/hooks/default/{repo}")))
        .header("Content-Type", "application/json")
        .header(sig_header, sig)
        .header(event_header, event)
        .header(id_header, id)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn github_push(commit: &str) -> Value {
    json!({ "ref": "refs/heads/main", "before": "0".repeat(40), "after": commit, "deleted": false,
            "pusher": { "name": "ada", "email": "ada@example.test" }, "repository": { "full_name": "acme/app" } })
}

async fn job_of(c: &Cluster, pipeline: u64) -> u64 {
    let (_, p) = c
        .get(1, &format!("/v1/pipelines/{pipeline}?consistency=linearizable"))
        .await;
    p["jobs"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("pipeline {pipeline}: {p}"))
}

async fn finished_logs(c: &Cluster, job: u64) -> String {
    let done = c
        .wait_get(1, &format!("/v1/jobs/{job}"), "the job finished", |s, v| {
            s == 200 && ["SUCCEEDED", "FAILED"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    let logs = c.get_text(1, &format!("/v1/jobs/{job}/logs")).await;
    assert_eq!(done["state"], "SUCCEEDED", "job {job}: {done}\n{logs}\n{}", c.logs());
    logs
}

async fn deliveries(c: &Cluster, repo: &str) -> Vec<Value> {
    let (s, v) = c.get(2, &format!("/v1/repos/{repo}?consistency=linearizable")).await;
    assert_eq!(s, 200, "{v}");
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

async fn pipeline_count(c: &Cluster) -> usize {
    let (_, v) = c.get(1, "/v1/pipelines?consistency=linearizable").await;
    v["items"].as_array().map_or(0, Vec::len)
}

/// `n` nodes with a key file, a process pool, and the tenant secret `hook`.
async fn cluster_with_hook_secret(n: u64) -> (Cluster, tempfile::TempDir) {
    let keys = tempfile::tempdir().unwrap();
    let c = Cluster::start(n, &["--secrets-key-file", &secrets_key_file(keys.path())]).await;
    c.register_pool(1).await;
    let (s, v) = c.put(1, "/v1/secrets/hook", json!({ "value": WEBHOOK_SECRET })).await;
    assert_eq!(s, 200, "{v}");
    (c, keys)
}

async fn add_repo(c: &Cluster, name: &str, url: &str, forge: &str) {
    let body = json!({ "url": url, "forge": forge, "webhook_secret": "hook" });
    let (s, v) = c.put(1, &format!("/v1/repos/{name}"), body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["webhook_path"], format!("/v1/hooks/default/{name}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_runs_the_pipeline_file_at_its_commit_once_per_delivery() {
    let root = tempfile::tempdir().unwrap();
    let work = repository(root.path());
    let first = commit(
        &work,
        "first",
        &[
            (".flotilla.yml", Some(PIPELINE_FILE)),
            ("greeting.txt", Some("hello from the first commit")),
        ],
    );
    let server = GitServer::start(root.path());
    let (c, _keys) = cluster_with_hook_secret(3).await;
    add_repo(&c, "app", &server.url("app.git"), "github").await;

    // A push, delivered to a follower: the pipeline file at that commit runs, with its files.
    let (s, v) = deliver(&c, 2, "app", Forge::Github, "push", "gh-1", &github_push(&first)).await;
    assert_eq!(s, 201, "{v}\n{}", c.logs());
    let pipeline = v["pipeline"].as_u64().unwrap();
    let (_, p) = c
        .get(1, &format!("/v1/pipelines/{pipeline}?consistency=linearizable"))
        .await;
    assert_eq!(p["source"]["commit"], first.as_str(), "{p}");
    assert_eq!(p["source"]["delivery"], "gh-1");
    let logs = finished_logs(&c, job_of(&c, pipeline).await).await;
    assert!(logs.contains("hello from the first commit"), "{logs}");
    assert!(logs.contains(&format!("on main at {first} by ada (push)")), "{logs}");
    // The console's pipeline page says where it came from.
    let page = c.get_text(3, &format!("/ui/pipelines/{pipeline}")).await;
    assert!(page.contains(&first[..12]) && page.contains("app main at"), "{page}");
    // The repositories page lists it, its webhook path and what its delivery started.
    let page = c.get_text(3, "/ui/repos").await;
    assert!(
        page.contains("data-repo=\"app\"") && page.contains("/v1/hooks/default/app"),
        "{page}"
    );
    assert!(page.contains(&format!("/ui/pipelines/{pipeline}")), "{page}");

    // The forge retries the delivery (a timeout on its side): nothing more runs.
    let before = pipeline_count(&c).await;
    let (s, v) = deliver(&c, 3, "app", Forge::Github, "push", "gh-1", &github_push(&first)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["pipeline"].as_u64(), Some(pipeline));
    assert_eq!(v["duplicate"], true);
    assert_eq!(pipeline_count(&c).await, before);

    // A second commit changes the file the job reads: a new delivery runs the new files.
    let second = commit(
        &work,
        "second",
        &[("greeting.txt", Some("hello from the second commit"))],
    );
    let (s, v) = deliver(&c, 1, "app", Forge::Github, "push", "gh-2", &github_push(&second)).await;
    assert_eq!(s, 201, "{v}");
    let logs = finished_logs(&c, job_of(&c, v["pipeline"].as_u64().unwrap()).await).await;
    assert!(logs.contains("hello from the second commit"), "{logs}");
    assert!(!logs.contains("first commit"), "{logs}");

    // A re-run of the first pipeline runs the first commit again, linked to it.
    let (s, v) = c.post(2, &format!("/v1/pipelines/{pipeline}/rerun"), json!({})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["rerun_of"].as_u64(), Some(pipeline));
    let again = v["pipeline"].as_u64().unwrap();
    let (_, p) = c
        .get(1, &format!("/v1/pipelines/{again}?consistency=linearizable"))
        .await;
    assert_eq!(
        (p["rerun_of"].as_u64(), p["source"]["commit"].as_str()),
        (Some(pipeline), Some(first.as_str())),
        "{p}"
    );
    let logs = finished_logs(&c, job_of(&c, again).await).await;
    assert!(logs.contains("hello from the first commit"), "{logs}");

    // A bad signature: refused, nothing runs, nothing is recorded.
    let recorded = deliveries(&c, "app").await.len();
    let pipelines = pipeline_count(&c).await;
    let (s, v) = deliver_signed(
        &c,
        2,
        "app",
        Forge::Github,
        "push",
        "gh-3",
        &github_push(&second),
        "not-the-secret",
    )
    .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "bad_signature", "{v}");
    assert_eq!(deliveries(&c, "app").await.len(), recorded);
    assert_eq!(pipeline_count(&c).await, pipelines);

    // An event that asks for nothing: 202, recorded with the reason.
    let (s, v) = deliver(
        &c,
        2,
        "app",
        Forge::Github,
        "issues",
        "gh-4",
        &json!({ "action": "opened" }),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let newest = &deliveries(&c, "app").await[0];
    assert_eq!(
        (newest["id"].as_str(), newest["outcome"].as_str()),
        (Some("gh-4"), Some("ignored")),
        "{newest}"
    );

    // A commit without the pipeline file: 422, recorded as failed with the reason.
    let third = commit(&work, "third", &[(".flotilla.yml", None)]);
    let (s, v) = deliver(&c, 2, "app", Forge::Github, "push", "gh-5", &github_push(&third)).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "no_pipeline_file", "{v}");
    let newest = &deliveries(&c, "app").await[0];
    assert_eq!(newest["outcome"], "failed", "{newest}");
    assert!(newest["reason"].as_str().unwrap().contains(".flotilla.yml"), "{newest}");
    assert_eq!(pipeline_count(&c).await, pipelines);

    // By hand, at a branch: the same pipeline file at the commit the branch points to.
    commit(
        &work,
        "fourth",
        &[
            (".flotilla.yml", Some(PIPELINE_FILE)),
            ("greeting.txt", Some("by hand")),
        ],
    );
    let (s, v) = c.post(1, "/v1/repos/app/run", json!({ "branch": "main" })).await;
    assert_eq!(s, 201, "{v}");
    let logs = finished_logs(&c, job_of(&c, v["pipeline"].as_u64().unwrap()).await).await;
    assert!(logs.contains("by hand") && logs.contains("(manual)"), "{logs}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gitlab_and_gitea_deliveries_run_as_their_forges_send_them() {
    let root = tempfile::tempdir().unwrap();
    let work = repository(root.path());
    let head = commit(
        &work,
        "first",
        &[
            (".flotilla.yml", Some(PIPELINE_FILE)),
            ("greeting.txt", Some("hello forges")),
        ],
    );
    let server = GitServer::start(root.path());
    let (c, _keys) = cluster_with_hook_secret(1).await;
    add_repo(&c, "on-gitlab", &server.url("app.git"), "gitlab").await;
    add_repo(&c, "on-gitea", &server.url("app.git"), "gitea").await;

    let gitlab_push = json!({ "object_kind": "push", "ref": "refs/heads/main", "checkout_sha": head,
        "user_username": "grace", "project": { "path_with_namespace": "acme/app" } });
    let (s, v) = deliver(&c, 1, "on-gitlab", Forge::Gitlab, "Push Hook", "gl-1", &gitlab_push).await;
    assert_eq!(s, 201, "{v}");
    let logs = finished_logs(&c, job_of(&c, v["pipeline"].as_u64().unwrap()).await).await;
    assert!(
        logs.contains("hello forges") && logs.contains("by grace (push)"),
        "{logs}"
    );
    let (s, _) = deliver_signed(
        &c,
        1,
        "on-gitlab",
        Forge::Gitlab,
        "Push Hook",
        "gl-2",
        &gitlab_push,
        "wrong-token-x",
    )
    .await;
    assert_eq!(s, 401);

    let gitea_push = json!({ "ref": "refs/heads/main", "after": head, "pusher": { "login": "linus" } });
    let (s, v) = deliver(&c, 1, "on-gitea", Forge::Gitea, "push", "gt-1", &gitea_push).await;
    assert_eq!(s, 201, "{v}");
    let logs = finished_logs(&c, job_of(&c, v["pipeline"].as_u64().unwrap()).await).await;
    assert!(logs.contains("by linus (push)"), "{logs}");
    let (s, v) = deliver(&c, 1, "on-gitea", Forge::Gitea, "push", "gt-1", &gitea_push).await;
    assert_eq!((s, v["duplicate"].clone()), (200, json!(true)), "{v}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_repositories_and_deliveries_get_clear_errors() {
    let c = Cluster::start(1, &[]).await;
    // A repository needs its secrets to exist, and a URL git fetches over the network.
    let (s, v) = c
        .put(
            1,
            "/v1/repos/app",
            json!({ "url": "https://h/r", "forge": "github", "webhook_secret": "nope" }),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("webhook_secret")), "{v}");
    for (body, field) in [
        (
            json!({ "url": "file:///etc", "forge": "github", "webhook_secret": "x" }),
            "url",
        ),
        (
            json!({ "url": "https://h/r", "forge": "svn", "webhook_secret": "x" }),
            "forge",
        ),
        (
            json!({ "url": "https://h/r", "forge": "github", "webhook_secret": "x", "pipeline_path": "../x" }),
            "pipeline_path",
        ),
    ] {
        let (s, v) = c.put(1, "/v1/repos/app", body).await;
        assert!(s == 422 || s == 400, "{s} {v}");
        assert!(v["error"]["field"].as_str().unwrap_or("").contains(field), "{v}");
    }
    // A delivery for a repository that does not exist.
    let r = c
        .anonymous
        .post(c.node(1).url("/v1/hooks/default/nothing"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// One commit status as the receiver got it: the path, the authorization, the body.
type Received = Vec<(String, String, Value)>;

/// A forge's status API on loopback, as Gitea documents it (`POST
/// /api/v1/repos/{owner}/{repo}/statuses/{sha}`): it answers 500 to the first `failures`
/// requests (a forge having a bad time), then 201.
async fn status_receiver(failures: usize) -> (String, std::sync::Arc<std::sync::Mutex<Received>>) {
    use axum::extract::{Path as AxPath, State};
    use axum::http::{HeaderMap, StatusCode};
    let received: std::sync::Arc<std::sync::Mutex<Received>> = Default::default();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/api/v1/repos/{owner}/{repo}/statuses/{sha}",
            axum::routing::post(
                move |State((received, calls)): State<(
                    std::sync::Arc<std::sync::Mutex<Received>>,
                    std::sync::Arc<std::sync::atomic::AtomicUsize>,
                )>,
                      AxPath((owner, repo, sha)): AxPath<(String, String, String)>,
                      headers: HeaderMap,
                      body: String| async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    received
                        .lock()
                        .unwrap()
                        .push((format!("{owner}/{repo}/{sha}"), auth, body));
                    StatusCode::CREATED
                },
            ),
        )
        .with_state((received.clone(), calls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api/v1"), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_statuses_reach_the_forge_as_the_final_state_says_though_it_fails_for_a_while() {
    let root = tempfile::tempdir().unwrap();
    let work = repository_at(root.path(), "acme/app.git");
    let good = commit(
        &work,
        "good",
        &[(".flotilla.yml", Some(PIPELINE_FILE)), ("greeting.txt", Some("hi"))],
    );
    let server = GitServer::start(root.path());
    let (api, received) = status_receiver(3).await;
    let (c, _keys) = cluster_with_hook_secret(3).await;
    let (s, v) = c
        .put(1, "/v1/secrets/token", json!({ "value": "status-token-123" }))
        .await;
    assert_eq!(s, 200, "{v}");
    let body = json!({ "url": server.url("acme/app.git"), "forge": "gitea", "webhook_secret": "hook",
                       "credentials": "token", "status_api": api });
    let (s, v) = c.put(1, "/v1/repos/app", body).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = c.get(1, "/v1/repos/app?consistency=linearizable").await;
    assert_eq!(v["reports_statuses"], true, "{v}");

    let push = |commit: &str| json!({ "ref": "refs/heads/main", "after": commit, "pusher": { "login": "ada" } });
    let (s, v) = deliver(&c, 2, "app", Forge::Gitea, "push", "gt-1", &push(&good)).await;
    assert_eq!(s, 201, "{v}");
    let first = v["pipeline"].as_u64().unwrap();
    finished_logs(&c, job_of(&c, first).await).await;

    // A commit whose job fails: its status says so.
    let bad = commit(&work, "bad", &[("greeting.txt", None)]);
    let (s, v) = deliver(&c, 3, "app", Forge::Gitea, "push", "gt-2", &push(&bad)).await;
    assert_eq!(s, 201, "{v}");

    let final_state = |sha: &str| {
        let received = received.lock().unwrap();
        received
            .iter()
            .rev()
            .find(|(path, _, _)| path == &format!("acme/app/{sha}"))
            .map(|(_, auth, body)| (auth.clone(), body.clone()))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = [(&good, "success"), (&bad, "failure")]
            .iter()
            .all(|(sha, state)| final_state(sha).is_some_and(|(_, b)| b["state"] == *state));
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the statuses never arrived: {:?}\n{}",
            received.lock().unwrap(),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (auth, body) = final_state(&good).unwrap();
    assert_eq!(auth, "token status-token-123");
    assert_eq!(body["context"], "flotilla/ci");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains(&format!("pipeline {first}")),
        "{body}"
    );
    // Every status a commit was sent is a state its pipeline was in, in order: never a
    // settled state followed by "pending".
    for sha in [&good, &bad] {
        let states: Vec<String> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == &format!("acme/app/{sha}"))
            .map(|(_, _, b)| b["state"].as_str().unwrap().to_string())
            .collect();
        let settled_at = states.iter().position(|s| s != "pending").unwrap();
        assert!(states[settled_at..].iter().all(|s| s != "pending"), "{states:?}");
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_runs_the_branch_head_once_per_due_time() {
    let root = tempfile::tempdir().unwrap();
    let work = repository(root.path());
    let head = commit(
        &work,
        "first",
        &[
            (".flotilla.yml", Some(PIPELINE_FILE)),
            ("greeting.txt", Some("on schedule")),
        ],
    );
    let server = GitServer::start(root.path());
    let (c, _keys) = cluster_with_hook_secret(3).await;

    // Clear errors first: no such repository, an expression that is not cron.
    let (s, v) = c
        .put(
            1,
            "/v1/schedules/often",
            json!({ "repository": "app", "branch": "main", "cron": "*/2 * * * * *" }),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    add_repo(&c, "app", &server.url("app.git"), "github").await;
    let (s, v) = c
        .put(
            1,
            "/v1/schedules/often",
            json!({ "repository": "app", "branch": "main", "cron": "every day" }),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("cron")), "{v}");

    // Every two seconds (seconds first): it fires, and each due time runs one pipeline.
    let (s, v) = c
        .put(
            2,
            "/v1/schedules/often",
            json!({ "repository": "app", "branch": "main", "cron": "*/2 * * * * *" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let fired_twice = c
        .wait_get(
            1,
            "/v1/pipelines?consistency=linearizable",
            "the schedule fired twice",
            |s, v| s == 200 && v["items"].as_array().is_some_and(|items| items.len() >= 2),
        )
        .await;
    let page = c.get_text(1, "/ui/repos").await;
    assert!(
        page.contains("data-schedule=\"often\"") && page.contains("*/2 * * * * *"),
        "{page}"
    );
    let (s, v) = c.delete(1, "/v1/schedules/often").await;
    assert_eq!(s, 200, "{v}");
    let items = fired_twice["items"].as_array().unwrap();
    let mut keys = Vec::new();
    for p in items {
        assert_eq!(p["source"]["event"], "schedule", "{p}");
        assert_eq!(
            (p["source"]["commit"].as_str(), p["source"]["reference"].as_str()),
            (Some(head.as_str()), Some("refs/heads/main"))
        );
        keys.push(p["idempotency_key"].as_str().unwrap().to_string());
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), items.len(), "one pipeline per due time: {keys:?}");
    let logs = finished_logs(&c, items[0]["jobs"][0].as_u64().unwrap()).await;
    assert!(logs.contains("on schedule") && logs.contains("(schedule)"), "{logs}");
    drop(server);
}

/// The due times a schedule fired, from its pipelines' idempotency keys
/// (`schedule:<name>:<due ms>`), in order; and how many pipelines it made.
async fn fired_due_times(c: &Cluster, node: u64, name: &str) -> (Vec<u64>, usize) {
    let (s, v) = c.get(node, "/v1/pipelines?consistency=linearizable&limit=1000").await;
    assert_eq!(s, 200, "{v}");
    let prefix = format!("schedule:{name}:");
    let mut due: Vec<u64> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["idempotency_key"].as_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect();
    let made = due.len();
    due.sort_unstable();
    due.dedup();
    (due, made)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_fires_each_due_time_once_though_its_leader_is_killed() {
    let root = tempfile::tempdir().unwrap();
    let work = repository(root.path());
    commit(
        &work,
        "first",
        &[(".flotilla.yml", Some(PIPELINE_FILE)), ("greeting.txt", Some("hi"))],
    );
    let server = GitServer::start(root.path());
    let (mut c, _keys) = cluster_with_hook_secret(3).await;
    add_repo(&c, "app", &server.url("app.git"), "github").await;
    let every_two_seconds = json!({ "repository": "app", "branch": "main", "cron": "*/2 * * * * *" });
    let (s, v) = c.put(1, "/v1/schedules/often", every_two_seconds).await;
    assert_eq!(s, 200, "{v}");

    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let reader = survivors[0];
    let deadline = Instant::now() + Duration::from_secs(60);
    while fired_due_times(&c, reader, "often").await.0.len() < 2 {
        assert!(Instant::now() < deadline, "the schedule never fired\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The leader dies between firings; a survivor takes over the schedule.
    c.node_mut(leader).kill9();
    c.wait_leader_among(&survivors).await;
    let before = fired_due_times(&c, reader, "often").await.0.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fired_due_times(&c, reader, "often").await.0.len() < before + 4 {
        assert!(
            Instant::now() < deadline,
            "the schedule stopped after the leader died\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, v) = c.delete(reader, "/v1/schedules/often").await;
    assert_eq!(s, 200, "{v}");

    // The checker: no due time ran twice, and none between the first and the last was lost
    // (the ones the leader change delayed ran late, each in turn).
    let (due, made) = fired_due_times(&c, reader, "often").await;
    assert_eq!(made, due.len(), "a due time ran twice: {due:?}");
    let gaps: Vec<u64> = due.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g == 2_000),
        "a due time was lost: {due:?} (gaps {gaps:?})"
    );
    drop(server);
}
