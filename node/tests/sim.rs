//! The `sim` provider through a node: a pool on it places and finishes jobs without running
//! anything, with the exit code the job asks for; a node without `--sim-duration-ms` has no
//! such provider and its jobs wait.

mod common;
use common::metrics_text::scrape;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_pools_place_and_finish_jobs() {
    let c = Cluster::start(1, &["--sim-duration-ms", "50", "--leader-tick-ms", "50"]).await;
    let pool = json!({ "name": "sim", "provider": "sim", "capacity": { "cpu_millis": 100, "memory_mib": 100 }, "max_workers": 5, "labels": { "kind": "sim" } });
    assert_eq!(c.post(1, "/v1/pools", pool).await.0, 201);
    let job = |name: &str, code: &str| json!({ "name": name, "steps": ["sim"], "resources": { "cpu_millis": 10, "memory_mib": 10 }, "labels": { "kind": "sim" }, "env": { "SIM_EXIT_CODE": code } });
    let mut jobs: Vec<_> = (0..20).map(|i| job(&format!("ok{i}"), "0")).collect();
    jobs.push(job("fails", "3"));
    let (s, v) = c
        .post(1, "/v1/pipelines", json!({ "name": "simulated", "jobs": jobs }))
        .await;
    assert_eq!(s, 201, "{v}");
    let p = v["pipeline"].as_u64().unwrap();
    let done = c
        .wait_get(1, &format!("/v1/pipelines/{p}"), "pipeline finished", |_, v| {
            v["state"] == "FAILED"
        })
        .await;
    let states: Vec<_> = done["job_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states.iter().filter(|s| *s == "SUCCEEDED").count(), 20, "{done}");
    assert_eq!(states.iter().filter(|s| *s == "FAILED").count(), 1, "{done}");
    let (_, pools) = c.get(1, "/v1/pools?consistency=linearizable").await;
    assert_eq!(pools["items"][0]["workers"], 0, "capacity released: {pools}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_report_through_shared_raft_entries() {
    let c = Cluster::start(1, &["--sim-duration-ms", "20", "--leader-tick-ms", "50"]).await;
    let pool = json!({ "name": "sim", "provider": "sim", "capacity": { "cpu_millis": 100_000, "memory_mib": 100_000 }, "max_workers": 400 });
    assert_eq!(c.post(1, "/v1/pools", pool).await.0, 201);
    let jobs: Vec<_> =
        (0..300).map(|i| json!({ "name": format!("j{i}"), "steps": ["sim"], "resources": { "cpu_millis": 10, "memory_mib": 10 } })).collect();
    let (s, v) = c
        .post(1, "/v1/pipelines", json!({ "name": "wide", "jobs": jobs }))
        .await;
    assert_eq!(s, 201, "{v}");
    let p = v["pipeline"].as_u64().unwrap();
    let done = c
        .wait_get(1, &format!("/v1/pipelines/{p}"), "pipeline finished", |_, v| {
            v["state"] != "RUNNING"
        })
        .await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    // Each job needs at least created, started and exited reports: 900 commands or more.
    let m = scrape(&c).await;
    let commands = m
        .get("flotilla_leader_report_batch_commands_sum")
        .copied()
        .unwrap_or(0.0);
    let entries = m
        .get("flotilla_leader_report_batch_commands_count")
        .copied()
        .unwrap_or(0.0);
    assert!(commands >= 900.0, "{commands} reports committed");
    assert!(
        entries > 0.0 && entries * 4.0 <= commands,
        "{commands} reports in {entries} entries: not batched"
    );
}
