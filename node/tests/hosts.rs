//! Workers only one host can see. A process worker lives in the work directory of the host
//! whose leader created it, and its attempt records that host; a leader on another host sees
//! nothing of it (its own work directory is another one), so it must leave it alone rather than
//! report it lost and run the job a second time beside the first. New jobs run where the
//! leader is.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// Node 1 on host `a`, nodes 2 and 3 on host `b`; each host has its own work directory.
fn host_of(id: u64) -> &'static str {
    if id == 1 { "host-a" } else { "host-b" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_on_another_host_leaves_a_running_worker_alone() {
    let c = Cluster::start_each(3, |id, dir| {
        vec![
            "--host-id".into(),
            host_of(id).into(),
            "--process-work-dir".into(),
            dir.join(format!("workers-{}", host_of(id)))
                .to_string_lossy()
                .into_owned(),
        ]
    })
    .await;
    c.lead(1).await;
    c.register_pool(1).await;

    // Each run of the job appends a line to the marker, wherever it runs.
    let marker = c.dir().join("runs");
    let step = format!("echo run >> {}; sleep 8", marker.display());
    let spec = json!({ "name": "long", "jobs": [job_spec("build", json!({ "steps": [step] }))] });
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let job = v["jobs"][0]["id"].as_u64().expect("a job id");
    let path = format!("/v1/jobs/{job}");
    let running = c
        .wait_get(1, &path, "the job running on host a", |_, v| v["state"] == "RUNNING")
        .await;
    assert_eq!(running["attempts"][0]["worker_host"], "host-a", "{running}");

    // Leadership moves to host b, which cannot see the worker.
    c.lead(2).await;
    c.wait_get(2, "/v1/pools", "the pool's problem recorded", |_, v| {
        v["items"][0]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("1 on host-a"))
    })
    .await;
    // A job placed now runs here, on host b.
    let spec = json!({ "name": "here", "jobs": [job_spec("build", json!({ "steps": ["true"] }))] });
    let (s, v) = c.post(2, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let here = format!("/v1/jobs/{}", v["jobs"][0]["id"].as_u64().expect("a job id"));
    let done = c
        .wait_get(2, &here, "a new job done on host b", |_, v| v["state"] == "SUCCEEDED")
        .await;
    assert_eq!(done["attempts"][0]["worker_host"], "host-b", "{done}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, view) = c.get(2, &path).await;
    assert_eq!(
        (view["state"].as_str(), view["attempt"].as_u64()),
        (Some("RUNNING"), Some(1)),
        "a leader that cannot see the worker changed its job: {view}"
    );

    // Back on host a, the worker is found where it ran and finishes once.
    c.lead(1).await;
    let done: Value = c
        .wait_get(1, &path, "the job finished", |_, v| {
            v["state"] == "SUCCEEDED" || v["state"] == "FAILED"
        })
        .await;
    assert_eq!(
        (done["state"].as_str(), done["attempt"].as_u64()),
        (Some("SUCCEEDED"), Some(1)),
        "{done}"
    );
    let runs = std::fs::read_to_string(&marker).expect("the job ran");
    assert_eq!(runs.lines().count(), 1, "the job ran {} times", runs.lines().count());
    let (_, pools) = c.get(1, "/v1/pools").await;
    assert_eq!(pools["items"][0]["problem"], Value::Null, "{pools}");
}
