//! Settled pipelines are archived to disk: on every node, reads of an archived pipeline or
//! job, lists that mix live and archived work in id order (by state, by tenant, page by page),
//! logs, cancels and a repeated submission answer as they did while the work was live.

mod common;
use common::metrics_text::scrape;
use common::*;
use serde_json::{Value, json};

fn ids(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|i| i["id"].as_u64().expect("an id"))
        .collect()
}

/// Every id of a list, a page of one at a time, following `next_after`.
async fn walk(c: &Cluster, node: u64, path: &str) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut after = 0u64;
    for _ in 0..20 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (s, page) = c.get(node, &format!("{path}{sep}limit=1&after={after}")).await;
        assert_eq!(s, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => return seen,
        }
    }
    panic!("{path} did not end in 20 pages: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_work_reads_lists_and_answers_as_live_work_did_on_every_node() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;

    // p1 (default tenant, with output and an idempotency key) finishes; p2 keeps running;
    // p3 (tenant ml) finishes. Jobs 1, 2 and 3 are theirs.
    let first = json!({ "name": "first", "jobs": [job_spec("build", json!({ "steps": ["echo archived output"] }))] });
    let (s, v) = c
        .post_with(leader, "/v1/pipelines", first.clone(), &[("Idempotency-Key", "first")])
        .await;
    assert_eq!(s, 201, "{v}");
    let running = json!({ "name": "running", "jobs": [job_spec("wait", json!({ "steps": ["sleep 30"] }))] });
    let (s, v) = c.post(leader, "/v1/pipelines", running).await;
    assert_eq!(s, 201, "{v}");
    let third = json!({ "name": "third", "jobs": [job_spec("build", json!({}))] });
    let (s, v) = c
        .post_with(leader, "/v1/pipelines", third, &[("X-Flotilla-Tenant", "ml")])
        .await;
    assert_eq!(s, 201, "{v}");
    for (p, state) in [(1, "SUCCEEDED"), (3, "SUCCEEDED"), (2, "RUNNING")] {
        c.wait_get(leader, &format!("/v1/pipelines/{p}"), state, |_, v| v["state"] == state)
            .await;
    }
    c.wait_digests_agree(3, "the archived pipelines").await;

    for node in 1..=3 {
        let (s, p1) = c.get(node, "/v1/pipelines/1?consistency=linearizable").await;
        assert_eq!(s, 200, "{p1}");
        assert_eq!(p1["job_states"][0]["state"], "SUCCEEDED", "{p1}");
        let (s, j1) = c.get(node, "/v1/jobs/1").await;
        assert_eq!((s, j1["state"].as_str()), (200, Some("SUCCEEDED")), "{j1}");
        let logs = c
            .http
            .get(c.node(node).url("/v1/jobs/1/logs"))
            .send()
            .await
            .expect("logs");
        assert_eq!(logs.status().as_u16(), 200);
        assert!(logs.text().await.unwrap().contains("archived output"));

        assert_eq!(walk(&c, node, "/v1/pipelines").await, vec![1, 2, 3], "node {node}");
        assert_eq!(walk(&c, node, "/v1/pipelines?state=SUCCEEDED").await, vec![1, 3]);
        assert_eq!(walk(&c, node, "/v1/pipelines?state=RUNNING").await, vec![2]);
        assert_eq!(walk(&c, node, "/v1/pipelines?tenant=ml").await, vec![3]);
        assert_eq!(walk(&c, node, "/v1/jobs").await, vec![1, 2, 3]);
        assert_eq!(walk(&c, node, "/v1/jobs?state=SUCCEEDED").await, vec![1, 3]);
        assert_eq!(walk(&c, node, "/v1/jobs?tenant=default").await, vec![1, 2]);
        assert_eq!(walk(&c, node, "/v1/jobs?pipeline=3").await, vec![3]);
    }

    // Cancels of archived work answer as for finished work; a repeated key gets its jobs.
    let (s, v) = c.post(leader, "/v1/jobs/1/cancel", json!({})).await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = c.post(leader, "/v1/pipelines/1/cancel", json!({})).await;
    assert_eq!((s, v["cancelled"].clone()), (200, json!([])), "{v}");
    let (s, v) = c
        .post_with(leader, "/v1/pipelines", first.clone(), &[("Idempotency-Key", "first")])
        .await;
    assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(v["jobs"], json!([{ "name": "build", "id": 1 }]), "{v}");
    // The same key with another spec is refused as it is for a live pipeline, on any node.
    let mut other = first;
    other["jobs"][0]["steps"] = json!(["echo something else"]);
    for node in 1..=3 {
        let (s, v) = c
            .post_with(node, "/v1/pipelines", other.clone(), &[("Idempotency-Key", "first")])
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (422, Some("idempotency_key_reused")),
            "node {node}: {v}"
        );
    }

    let metrics = scrape(&c).await;
    assert_eq!(metrics.get("flotilla_archived_jobs"), Some(&2.0), "{metrics:?}");
    assert_eq!(metrics.get(r#"flotilla_jobs{state="SUCCEEDED"}"#), Some(&2.0));
    assert_eq!(metrics.get(r#"flotilla_jobs{state="RUNNING"}"#), Some(&1.0));
    // RocksDB's memory is reported by part, within the default budgets (64 and 32 MiB).
    let memtables = metrics[r#"flotilla_storage_memory_bytes{part="memtables"}"#];
    assert!(memtables > 0.0 && memtables <= f64::from(64 << 20), "{metrics:?}");
    let cache = metrics[r#"flotilla_storage_memory_bytes{part="block_cache"}"#];
    assert!(cache <= f64::from(32 << 20), "{metrics:?}");
    assert!(metrics.contains_key(r#"flotilla_storage_memory_bytes{part="table_readers"}"#));
    let (s, _) = c.post(leader, "/v1/pipelines/2/cancel", json!({})).await;
    assert_eq!(s, 200);
}
