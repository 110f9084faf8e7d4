//! Pipelines on the `kubernetes` provider through real node processes and the fake API server
//! (`fake-kube/`): the pool's capacity follows the nodes; an evicted pod's attempt goes
//! TERMINATED and is retried in a new pod; a leader killed mid-run is replaced by one that
//! adopts the running pod; no pod is left behind. A repository pipeline's pod gets its
//! commit's files from the nodes through its source container and the attempt's grant, and a
//! pod gets the artifacts of the jobs it needs the same way; its own artifacts and cache go
//! back through its collect container and the attempt's upload grant.

mod common;
#[path = "common/git.rs"]
mod git;
use common::*;
use flotilla_fake_kube::{FakeKube, FakeKubeConfig, NodeSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NS: &str = "workers";

fn job(name: &str, steps: &[&str], retries: u32) -> Value {
    job_spec(
        name,
        json!({
            "image": "busybox",
            "steps": steps,
            "resources": { "cpu_millis": 500, "memory_mib": 256 },
            "constraints": { "runtime": "kubernetes" },
            "retry": { "max": retries, "backoff": "200ms" }
        }),
    )
}

/// The fake cluster's one node: 4 CPUs and 8 GiB, labelled `pool=ci` (the pools' selector).
fn node_a() -> NodeSpec {
    NodeSpec {
        name: "node-a".into(),
        labels: BTreeMap::from([("pool".to_string(), "ci".to_string())]),
        allocatable: BTreeMap::from([
            ("cpu".to_string(), "4".to_string()),
            ("memory".to_string(), "8Gi".to_string()),
        ]),
    }
}

/// The fake API server with `node_a`, running `HELPER_IMAGE` from this build's
/// `flotilla-node` (a pod's source container).
async fn fake_kube_with_helper() -> FakeKube {
    let helper_dir = std::path::Path::new(env!("CARGO_BIN_EXE_flotilla-node"))
        .parent()
        .unwrap()
        .to_path_buf();
    let kube = FakeKube::start(FakeKubeConfig {
        image_paths: BTreeMap::from([(HELPER_IMAGE.to_string(), helper_dir)]),
        ..FakeKubeConfig::default()
    })
    .await
    .unwrap();
    kube.cluster().add_node(node_a());
    kube
}

async fn job_view(c: &Cluster, node: u64, id: u64) -> Value {
    c.get(node, &format!("/v1/jobs/{id}?consistency=linearizable")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_jobs_survive_eviction_and_a_leader_kill() {
    let kube = FakeKube::start(FakeKubeConfig::default()).await.unwrap();
    kube.cluster().add_node(node_a());
    let url = kube.url();
    let args = [
        "--kubernetes-namespace",
        NS,
        "--kubernetes-api-url",
        url.as_str(),
        "--cluster-name",
        "kt",
        "--leader-tick-ms",
        "100",
    ];
    let mut c = Cluster::start(3, &args).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let pool = json!({
        "name": "pods", "provider": "kubernetes", "capacity": { "cpu_millis": 1000, "memory_mib": 1024 }, "max_workers": 8,
        "labels": { "runtime": "kubernetes" }, "settings": { "node_selector": "pool=ci" }
    });
    let r = c.post(leader, "/v1/pools", pool).await;
    assert_eq!(r.0, 201, "register pool: {}", r.1);
    c.wait_get(leader, "/v1/pools", "capacity measured from the nodes", |_, v| {
        v["items"][0]["spec"]["capacity"] == json!({ "cpu_millis": 4000, "memory_mib": 8192, "gpus": 0 })
    })
    .await;

    let jobs = vec![
        job("evicted", &["echo attempt $FLOTILLA_ATTEMPT", "sleep 2"], 1),
        job("adopted", &["echo start", "sleep 4", "echo end"], 0),
    ];
    let (s, v) = c
        .post(1, "/v1/pipelines", json!({ "name": "on-pods", "jobs": jobs }))
        .await;
    assert_eq!(s, 201, "{v}");
    let p = v["pipeline"].as_u64().unwrap();
    let ids: Vec<u64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    c.wait_get(1, &format!("/v1/pipelines/{p}"), "both running", |_, v| {
        v["job_states"]
            .as_array()
            .is_some_and(|a| a.iter().all(|j| j["state"] == "RUNNING"))
    })
    .await;

    let evicted_pod = format!("kt-j{}-a1", ids[0]);
    let deadline = Instant::now() + WAIT;
    while !kube.cluster().evict(NS, &evicted_pod) {
        assert!(Instant::now() < deadline, "pod {evicted_pod} never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.node_mut(leader).kill9();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    c.wait_leader_among(&rest).await;
    c.wait_get(rest[0], &format!("/v1/pipelines/{p}"), "pipeline SUCCEEDED", |s, v| {
        s == 200 && v["state"] == "SUCCEEDED"
    })
    .await;

    let retried = job_view(&c, rest[1], ids[0]).await;
    assert_eq!(retried["attempt"], 2, "the evicted attempt was retried: {retried}");
    let adopted = job_view(&c, rest[1], ids[1]).await;
    assert_eq!(adopted["attempt"], 1, "adopted, not run again: {adopted}");
    let log = c
        .http
        .get(
            c.node(rest[1])
                .url(&format!("/v1/jobs/{}/logs?consistency=linearizable", ids[1])),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(log, "$ echo start\nstart\n$ sleep 4\n$ echo end\nend\n");
    assert_eq!(kube.cluster().pods_created(), 3, "one pod per attempt");

    let deadline = Instant::now() + WAIT;
    while !kube.cluster().pod_names(NS).is_empty() {
        assert!(
            Instant::now() < deadline,
            "pods left behind: {:?}",
            kube.cluster().pod_names(NS)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tombstones = kube.cluster().config_map_names(NS);
    for attempt in [
        format!("kt-removed-j{}-a1", ids[0]),
        format!("kt-removed-j{}-a2", ids[0]),
        format!("kt-removed-j{}-a1", ids[1]),
    ] {
        assert!(tombstones.contains(&attempt), "{attempt} missing from {tombstones:?}");
    }
}

/// The image the fake kubelet resolves the source helper in: the directory of the
/// `flotilla-node` binary under test.
const HELPER_IMAGE: &str = "flotilla-helper:test";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repository_pipelines_pod_fetches_its_commit_from_the_nodes_with_its_grant() {
    let root = tempfile::tempdir().unwrap();
    let work = git::repository(root.path());
    // The job holds its attempt open until the test releases it (at most 60 s), so the grant
    // is tried while the attempt lives.
    let release = root.path().join("release");
    let pipeline_file = format!(
        "name: ci\njobs:\n  - name: test\n    image: busybox\n    constraints: {{ runtime: kubernetes }}\n    resources: {{ cpu_millis: 500, memory_mib: 256 }}\n    steps:\n      - cat greeting.txt\n      - if env | grep -q FLOTILLA_SOURCE; then echo the grant reached the job; exit 1; fi\n      - test ! -e .flotilla-source.tar.part\n      - for i in $(seq 1 600); do [ -e {} ] && break; sleep 0.1; done\n",
        release.display()
    );
    let head = git::commit(
        &work,
        "first",
        &[
            (".flotilla.yml", Some(pipeline_file.as_str())),
            ("greeting.txt", Some("fetched into the pod by its source container")),
        ],
    );
    let server = git::GitServer::start(root.path());

    let kube = fake_kube_with_helper().await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = secrets_key_file(keys.path());
    let url = kube.url();
    let args = [
        "--secrets-key-file",
        key_file.as_str(),
        "--kubernetes-namespace",
        NS,
        "--kubernetes-api-url",
        url.as_str(),
        "--kubernetes-helper-image",
        HELPER_IMAGE,
        "--cluster-name",
        "ks",
        "--leader-tick-ms",
        "100",
    ];
    let c = Cluster::start(3, &args).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let pool = json!({
        "name": "pods", "provider": "kubernetes", "capacity": { "cpu_millis": 1000, "memory_mib": 1024 }, "max_workers": 4,
        "labels": { "runtime": "kubernetes" }, "settings": { "node_selector": "pool=ci" }
    });
    let (s, v) = c.post(leader, "/v1/pools", pool).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = c
        .put(leader, "/v1/secrets/hook", json!({ "value": "hook-secret" }))
        .await;
    assert_eq!(s, 200, "{v}");
    let body = json!({ "url": server.url("app.git"), "forge": "git", "webhook_secret": "hook" });
    let (s, v) = c.put(leader, "/v1/repos/app", body).await;
    assert_eq!(s, 200, "{v}");

    let (s, v) = c.post(2, "/v1/repos/app/run", json!({ "branch": "main" })).await;
    assert_eq!(s, 201, "{v}\n{}", c.logs());
    let pipeline = v["pipeline"].as_u64().unwrap();
    let (_, p) = c
        .get(1, &format!("/v1/pipelines/{pipeline}?consistency=linearizable"))
        .await;
    assert_eq!(p["source"]["commit"], head.as_str(), "{p}");
    let job = p["jobs"][0].as_u64().unwrap();
    let running = c
        .wait_get(1, &format!("/v1/jobs/{job}"), "the job running", |s, v| {
            s == 200 && ["RUNNING", "SUCCEEDED", "FAILED", "TERMINATED"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(running["state"], "RUNNING", "{running}\n{}", c.logs());

    // While the attempt runs, its source opens to its grant only.
    let path = format!("/v1/jobs/{job}/attempts/1/source");
    for (grant, what) in [(None, "no grant"), (Some("0".repeat(64)), "a forged grant")] {
        let response = get_source(&c.node(3).url(&path), grant.as_deref()).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "grant_refused", "{what}: {body}");
    }
    // The attempt's Secret holds the grant; its pod spec never does.
    let pod = kube
        .cluster()
        .pod(NS, &format!("ks-j{job}-a1"))
        .expect("the attempt's pod");
    let grant = kube
        .cluster()
        .secret_value(NS, &format!("ks-j{job}-a1"), "flotilla.source-grant")
        .map(|g| String::from_utf8(g).unwrap())
        .expect("the attempt's Secret holds its grant");
    assert!(!serde_json::to_string(&pod).unwrap().contains(&grant));
    // The grant itself opens the source on any node, this attempt's only.
    let response = get_source(&c.node(3).url(&path), Some(&grant)).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.bytes().await.unwrap().len() > 512, "a tar archive");
    // The helper itself, given a forged grant, stops at the first refusal with the reason as
    // its last line (what the pod reports), and leaves nothing in the workspace.
    let workspace = tempfile::tempdir().unwrap();
    let out = fetch_source(workspace.path(), &c.node(1).url(&path), &"0".repeat(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.contains("HTTP 401") && last.contains("grant"), "{stderr}");
    assert_eq!(std::fs::read_dir(workspace.path()).unwrap().count(), 0, "{stderr}");
    // With the grant it fetches and unpacks the commit's files, past a node that is down.
    let urls = format!("http://127.0.0.1:{}/closed,{}", free_port(), c.node(2).url(&path));
    let out = fetch_source(workspace.path(), &urls, &grant);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("greeting.txt")).unwrap(),
        "fetched into the pod by its source container"
    );
    assert!(!workspace.path().join(".flotilla-source.tar.part").exists());
    let other = format!("/v1/jobs/{job}/attempts/2/source");
    let response = get_source(&c.node(1).url(&other), Some(&grant)).await;
    // Not known to the node asked: it catches up with the cluster, then says there is none
    // (a 5xx would send the helper on to the next node for nothing).
    assert_eq!(response.status().as_u16(), 404, "an attempt not made yet");

    std::fs::write(&release, b"").unwrap();
    let done = c
        .wait_get(1, &format!("/v1/jobs/{job}"), "the job finished", |s, v| {
            s == 200 && ["SUCCEEDED", "FAILED", "TERMINATED"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    let logs = c.get_text(1, &format!("/v1/jobs/{job}/logs")).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}\n{logs}\n{}", c.logs());
    assert!(logs.contains("fetched into the pod by its source container"), "{logs}");
    // Once the attempt is over its grant opens nothing.
    let response = get_source(&c.node(2).url(&path), Some(&grant)).await;
    assert_eq!(response.status().as_u16(), 410);
    assert!(!c.logs().contains(&grant), "the grant reached a node's log");
    drop(server);
}

/// `flotilla-node fetch-source` into `into`, as a pod's source container runs it.
fn fetch_source(into: &std::path::Path, urls: &str, grant: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flotilla-node"))
        .args(["fetch-source", "--into"])
        .arg(into)
        .env("FLOTILLA_SOURCE_URLS", urls)
        .env("FLOTILLA_SOURCE_GRANT", grant)
        .env("FLOTILLA_SOURCE_CA", test_ca().ca.pem().0)
        .output()
        .unwrap()
}

/// `GET` of an attempt's source at `url`, with `grant` as the bearer if given.
async fn get_source(url: &str, grant: Option<&str>) -> reqwest::Response {
    let mut request = client_builder().build().unwrap().get(url);
    if let Some(g) = grant {
        request = request.bearer_auth(g);
    }
    request.send().await.unwrap()
}

/// Three nodes with a key file and the helper image, their Kubernetes provider on `kube`,
/// and two pools: `pods` (Kubernetes) and `local` (process); the leader.
async fn start_with_pools(root: &std::path::Path, kube: &FakeKube, keys: &std::path::Path) -> (Cluster, u64) {
    let key_file = secrets_key_file(keys);
    let url = kube.url();
    let work = root.join("workers").to_string_lossy().into_owned();
    let args = [
        "--secrets-key-file",
        key_file.as_str(),
        "--kubernetes-namespace",
        NS,
        "--kubernetes-api-url",
        url.as_str(),
        "--kubernetes-helper-image",
        HELPER_IMAGE,
        "--cluster-name",
        "ka",
        "--process-work-dir",
        work.as_str(),
        "--leader-tick-ms",
        "100",
    ];
    let c = Cluster::start(3, &args).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let pods = json!({
        "name": "pods", "provider": "kubernetes", "capacity": { "cpu_millis": 1000, "memory_mib": 1024 }, "max_workers": 4,
        "labels": { "runtime": "kubernetes" }, "settings": { "node_selector": "pool=ci" }
    });
    let local = json!({
        "name": "local", "provider": "process", "capacity": { "cpu_millis": 1000, "memory_mib": 1024 }, "max_workers": 4,
        "labels": { "runtime": "process" }
    });
    for pool in [pods, local] {
        let (s, v) = c.post(leader, "/v1/pools", pool).await;
        assert_eq!(s, 201, "{v}");
    }
    (c, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_receives_the_artifacts_of_the_jobs_it_needs_from_the_nodes() {
    let root = tempfile::tempdir().unwrap();
    let kube = fake_kube_with_helper().await;
    let keys = tempfile::tempdir().unwrap();
    let (c, _) = start_with_pools(root.path(), &kube, keys.path()).await;
    // Built on a process pool, kept, and read in a pod; the pod also sees no grant.
    let build = job_spec(
        "build",
        json!({ "steps": ["mkdir -p out deps && echo made on another pool > out/msg && echo cached on another pool > deps/msg"],
            "constraints": { "runtime": "process" }, "artifacts": { "paths": ["out"] },
            "cache": { "key": "shared", "paths": ["deps"] } }),
    );
    let mut test = job(
        "test",
        &[
            "cat out/msg",
            "if env | grep -q FLOTILLA_SOURCE; then echo the grant reached the job; exit 1; fi",
        ],
        0,
    );
    test["needs"] = json!(["build"]);
    let (s, v) = c
        .post(2, "/v1/pipelines", json!({ "name": "across", "jobs": [build, test] }))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["jobs"][1]["id"].as_u64().unwrap();
    let done = c
        .wait_get(1, &format!("/v1/jobs/{id}"), "the pod's job finished", |s, v| {
            s == 200 && ["SUCCEEDED", "FAILED"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    let logs = c.get_text(1, &format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}\n{logs}\n{}", c.logs());
    assert!(logs.contains("made on another pool"), "{logs}");
    // Without its grant, the artifact opens to no one.
    let path = format!("/v1/jobs/{id}/attempts/1/inputs/0");
    let response = get_source(&c.node(3).url(&path), None).await;
    assert!(matches!(response.status().as_u16(), 401 | 410), "{}", response.status());
    // The cache the process job saved is restored into the next pipeline's pod. The pod's own
    // files go back through its collect container: its cache replaces the old one, and its
    // artifact reaches a process job byte for byte.
    let (s, cache) = c.get(2, "/v1/caches?consistency=linearizable").await;
    assert_eq!(s, 200, "{cache}");
    let digest = cache["items"][0]["digest"]
        .as_str()
        .expect("the build job's cache")
        .to_string();
    let mut warm = job(
        "warm",
        &[
            "cat deps/msg",
            "echo saved by a pod > deps/msg && mkdir -p dist && head -c 300000 /dev/urandom > dist/blob && sha256sum dist/blob > dist/sum",
        ],
        0,
    );
    warm["cache"] = json!({ "key": "shared", "paths": ["deps"] });
    warm["artifacts"] = json!({ "paths": ["dist"] });
    let check = job_spec(
        "check",
        json!({ "steps": ["sha256sum -c dist/sum", "test ! -e deps"], "needs": ["warm"],
            "constraints": { "runtime": "process" } }),
    );
    let (s, v) = c
        .post(1, "/v1/pipelines", json!({ "name": "warm", "jobs": [warm, check] }))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["jobs"][0]["id"].as_u64().unwrap();
    let check_id = v["jobs"][1]["id"].as_u64().unwrap();
    let done = c
        .wait_get(
            3,
            &format!("/v1/jobs/{check_id}"),
            "the job after the pod finished",
            |s, v| s == 200 && ["SUCCEEDED", "FAILED", "SKIPPED"].contains(&v["state"].as_str().unwrap_or("")),
        )
        .await;
    let pod_job = job_view(&c, 3, id).await;
    let logs = c.get_text(1, &format!("/v1/jobs/{id}/logs")).await;
    let check_logs = c.get_text(1, &format!("/v1/jobs/{check_id}/logs")).await;
    assert_eq!(pod_job["state"], "SUCCEEDED", "{pod_job}\n{logs}\n{}", c.logs());
    assert_eq!(done["state"], "SUCCEEDED", "{done}\n{check_logs}\n{}", c.logs());
    assert!(logs.contains("cached on another pool"), "{logs}");
    assert!(check_logs.contains("dist/blob: OK"), "{check_logs}");
    let note = &pod_job["attempts"][0]["cache"];
    assert_eq!(note["restored"], digest.as_str(), "{pod_job}");
    let saved = note["saved"]["stored"]["digest"].as_str().unwrap_or_default();
    assert!(
        saved.len() == 64 && saved != digest,
        "the pod's cache was saved: {pod_job}"
    );
    let (s, artifacts) = c
        .get(2, &format!("/v1/jobs/{id}/artifacts?consistency=linearizable"))
        .await;
    assert_eq!(s, 200, "{artifacts}");
    assert_eq!(artifacts["digest"].as_str().map(str::len), Some(64), "{artifacts}");
    assert!(
        artifacts["files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["path"] == "dist/blob" && f["size_bytes"] == 300_000)),
        "{artifacts}"
    );
    // The pod's cache is restored by the next process job.
    let reader = job_spec(
        "reader",
        json!({ "steps": ["grep 'saved by a pod' deps/msg"], "constraints": { "runtime": "process" },
            "cache": { "key": "shared", "paths": ["deps"], "policy": "pull" } }),
    );
    let (s, v) = c
        .post(2, "/v1/pipelines", json!({ "name": "reader", "jobs": [reader] }))
        .await;
    assert_eq!(s, 201, "{v}");
    let reader_id = v["jobs"][0]["id"].as_u64().unwrap();
    let done = c
        .wait_get(1, &format!("/v1/jobs/{reader_id}"), "the reader finished", |s, v| {
            s == 200 && ["SUCCEEDED", "FAILED"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    // A path the pod did not make fails its job naming the field, as on any provider.
    let mut missing = job("missing", &["true"], 0);
    missing["artifacts"] = json!({ "paths": ["nowhere"] });
    let (s, v) = c
        .post(3, "/v1/pipelines", json!({ "name": "missing", "jobs": [missing] }))
        .await;
    assert_eq!(s, 201, "{v}");
    let missing_id = v["jobs"][0]["id"].as_u64().unwrap();
    let done = c
        .wait_get(
            1,
            &format!("/v1/jobs/{missing_id}"),
            "the job without its files ended",
            |s, v| s == 200 && ["SUCCEEDED", "FAILED"].contains(&v["state"].as_str().unwrap_or("")),
        )
        .await;
    assert_eq!(done["state"], "FAILED", "{done}");
    assert!(done.to_string().contains("artifacts.paths[0]"), "{done}");
    // No grant, or a forged one, uploads nothing.
    let upload = format!("/v1/jobs/{missing_id}/attempts/1/uploads/artifacts/{}", "0".repeat(64));
    let client = client_builder().build().unwrap();
    for grant in [None, Some("forged")] {
        let mut request = client.put(c.node(2).url(&upload)).body("x");
        if let Some(g) = grant {
            request = request.bearer_auth(g);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert!(matches!(status, 401 | 410), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_killed_while_a_pod_downloads_its_input_leaves_the_download_to_another_node() {
    let root = tempfile::tempdir().unwrap();
    let kube = fake_kube_with_helper().await;
    let keys = tempfile::tempdir().unwrap();
    let (mut c, leader) = start_with_pools(root.path(), &kube, keys.path()).await;
    // 128 MiB that do not compress, so the pod's download takes long enough to be cut.
    let make = "mkdir -p out && head -c 134217728 /dev/urandom > out/noise && sha256sum out/noise > out/noise.sum";
    let build = job_spec(
        "build",
        json!({ "steps": [make], "constraints": { "runtime": "process" }, "artifacts": { "paths": ["out"] } }),
    );
    let mut test = job("test", &["sha256sum -c out/noise.sum"], 0);
    test["needs"] = json!(["build"]);
    let (s, v) = c
        .post(leader, "/v1/pipelines", json!({ "name": "cut", "jobs": [build, test] }))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["jobs"][1]["id"].as_u64().unwrap();
    // The leader is asked first; it is killed once part of the artifact has arrived.
    let pod = format!("ka-j{id}-a1");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let part = kube
            .cluster()
            .volume_dir(NS, &pod, "workspace")
            .map(|d| d.join(".flotilla-source.tar.part"));
        if part
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.len() > (1 << 20))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pod never started its download\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.node_mut(leader).kill9();
    // What the source container says, read while its pod lives (the pod goes with its job).
    let mut fetched = String::new();
    while !fetched
        .lines()
        .any(|l| l.starts_with("artifact 0:") && l.contains("bytes from"))
    {
        assert!(
            Instant::now() < deadline,
            "the pod never fetched its input: {fetched}\n{}",
            c.logs()
        );
        if let Some(log) = kube.cluster().init_log_of(NS, &pod) {
            fetched = String::from_utf8_lossy(&log).into_owned();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rest: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    c.wait_leader_among(&rest).await;
    let done = c
        .wait_get(rest[0], &format!("/v1/jobs/{id}"), "the pod's job finished", |s, v| {
            s == 200 && ["SUCCEEDED", "FAILED"].contains(&v["state"].as_str().unwrap_or(""))
        })
        .await;
    let logs = c.get_text(rest[0], &format!("/v1/jobs/{id}/logs")).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}\n{logs}\n{fetched}");
    assert!(logs.contains("out/noise: OK"), "{logs}");
    assert_eq!(
        done["attempt"], 1,
        "the download went on, the job did not run again: {done}"
    );
    // The helper saw the first node stop mid-way and took the whole artifact from another.
    let leader_port = c.node(leader).api_addr.rsplit(':').next().unwrap().to_string();
    assert!(fetched.contains("the download broke after"), "{fetched}");
    let took = fetched
        .lines()
        .find(|l| l.starts_with("artifact 0:") && l.contains("bytes from"))
        .unwrap_or_default();
    assert!(!took.contains(&format!(":{leader_port}/")), "{fetched}");
}
