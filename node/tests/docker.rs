//! Pipelines on the Docker provider through real node processes and the machine's Docker
//! Engine (image from `scripts/test-image`): containers run, a leader killed mid-run is
//! replaced by one that adopts them, and none is left; a Docker outage leaves process jobs
//! running and job timeouts enforced.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const IMAGE: &str = "flotilla-test/busybox:1";

fn job(name: &str, image: Option<&str>, steps: &[&str], runtime: &str) -> Value {
    let mut j = job_spec(
        name,
        json!({ "steps": steps, "resources": { "cpu_millis": 200, "memory_mib": 64 }, "constraints": { "runtime": runtime } }),
    );
    if let Some(image) = image {
        j["image"] = json!(image);
    }
    j
}

async fn register(c: &Cluster, node: u64, name: &str, provider: &str) {
    let pool = json!({ "name": name, "provider": provider, "capacity": { "cpu_millis": 4000, "memory_mib": 4096 }, "max_workers": 8, "labels": { "runtime": provider } });
    let r = c.post(node, "/v1/pools", pool).await;
    assert!(r.0 == 201 || r.0 == 200, "register pool: {} {}", r.0, r.1);
}

fn containers(cluster: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("label=flotilla.cluster={cluster}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .expect("the docker CLI is required");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes the cluster's containers when the test ends, passed or not.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in containers(&self.0) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &name]).output();
        }
    }
}

fn require_image() {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "image {IMAGE} is missing: build it with scripts/test-image");
}

async fn wait_no_containers(cluster: &str) {
    let deadline = Instant::now() + WAIT;
    while !containers(cluster).is_empty() {
        assert!(
            Instant::now() < deadline,
            "containers left behind: {:?}",
            containers(cluster)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn logs(c: &Cluster, node: u64, job: u64) -> String {
    let url = c
        .node(node)
        .url(&format!("/v1/jobs/{job}/logs?consistency=linearizable"));
    c.http.get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_jobs_survive_a_leader_kill_and_leave_no_container() {
    require_image();
    let cluster = format!("ft-node-{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let args = [
        "--docker-socket",
        "/var/run/docker.sock",
        "--docker-network",
        "none",
        "--cluster-name",
        cluster.as_str(),
        "--leader-tick-ms",
        "100",
    ];
    let mut c = Cluster::start(3, &args).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    register(&c, leader, "containers", "docker").await;

    let slow = ["echo starting in $(hostname)", "sleep 3", "echo finished"];
    let jobs: Vec<Value> = (0..3)
        .map(|i| job(&format!("c{i}"), Some(IMAGE), &slow, "docker"))
        .collect();
    let (s, v) = c
        .post(1, "/v1/pipelines", json!({ "name": "in-docker", "jobs": jobs }))
        .await;
    assert_eq!(s, 201, "{v}");
    let p = v["pipeline"].as_u64().unwrap();
    let ids: Vec<u64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    c.wait_get(1, &format!("/v1/pipelines/{p}"), "all running", |_, v| {
        v["job_states"]
            .as_array()
            .is_some_and(|a| a.iter().all(|j| j["state"] == "RUNNING"))
    })
    .await;
    assert_eq!(containers(&cluster).len(), 3, "one container per job");

    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.node_mut(leader).kill9();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    c.wait_leader_among(&rest).await;
    c.wait_get(rest[0], &format!("/v1/pipelines/{p}"), "pipeline SUCCEEDED", |s, v| {
        s == 200 && v["state"] == "SUCCEEDED"
    })
    .await;
    for id in ids {
        let (_, j) = c.get(rest[1], &format!("/v1/jobs/{id}?consistency=linearizable")).await;
        assert_eq!(j["attempt"], 1, "adopted, not run again: {j}");
        let log = logs(&c, rest[1], id).await;
        assert_eq!(
            log.lines().filter(|l| l.starts_with("starting in")).count(),
            1,
            "ran once: {log}"
        );
        assert!(log.ends_with("$ echo finished\nfinished\n"), "incomplete log: {log:?}");
    }
    wait_no_containers(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_outage_leaves_process_jobs_running_and_timeouts_enforced() {
    let args = [
        "--docker-socket",
        "/nonexistent/docker.sock",
        "--provider-breaker-failures",
        "2",
        "--provider-breaker-open-ms",
        "1000",
        "--leader-tick-ms",
        "100",
    ];
    let c = Cluster::start(1, &args).await;
    register(&c, 1, "host", "process").await;
    register(&c, 1, "containers", "docker").await;
    let mut boxed = job("boxed", Some(IMAGE), &["echo never"], "docker");
    boxed["timeout"] = json!("4s");
    let spec = json!({ "name": "mixed", "jobs": [boxed, job("host", None, &["echo on the host"], "process")] });
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let ids: Vec<u64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();

    let host = c
        .wait_get(1, &format!("/v1/jobs/{}", ids[1]), "host job SUCCEEDED", |_, v| {
            v["state"] == "SUCCEEDED"
        })
        .await;
    assert_eq!(host["attempt"], 1);
    let boxed = c
        .wait_get(1, &format!("/v1/jobs/{}", ids[0]), "boxed job timed out", |_, v| {
            v["state"] == "FAILED"
        })
        .await;
    assert_eq!(boxed["failure"], "timeout", "{boxed}");
    assert!(logs(&c, 1, ids[1]).await.contains("on the host"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_and_caches_made_in_a_container_reach_the_containers_that_need_them() {
    require_image();
    let cluster = format!("ft-art-{}", std::process::id());
    let _cleanup = Cleanup(cluster.clone());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("workers").to_string_lossy().into_owned();
    let args = [
        "--docker-socket",
        "/var/run/docker.sock",
        "--docker-network",
        "none",
        "--cluster-name",
        cluster.as_str(),
        "--process-work-dir",
        work.as_str(),
        "--leader-tick-ms",
        "100",
    ];
    let c = Cluster::start(3, &args).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    register(&c, leader, "containers", "docker").await;
    register(&c, leader, "local", "process").await;
    // 200,000 bytes the test knows, and a link that must stay a link.
    let build = "mkdir -p out && yes flotilla | head -c 200000 > out/bin && ln -s bin out/link && sha256sum out/bin";
    let check = "test \"$(sha256sum < out/bin | cut -d' ' -f1)\" = \"$EXPECTED\" && test -L out/link && echo verified";
    let expected: Vec<u8> = b"flotilla\n".iter().copied().cycle().take(200_000).collect();
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&expected))
    };
    let mut make = job("make", Some(IMAGE), &[build], "docker");
    make["artifacts"] = json!({ "paths": ["out"] });
    let mut in_docker = job("in-docker", Some(IMAGE), &[check], "docker");
    in_docker["needs"] = json!(["make"]);
    in_docker["env"] = json!({ "EXPECTED": expected });
    let mut in_process = job("in-process", None, &[check], "process");
    in_process["needs"] = json!(["make"]);
    in_process["env"] = json!({ "EXPECTED": expected });
    let (s, v) = c
        .post(
            1,
            "/v1/pipelines",
            json!({ "name": "art", "jobs": [make, in_docker, in_process] }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let p = v["pipeline"].as_u64().unwrap();
    let ids: Vec<u64> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    let done = c
        .wait_get(1, &format!("/v1/pipelines/{p}"), "pipeline finished", |s, v| {
            s == 200 && (v["state"] == "SUCCEEDED" || v["state"] == "FAILED")
        })
        .await;
    for id in &ids[1..] {
        let log = logs(&c, 1, *id).await;
        assert!(
            log.contains("verified"),
            "job {id} did not read the artifact: {log}\n{done}"
        );
    }
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let (s, v) = c.get(2, &format!("/v1/jobs/{}/artifacts", ids[0])).await;
    assert_eq!(s, 200, "{v}");
    let files = v["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "out/bin" && f["size_bytes"] == 200_000),
        "{v}"
    );
    // A cache filled in one container is restored into the next pipeline's container.
    let cache = json!({ "key": "docker-deps", "paths": ["deps"] });
    let mut digest = String::new();
    for (name, step) in [
        (
            "fill",
            "test ! -e deps && mkdir deps && yes dep | head -c 100000 > deps/lib && echo 1 > deps/gen",
        ),
        (
            "reuse",
            "test \"$(cat deps/gen)\" = 1 && test \"$(wc -c < deps/lib)\" -eq 100000 && echo reused",
        ),
    ] {
        let mut j = job(name, Some(IMAGE), &[step], "docker");
        j["cache"] = cache.clone();
        let (s, v) = c.post(1, "/v1/pipelines", json!({ "name": name, "jobs": [j] })).await;
        assert_eq!(s, 201, "{v}");
        let id = v["jobs"][0]["id"].as_u64().unwrap();
        let done = c
            .wait_get(2, &format!("/v1/jobs/{id}"), "cache job ended", |s, v| {
                s == 200 && matches!(v["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
            })
            .await;
        assert_eq!(done["state"], "SUCCEEDED", "{done}\n{}", logs(&c, 1, id).await);
        let attempt = &done["attempts"][0]["cache"];
        if name == "reuse" {
            assert_eq!(attempt["restored"], digest.as_str(), "{done}");
        }
        digest = attempt["saved"]["stored"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!digest.is_empty(), "{done}");
    }
    wait_no_containers(&cluster).await;
}
