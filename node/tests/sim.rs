//! The `sim` provider through a node: a pool on it places and finishes jobs without running
//! anything, with the exit code the job asks for; a node without `--sim-duration-ms` has no
//! such provider and its jobs wait.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_pools_place_and_finish_jobs() {
    let c = Cluster::start(1, &["--sim-duration-ms", "50", "--leader-tick-ms", "50"]).await;
    let pool = json!({ "name": "sim", "provider": "sim", "capacity": { "cpu_millis": 100, "memory_mib": 100 }, "max_workers": 5, "labels": { "kind": "sim" } });
    assert_eq!(c.post(1, "/v1/pools", pool).await.0, 201);
    let job = |name: &str, code: &str| {
        json!({ "name": name, "steps": ["sim"], "resources": { "cpu_millis": 10, "memory_mib": 10 }, "labels": { "kind": "sim" }, "env": { "SIM_EXIT_CODE": code } })
    };
    let mut jobs: Vec<_> = (0..20).map(|i| job(&format!("ok{i}"), "0")).collect();
    jobs.push(job("fails", "3"));
    let (s, v) = c.post(1, "/v1/pipelines", json!({ "name": "simulated", "jobs": jobs })).await;
    assert_eq!(s, 201, "{v}");
    let p = v["pipeline"].as_u64().unwrap();
    let done = c.wait_get(1, &format!("/v1/pipelines/{p}"), "pipeline finished", |_, v| v["state"] == "FAILED").await;
    let states: Vec<_> = done["job_states"].as_array().unwrap().iter().map(|j| j["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states.iter().filter(|s| *s == "SUCCEEDED").count(), 20, "{done}");
    assert_eq!(states.iter().filter(|s| *s == "FAILED").count(), 1, "{done}");
    let (_, pools) = c.get(1, "/v1/pools?consistency=linearizable").await;
    assert_eq!(pools["items"][0]["workers"], 0, "capacity released: {pools}");
}
