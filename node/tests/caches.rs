//! Caches through real node processes and a process pool: a cache saved by one pipeline is
//! restored by the next, saved again when it changed, skipped by a pull-only job, cleared on
//! request (the next job starts cold), listed with each tenant's storage, and a cache that
//! cannot be saved is a note on a job that succeeds all the same; a repository pipeline's
//! key follows its lock file.

mod common;
#[path = "common/git.rs"]
mod git;
use common::*;
use git::{GitServer, commit, repository};
use serde_json::{Value, json};
use std::path::Path;

async fn start(dir: &Path) -> Cluster {
    let work = dir.join("workers").to_string_lossy().into_owned();
    let c = Cluster::start(3, &["--process-work-dir", work.as_str(), "--leader-tick-ms", "100"]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    c
}

/// Runs a one-job pipeline whose job has `cache` and `steps` until it ends in `state`;
/// returns the job as read then.
async fn run(c: &Cluster, name: &str, cache: Value, step: &str, state: &str) -> Value {
    let spec = json!({ "name": name, "jobs": [job_spec("build", json!({ "steps": [step], "cache": cache }))] });
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let id = v["jobs"][0]["id"].as_u64().unwrap();
    let job = c
        .wait_get(2, &format!("/v1/jobs/{id}"), &format!("job {id} ended"), |s, v| {
            s == 200 && matches!(v["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
        })
        .await;
    assert_eq!(job["state"], state, "{job}");
    job
}

async fn cache_list(c: &Cluster, node: u64) -> Value {
    let (s, v) = c.get(node, "/v1/caches?consistency=linearizable").await;
    assert_eq!(s, 200, "{v}");
    v
}

fn saved_digest(job: &Value) -> String {
    job["attempts"][0]["cache"]["saved"]["stored"]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("the job saved no cache: {job}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_saved_by_one_pipeline_is_restored_by_the_next_until_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let cache = json!({ "key": "deps", "paths": ["deps"] });

    // Cold: nothing to restore; the job fills the cache.
    let first = run(
        &c,
        "cold",
        cache.clone(),
        "test ! -e deps && mkdir deps && yes dep | head -c 200000 > deps/lib && echo 1 > deps/gen",
        "SUCCEEDED",
    )
    .await;
    assert!(first["attempts"][0]["cache"]["restored"].is_null(), "{first}");
    let digest = saved_digest(&first);
    // Every node lists it, with the tenant's storage against its budget.
    for node in 1..=3 {
        let v = cache_list(&c, node).await;
        let item = &v["items"][0];
        assert_eq!(
            (item["key"].as_str(), item["digest"].as_str()),
            (Some("deps"), Some(digest.as_str())),
            "{v}"
        );
        assert!(item["size_bytes"].as_u64().unwrap() > 0, "{v}");
        let usage = &v["usage"][0];
        assert_eq!(usage["tenant"], "default", "{v}");
        assert_eq!(usage["cache_bytes"], item["size_bytes"], "{v}");
        assert!(usage["cache_budget_bytes"].as_u64().unwrap() >= usage["cache_bytes"].as_u64().unwrap());
        // The blob is on every node's disk, as an artifact's is.
        let blob = c.node(node).data_dir.join("artifacts/sha256").join(&digest);
        assert!(blob.is_file(), "node {node} has no copy at {}", blob.display());
    }

    // Warm: the next pipeline's job finds the files, changes one, and saves it again.
    let second = run(
        &c,
        "warm",
        cache.clone(),
        "test \"$(cat deps/gen)\" = 1 && test \"$(wc -c < deps/lib)\" -eq 200000 && echo 2 > deps/gen",
        "SUCCEEDED",
    )
    .await;
    assert_eq!(second["attempts"][0]["cache"]["restored"], digest.as_str(), "{second}");
    let changed = saved_digest(&second);
    assert_ne!(changed, digest, "the cache did not follow its files");
    // The console's job page says what the attempt did with the cache.
    let html = c.console_page(3, &format!("/ui/jobs/{}", second["id"])).await;
    assert!(html.contains(&format!("deps restored ({})", &digest[..12])), "{html}");
    assert!(html.contains("saved, "), "{html}");

    // A pull-only job reads the latest and saves nothing.
    let pull = json!({ "key": "deps", "paths": ["deps"], "policy": "pull" });
    let third = run(
        &c,
        "pull",
        pull,
        "test \"$(cat deps/gen)\" = 2 && echo 3 > deps/gen",
        "SUCCEEDED",
    )
    .await;
    assert_eq!(third["attempts"][0]["cache"]["restored"], changed.as_str(), "{third}");
    assert!(third["attempts"][0]["cache"]["saved"].is_null(), "{third}");
    assert_eq!(cache_list(&c, 3).await["items"][0]["digest"], changed.as_str());

    // The usage is in /metrics too.
    let metrics = c.get_text(1, "/metrics").await;
    assert!(
        metrics.contains("flotilla_cache_bytes{tenant=\"default\"}"),
        "no cache usage in /metrics"
    );

    // Cleared: the next job starts cold; clearing it again says there is none.
    let (s, v) = c.delete(1, "/v1/caches/deps").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(cache_list(&c, 2).await["items"], json!([]));
    let (s, v) = c.delete(1, "/v1/caches/deps").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = c.delete(1, "/v1/caches/not%20a%20key").await;
    assert_eq!((s, v["error"]["field"].as_str()), (400, Some("key")), "{v}");
    run(&c, "cleared", cache, "test ! -e deps", "SUCCEEDED").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_be_saved_leaves_the_job_succeeded_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let job = run(
        &c,
        "missing",
        json!({ "key": "gone", "paths": ["nothing/here"] }),
        "true",
        "SUCCEEDED",
    )
    .await;
    let reason = job["attempts"][0]["cache"]["saved"]["not_saved"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("cache.paths[0]") && reason.contains("nothing/here"),
        "{job}"
    );
    assert_eq!(cache_list(&c, 1).await["items"], json!([]));
    // A job that fails saves nothing, and says nothing about it.
    let failed = run(&c, "failed", json!({ "key": "k", "paths": ["."] }), "exit 4", "FAILED").await;
    assert!(failed["attempts"][0]["cache"].is_null(), "{failed}");
    // Keys and paths are checked at submission, naming the field; `files` belongs to a
    // repository's pipeline file.
    for (cache, field) in [
        (json!({ "key": "a b", "paths": ["x"] }), "jobs[build].cache.key"),
        (json!({ "key": "k", "paths": ["../x"] }), "jobs[build].cache.paths[0]"),
        (
            json!({ "key": "k", "files": ["Cargo.lock"], "paths": ["x"] }),
            "jobs[build].cache.files",
        ),
    ] {
        let spec = json!({ "name": "bad", "jobs": [job_spec("build", json!({ "steps": ["true"], "cache": cache }))] });
        let (s, v) = c.post(1, "/v1/pipelines", spec).await;
        assert_eq!((s, v["error"]["field"].as_str()), (422, Some(field)), "{v}");
    }
}

const LOCKED_PIPELINE: &str = "name: ci
jobs:
  - name: build
    steps: ['cat deps.lock']
    resources: { cpu_millis: 100, memory_mib: 64 }
    cache: { key: deps, files: [deps.lock, missing.lock], paths: [deps] }
";

/// The cache key of the job of the pipeline `/v1/repos/app/run` starts at main's head.
async fn key_of_run(c: &Cluster) -> String {
    let (s, v) = c.post(1, "/v1/repos/app/run", json!({ "branch": "main" })).await;
    assert_eq!(s, 201, "{v}\n{}", c.logs());
    let pipeline = v["pipeline"].as_u64().unwrap();
    let (_, p) = c
        .get(1, &format!("/v1/pipelines/{pipeline}?consistency=linearizable"))
        .await;
    let job = p["jobs"][0].as_u64().unwrap();
    let (_, j) = c.get(1, &format!("/v1/jobs/{job}?consistency=linearizable")).await;
    assert_eq!(j["spec"]["cache"]["files"], json!([]), "{j}");
    j["spec"]["cache"]["key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_pipelines_cache_key_follows_its_lock_file() {
    let root = tempfile::tempdir().unwrap();
    let work = repository(root.path());
    commit(
        &work,
        "first",
        &[(".flotilla.yml", Some(LOCKED_PIPELINE)), ("deps.lock", Some("a = 1"))],
    );
    let server = GitServer::start(root.path());
    let keys = tempfile::tempdir().unwrap();
    let c = Cluster::start(1, &["--secrets-key-file", &secrets_key_file(keys.path())]).await;
    c.register_pool(1).await;
    let (s, v) = c.put(1, "/v1/secrets/hook", json!({ "value": "hook-secret-1" })).await;
    assert_eq!(s, 200, "{v}");
    let body = json!({ "url": server.url("app.git"), "forge": "git", "webhook_secret": "hook" });
    let (s, v) = c.put(1, "/v1/repos/app", body).await;
    assert_eq!(s, 200, "{v}");

    let first = key_of_run(&c).await;
    let suffix = first.strip_prefix("deps-").unwrap_or_else(|| panic!("{first}"));
    assert!(
        suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{first}"
    );
    // Another file changed: the same key. The lock file changed: another.
    commit(&work, "docs", &[("README", Some("hello"))]);
    assert_eq!(key_of_run(&c).await, first);
    commit(&work, "bump", &[("deps.lock", Some("a = 2"))]);
    let bumped = key_of_run(&c).await;
    assert!(bumped.starts_with("deps-") && bumped != first, "{bumped}");
    // A lock file path that leaves the repository is refused, naming the field.
    commit(
        &work,
        "bad",
        &[(
            ".flotilla.yml",
            Some(&LOCKED_PIPELINE.replace("missing.lock", "../x.lock")),
        )],
    );
    let (s, v) = c.post(1, "/v1/repos/app/run", json!({ "branch": "main" })).await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("jobs[build].cache.files[1]"),
        "{v}"
    );
}
