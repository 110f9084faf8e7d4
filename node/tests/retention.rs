//! Retention on a running cluster: a policy set through a follower, the leader removing what
//! it makes due, 410 for what is gone, the record of removals, and replicas that agree.

mod common;
use common::*;
use serde_json::json;

/// Submits a pipeline whose one job prints a line, and waits for it to succeed; returns the
/// pipeline's and the job's ids.
async fn finished(c: &Cluster, node: u64, name: &str) -> (u64, u64) {
    let spec =
        json!({ "name": name, "jobs": [job_spec("build", json!({ "steps": [format!("echo output of {name}")] }))] });
    let (s, v) = c.post(node, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let pipeline = v["pipeline"].as_u64().unwrap_or_else(|| panic!("{v}"));
    let job = v["jobs"][0]["id"].as_u64().unwrap_or_else(|| panic!("{v}"));
    c.wait_get(
        node,
        &format!("/v1/pipelines/{pipeline}"),
        "the pipeline to succeed",
        |_, v| v["state"] == "SUCCEEDED",
    )
    .await;
    (pipeline, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_removes_what_the_policy_makes_due_and_reads_say_it_is_gone() {
    let c = Cluster::start(3, &["--retention-interval-ms", "200"]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.register_pool(leader).await;
    let mut done = Vec::new();
    for i in 0..4 {
        done.push(finished(&c, leader, &format!("run{i}")).await);
    }
    let (_, newest_job) = done[3];
    let (s, v) = c.get(leader, &format!("/v1/jobs/{newest_job}/logs")).await;
    assert_eq!(s, 200, "{v}");

    // Keep one finished pipeline per tenant, with its output for a minute.
    let (s, v) = c
        .put(
            follower,
            "/v1/retention/default",
            json!({ "max_pipelines": 1, "output_max_age": "1m" }),
        )
        .await;
    assert_eq!((s, v["changed"].as_bool()), (200, Some(true)), "{v}");
    let (oldest, oldest_job) = done[0];
    let gone = c
        .wait_get(
            follower,
            &format!("/v1/pipelines/{oldest}"),
            "the oldest pipeline to be removed",
            |s, _| s == 410,
        )
        .await;
    assert_eq!(gone["error"]["code"], "gone", "{gone}");
    let retention = c
        .wait_get(
            follower,
            "/v1/retention?consistency=linearizable",
            "three removals to be recorded",
            |_, v| v["totals"]["pipelines_removed"] == 3,
        )
        .await;
    let removed: Vec<u64> = retention["removals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["pipeline"].as_u64())
        .collect();
    assert_eq!(removed, vec![done[2].0, done[1].0, oldest], "newest first: {retention}");
    assert_eq!(retention["default"]["max_pipelines"], 1, "{retention}");
    assert_eq!(retention["default"]["output_max_age_ms"], 60_000, "{retention}");
    for (pipeline, job) in &done[..3] {
        let (s, v) = c.get(follower, &format!("/v1/pipelines/{pipeline}")).await;
        assert_eq!(s, 410, "{v}");
        let (s, v) = c.get(follower, &format!("/v1/jobs/{job}")).await;
        assert_eq!(s, 410, "{v}");
    }
    let (s, v) = c.get(follower, &format!("/v1/jobs/{oldest_job}/logs")).await;
    assert_eq!(s, 410, "{v}");
    let (s, _) = c.get(follower, "/v1/pipelines/999").await;
    assert_eq!(s, 404, "an id never given out is unknown, not gone");
    let (s, v) = c.get(follower, &format!("/v1/pipelines/{}", done[3].0)).await;
    assert_eq!(s, 200, "the newest is kept: {v}");

    // A tenant's own policy over the default: output goes at once, the pipeline stays.
    let (s, v) = c
        .put(
            follower,
            "/v1/tenants/default/retention",
            json!({ "max_pipelines": 1, "output_max_age_ms": 0 }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let logs = c
        .wait_get(
            follower,
            &format!("/v1/jobs/{newest_job}/logs"),
            "the newest job's output to be removed",
            |s, _| s == 410,
        )
        .await;
    assert!(
        logs["error"]["message"].as_str().is_some_and(|m| m.contains("output")),
        "{logs}"
    );
    let (s, v) = c.get(follower, &format!("/v1/pipelines/{}", done[3].0)).await;
    assert_eq!(s, 200, "{v}");

    // Bad policies are refused naming the field; lifting a policy is no error.
    let (s, v) = c.put(follower, "/v1/retention/default", json!({})).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("policy")), "{v}");
    let (s, v) = c
        .put(follower, "/v1/retention/default", json!({ "max_age": "30 parsecs" }))
        .await;
    assert!(s == 400 || s == 422, "{s} {v}");
    assert!(v.to_string().contains("max_age"), "{v}");
    let (s, v) = c.delete(follower, "/v1/tenants/default/retention").await;
    assert_eq!(s, 200, "{v}");

    c.wait_digests_agree(3, "after the removals").await;
    let metrics = common::metrics_text::scrape(&c).await;
    assert_eq!(
        metrics.get("flotilla_retention_pipelines_removed_total"),
        Some(&3.0),
        "{metrics:?}"
    );
    assert!(
        metrics
            .get("flotilla_retention_output_bytes_removed_total")
            .is_some_and(|b| *b > 0.0)
    );
}
