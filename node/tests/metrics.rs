//! `GET /metrics` parses as Prometheus/OpenMetrics text, has the documented families, and its
//! values move after a pipeline runs.

mod common;
use common::metrics_text::scrape;
use common::*;
use serde_json::json;
use std::collections::BTreeMap;

/// Polls node 1's metrics until `series` appears (some are fed from applied events).
async fn wait_metric(c: &Cluster, series: &str) -> f64 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let m = scrape(c).await;
        if let Some(v) = m.get(series) {
            return *v;
        }
        assert!(std::time::Instant::now() < deadline, "{series} never appeared");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("{series} missing; have {:?}", m.keys().collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_after_a_run() {
    let c = Cluster::start(1, &["--leader-tick-ms", "100"]).await;
    c.register_pool(1).await;
    let before = scrape(&c).await;
    for family in [
        "flotilla_raft_term",
        "flotilla_raft_is_leader",
        "flotilla_raft_applied_index",
        "flotilla_raft_committed_index",
    ] {
        value(&before, family);
    }
    assert_eq!(value(&before, "flotilla_raft_is_leader"), 1.0);
    assert_eq!(value(&before, r#"flotilla_pool_workers{pool="main"}"#), 0.0);

    let (s, v) = c.post(1, "/v1/pipelines", pipeline("measured")).await;
    assert_eq!(s, 201, "{v}");
    let p = v["pipeline"].as_u64().unwrap();
    c.wait_get(1, &format!("/v1/pipelines/{p}"), "pipeline SUCCEEDED", |_, v| {
        v["state"] == "SUCCEEDED"
    })
    .await;
    let (s, _) = c.post(1, "/v1/pipelines", json!({ "name": "" })).await;
    assert_eq!(s, 422);

    let after = scrape(&c).await;
    assert!(value(&after, "flotilla_raft_applied_index") > value(&before, "flotilla_raft_applied_index"));
    assert_eq!(value(&after, r#"flotilla_jobs{state="SUCCEEDED"}"#), 1.0);
    assert!(
        value(
            &after,
            r#"flotilla_api_requests_total{route="/v1/pipelines",method="POST",code="201"}"#
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            r#"flotilla_api_requests_total{route="/v1/pipelines",method="POST",code="422"}"#
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            r#"flotilla_api_request_duration_seconds_count{route="/v1/pipelines",method="POST"}"#
        ) >= 2.0
    );
    assert!(
        value(&after, r#"flotilla_provider_calls_total{provider="process"}"#) > 0.0,
        "the leader called the process provider"
    );
    assert_eq!(
        value(&after, r#"flotilla_provider_breaker_open{provider="process"}"#),
        0.0
    );

    // Raft storage, scheduler, worker start and job run time moved with the run.
    assert!(value(&after, "flotilla_raft_appends_total") > value(&before, "flotilla_raft_appends_total"));
    assert!(
        value(&after, "flotilla_raft_append_wait_seconds_total")
            > value(&before, "flotilla_raft_append_wait_seconds_total")
    );
    assert!(value(&after, "flotilla_raft_wal_syncs_total") >= 1.0);
    value(&after, "flotilla_raft_snapshots_built_total");
    assert!(value(&after, "flotilla_scheduler_placements_total") >= 1.0);
    assert_eq!(value(&after, "flotilla_scheduler_rejected_placements_total"), 0.0);
    assert!(value(&after, "flotilla_scheduler_plan_seconds_count") >= 1.0);
    assert!(value(&after, r#"flotilla_worker_create_seconds_count{provider="process"}"#) >= 1.0);
    let finished = wait_metric(&c, r#"flotilla_job_duration_seconds_count{outcome="succeeded"}"#).await;
    assert_eq!(finished, 1.0);
}
