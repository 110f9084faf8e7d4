//! A pool whose provider the leader does not have: registering it warns, `GET /v1/pools` says
//! why its jobs do not run, and those jobs still fail at their timeouts instead of waiting
//! forever with their capacity held.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_the_leader_cannot_drive_is_shown_and_its_jobs_time_out() {
    // No node has a Docker socket.
    let c = Cluster::start(1, &[]).await;
    c.wait_leader_among(&[1]).await;
    let pool = json!({ "name": "containers", "provider": "docker", "capacity": { "cpu_millis": 1000, "memory_mib": 1024 }, "max_workers": 2 });
    let (s, v) = c.post(1, "/v1/pools", pool).await;
    assert_eq!(s, 201, "{v}");
    let warning = v["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("no docker provider"), "{v}");

    let pools = c
        .wait_get(1, "/v1/pools", "the pool's problem recorded", |s, v| {
            s == 200
                && v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["problem"].is_string())
        })
        .await;
    let problem = pools["items"][0]["problem"].as_str().unwrap_or_default().to_string();
    assert!(
        problem.contains("the leader (node 1) has no docker provider"),
        "{pools}"
    );

    let spec = json!({ "name": "img", "jobs": [{ "name": "a", "image": "flotilla-test/busybox:1", "steps": ["true"], "timeout": "2s",
        "resources": { "cpu_millis": 100, "memory_mib": 64 } }] });
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let job = v["jobs"][0]["id"].as_u64().unwrap();
    let j = c
        .wait_get(
            1,
            &format!("/v1/jobs/{job}"),
            "the job to fail at its timeout",
            |_, v| v["state"] == "FAILED",
        )
        .await;
    assert_eq!(j["failure"], "timeout", "{j}");
}
