//! Artifacts through real node processes and process pools: a job's files reach the job that
//! needs it on another pool byte for byte, every node lists and serves them checked against
//! their digest, they outlive the node that made them, they expire, and files that cannot be
//! kept fail the job with a message naming them.

mod common;
use common::*;
use serde_json::{Value, json};
use sha2::Digest;
use std::path::Path;

/// What the build job writes into `out/bin`: 300,000 bytes, the same every time.
fn binary() -> Vec<u8> {
    b"flotilla\n".iter().copied().cycle().take(300_000).collect()
}

const BUILD: &str = "mkdir -p out/docs && yes flotilla | head -c 300000 > out/bin && echo notes > out/docs/README";

async fn start(dir: &Path, extra: &[&str]) -> Cluster {
    let work = dir.join("workers").to_string_lossy().into_owned();
    let mut args = vec!["--process-work-dir", work.as_str(), "--leader-tick-ms", "100"];
    args.extend_from_slice(extra);
    let c = Cluster::start(3, &args).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    // A second pool the consumers are sent to by a label.
    let pool = json!({ "name": "tests", "provider": "process", "labels": { "stage": "test" },
        "capacity": { "cpu_millis": 8000, "memory_mib": 16384 }, "max_workers": 16 });
    let (s, v) = c.post(leader, "/v1/pools", pool).await;
    assert!(s == 201 || s == 200, "{s} {v}");
    c
}

async fn submit(c: &Cluster, spec: Value) -> Vec<(String, u64)> {
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap().to_string(), j["id"].as_u64().unwrap()))
        .collect()
}

fn id_of(jobs: &[(String, u64)], name: &str) -> u64 {
    jobs.iter().find(|(n, _)| n == name).unwrap().1
}

async fn wait_job(c: &Cluster, node: u64, id: u64, state: &str) -> Value {
    c.wait_get(node, &format!("/v1/jobs/{id}"), &format!("job {id} {state}"), |s, v| {
        s == 200 && v["state"] == state
    })
    .await
}

/// The archive of job `id` from `node`, checked against the digest it announces.
async fn archive(c: &Cluster, node: u64, id: u64) -> (String, Vec<u8>) {
    let resp = c
        .authorized(
            c.http.get(
                c.node(node)
                    .url(&format!("/v1/jobs/{id}/artifacts/archive?consistency=linearizable")),
            ),
        )
        .send()
        .await
        .unwrap();
    if resp.status() != 200 {
        let status = resp.status();
        panic!(
            "archive of job {id} from node {node}: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }
    assert_eq!(resp.headers()["content-type"], "application/zstd");
    let digest = resp.headers()["x-flotilla-digest"].to_str().unwrap().to_string();
    let bytes = resp.bytes().await.unwrap().to_vec();
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        digest,
        "node {node} sent other bytes"
    );
    (digest, bytes)
}

/// `bytes` (an archive) unpacked into a new directory.
fn unpacked(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob");
    std::fs::write(&blob, bytes).unwrap();
    let out = dir.path().join("files");
    std::fs::create_dir(&out).unwrap();
    flotilla_providers::artifact_archive::unpack(&blob, &out).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_files_reach_the_job_that_needs_it_and_every_node_serves_them() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), &[]).await;
    let spec = json!({ "name": "artifacts", "jobs": [
        job_spec("build", json!({ "steps": [BUILD], "artifacts": { "paths": ["out/", "./out/docs/README"] } })),
        job_spec("test", json!({ "needs": ["build"], "constraints": { "stage": "test" },
            "steps": ["test -f out/bin && sha256sum out/bin && cat out/docs/README"] })),
        job_spec("plain", json!({ "steps": ["true"] })),
    ]});
    let jobs = submit(&c, spec).await;
    let (build, test, plain) = (id_of(&jobs, "build"), id_of(&jobs, "test"), id_of(&jobs, "plain"));
    wait_job(&c, 1, test, "SUCCEEDED").await;
    let log = c.get_text(2, &format!("/v1/jobs/{test}/logs")).await;
    let expected = hex::encode(sha2::Sha256::digest(binary()));
    assert!(log.contains(&expected), "the consumer read other bytes:\n{log}");
    assert!(log.contains("notes"), "{log}");
    // Every node lists and serves the same archive, checked against its digest.
    let mut digests = Vec::new();
    for node in 1..=3 {
        let (s, v) = c.get(node, &format!("/v1/jobs/{build}/artifacts")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["attempt"], 1);
        let files = v["files"].as_array().unwrap();
        assert!(
            files
                .iter()
                .any(|f| f["path"] == "out/bin" && f["size_bytes"] == 300_000),
            "{v}"
        );
        assert!(v["expires_at_ms"].as_u64() > v["created_at_ms"].as_u64(), "{v}");
        let (digest, bytes) = archive(&c, node, build).await;
        assert_eq!(v["digest"], digest.as_str());
        assert_eq!(v["size_bytes"].as_u64(), Some(bytes.len() as u64));
        let files = unpacked(&bytes);
        assert_eq!(std::fs::read(files.path().join("files/out/bin")).unwrap(), binary());
        digests.push(digest);
        // The blob is on every node's disk (copied before the record was proposed).
        let blob = c.node(node).data_dir.join("artifacts/sha256").join(&digests[0]);
        assert!(blob.is_file(), "node {node} has no copy at {}", blob.display());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    // A job that keeps nothing says so.
    let (s, v) = c.get(3, &format!("/v1/jobs/{plain}/artifacts")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("no_artifacts")), "{v}");
    // The console's job page shows them, with a download link.
    let html = c.console_page(1, &format!("/ui/jobs/{build}")).await;
    assert!(html.contains("Artifacts"), "{html}");
    assert!(html.contains(&format!("/v1/jobs/{build}/artifacts/archive")), "{html}");
    assert!(html.contains(&digests[0]), "{html}");
    // The usage is visible per tenant.
    let metrics = c.get_text(1, "/metrics").await;
    assert!(
        metrics.contains("flotilla_artifact_bytes{tenant=\"default\"}"),
        "no artifact usage in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_cannot_be_kept_fail_the_job_and_its_dependants_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path(), &[]).await;
    let spec = json!({ "name": "missing", "jobs": [
        job_spec("build", json!({ "steps": ["mkdir -p out && echo x > out/a"],
            "artifacts": { "paths": ["out/a", "dist/app"] } })),
        job_spec("test", json!({ "needs": ["build"], "steps": ["true"] })),
    ]});
    let jobs = submit(&c, spec).await;
    let build = id_of(&jobs, "build");
    let v = wait_job(&c, 2, build, "FAILED").await;
    let reason = v["failure"]["artifacts"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("artifacts.paths[1]") && reason.contains("dist/app") && reason.contains("does not exist"),
        "{v}"
    );
    wait_job(&c, 2, id_of(&jobs, "test"), "FAILED").await;
    // A path that leaves the workspace is refused at submission, naming the field.
    let bad = json!({ "name": "bad", "jobs": [job_spec("b", json!({ "artifacts": { "paths": ["../etc"] } }))] });
    let (s, v) = c.post(1, "/v1/pipelines", bad).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["field"], "jobs[b].artifacts.paths[0]", "{v}");
    // Past the per-job limit: the job fails saying so.
    let mut limits: Value = c.get(1, "/v1/limits").await.1["limits"].clone();
    limits["max_artifact_bytes_per_job"] = json!(1000);
    let (s, v) = c.put(1, "/v1/limits", limits).await;
    assert_eq!(s, 200, "{v}");
    let big = json!({ "name": "big", "jobs": [job_spec("build", json!({ "steps": [BUILD],
        "artifacts": { "paths": ["out"] } }))] });
    let jobs = submit(&c, big).await;
    let v = wait_job(&c, 3, id_of(&jobs, "build"), "FAILED").await;
    let reason = v["failure"]["artifacts"]["reason"].as_str().unwrap_or_default();
    // Text compresses well: the bound before compression (16 times the limit) is passed first.
    assert!(reason.contains("the artifacts take more than 16000 bytes"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_outlives_the_node_that_made_it_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(
        dir.path(),
        &["--retention-interval-ms", "500", "--artifact-upkeep-interval-ms", "500"],
    )
    .await;
    let spec = json!({ "name": "survive", "jobs": [
        job_spec("build", json!({ "steps": [BUILD], "artifacts": { "paths": ["out"], "expire_in": "20s" } })),
        job_spec("test", json!({ "needs": ["build"], "manual": true,
            "steps": ["test \"$(sha256sum < out/bin | cut -d' ' -f1)\" = \"$EXPECTED\""],
            "env": { "EXPECTED": hex::encode(sha2::Sha256::digest(binary())) } })),
    ]});
    let mut c = c;
    let jobs = submit(&c, spec).await;
    let (build, test) = (id_of(&jobs, "build"), id_of(&jobs, "test"));
    wait_job(&c, 1, build, "SUCCEEDED").await;
    // The leader packed the files and holds the first copy: it goes for good.
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.node_mut(leader).kill9();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = c.wait_leader_among(&rest).await;
    for node in &rest {
        archive(&c, *node, build).await;
    }
    // A copy lost from a disk is fetched again from a peer by the node's upkeep, so losing
    // another node later still loses nothing.
    let digest = c.get(rest[0], &format!("/v1/jobs/{build}/artifacts")).await.1["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let copy = c.node(rest[1]).data_dir.join("artifacts/sha256").join(&digest);
    std::fs::remove_file(&copy).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !copy.is_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "node {} never fetched its copy again",
            rest[1]
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        flotilla_providers::artifact_archive::digest_of(&copy).unwrap(),
        digest,
        "the fetched copy is not the blob"
    );
    // The new leader delivers it to the job that needs it.
    let (s, v) = c.post(new_leader, &format!("/v1/jobs/{test}/approve"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    wait_job(&c, new_leader, test, "SUCCEEDED").await;
    // Past `expire_in`, the record goes and the job says it holds none.
    let v = c
        .wait_get(
            rest[0],
            &format!("/v1/jobs/{build}/artifacts"),
            "the artifact expired",
            |s, _| s == 404,
        )
        .await;
    assert_eq!(v["error"]["code"], "no_artifacts", "{v}");
}

/// Files in `dir` (none if it does not exist).
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map_or(vec![], |d| {
        d.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_while_it_packs_leaves_nothing_half_written_and_the_next_packs_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), &[]).await;
    // 64 MiB that do not compress: packing and copying take long enough to be cut.
    let make = "mkdir -p out && head -c 67108864 /dev/urandom > out/noise && sha256sum out/noise | cut -d' ' -f1 > out/noise.sha";
    let spec = json!({ "name": "cut", "jobs": [
        job_spec("build", json!({ "steps": [make], "artifacts": { "paths": ["out"] } })),
        job_spec("test", json!({ "needs": ["build"], "constraints": { "stage": "test" },
            "steps": ["test -s out/noise.sha && test \"$(sha256sum < out/noise | cut -d' ' -f1)\" = \"$(cat out/noise.sha)\" && echo intact"] })),
    ]});
    let jobs = submit(&c, spec).await;
    let (build, test) = (id_of(&jobs, "build"), id_of(&jobs, "test"));
    // The leader is killed as soon as its blob is being written.
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let incoming = c.node(leader).data_dir.join("artifacts/incoming");
    let deadline = std::time::Instant::now() + WAIT;
    while !files_in(&incoming).iter().any(|f| f.starts_with("collect")) {
        assert!(std::time::Instant::now() < deadline, "the leader never started packing");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    c.node_mut(leader).kill9();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    c.wait_leader_among(&rest).await;
    let v = wait_job(&c, rest[0], test, "SUCCEEDED").await;
    let log = c.get_text(rest[0], &format!("/v1/jobs/{test}/logs")).await;
    let (_, b) = c.get(rest[0], &format!("/v1/jobs/{build}")).await;
    assert!(log.contains("intact"), "{log}\n{v}\n{b}\n{}", c.logs());
    let (s, v) = c
        .get(rest[1], &format!("/v1/jobs/{build}?consistency=linearizable"))
        .await;
    assert_eq!(
        (s, v["attempt"].as_u64()),
        (200, Some(1)),
        "packed again, not run again: {v}"
    );
    for node in &rest {
        let (digest, _) = archive(&c, *node, build).await;
        assert!(c.node(*node).data_dir.join("artifacts/sha256").join(&digest).is_file());
    }
    // The killed node comes back with nothing half-written kept.
    c.node_mut(leader).spawn();
    c.wait_http(leader).await;
    assert!(files_in(&incoming).is_empty(), "{:?}", files_in(&incoming));
    archive(&c, leader, build).await;
}
