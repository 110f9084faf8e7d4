//! Pipelines on the `kubernetes` provider through real node processes and the fake API server
//! (`fake-kube/`): the pool's capacity follows the nodes; an evicted pod's attempt goes
//! TERMINATED and is retried in a new pod; a leader killed mid-run is replaced by one that
//! adopts the running pod; no pod is left behind.

mod common;
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

async fn job_view(c: &Cluster, node: u64, id: u64) -> Value {
    c.get(node, &format!("/v1/jobs/{id}?consistency=linearizable")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_jobs_survive_eviction_and_a_leader_kill() {
    let kube = FakeKube::start(FakeKubeConfig::default()).await.unwrap();
    kube.cluster().add_node(NodeSpec {
        name: "node-a".into(),
        labels: BTreeMap::from([("pool".to_string(), "ci".to_string())]),
        allocatable: BTreeMap::from([
            ("cpu".to_string(), "4".to_string()),
            ("memory".to_string(), "8Gi".to_string()),
        ]),
    });
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
