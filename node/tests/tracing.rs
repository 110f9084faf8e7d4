//! One pipeline is one trace: an in-process node with the in-memory span exporter records the
//! API request, the Raft commit and apply, the placement, the worker's creation and the job's
//! run under the trace id of the submitting request's `traceparent`.

mod common;

use common::free_port;
use flotilla_node::{Options, RunningNode, Settings};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_api_raft_scheduling_worker_and_job() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    flotilla_node::observe::telemetry::install(provider.clone());
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let api_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let options = Options {
        id: Some(1),
        data_dir: Some(dir.path().join("node")),
        raft_addr: Some(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
        api_addr: Some(api_addr),
        process_provider: Some(true),
        process_work_dir: Some(dir.path().join("workers")),
        leader_tick_ms: Some(100),
        tls_ca_file: Some(common::test_ca().ca_file.clone()),
        tls_ca_key_file: Some(common::test_ca().ca_key_file.clone()),
        ..Options::default()
    };
    let node = RunningNode::start(Settings::resolve(options).unwrap()).await.unwrap();
    let url = |path: &str| format!("https://{api_addr}{path}");
    let init = common::client_builder()
        .build()
        .unwrap()
        .post(url("/v1/cluster/init"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 201);
    // The admin token init hands out, sent with every request after it.
    let init: serde_json::Value = init.json().await.unwrap();
    let token = init["admin_token"]
        .as_str()
        .expect("init hands out the first admin token");
    let http = common::client_builder()
        .default_headers(common::bearer_headers(Some(token)))
        .build()
        .unwrap();
    let pool = json!({ "name": "main", "provider": "process", "capacity": { "cpu_millis": 1000, "memory_mib": 1024 }, "max_workers": 2 });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .post(url("/v1/pools"))
        .json(&pool)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "pool never registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pipeline = json!({ "name": "traced", "jobs": [{ "name": "build", "steps": ["echo traced"], "resources": { "cpu_millis": 100, "memory_mib": 64 } }] });
    let resp = http
        .post(url("/v1/pipelines"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .json(&pipeline)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<serde_json::Value>().await.unwrap()["pipeline"]
        .as_u64()
        .unwrap();
    let stored = loop {
        let p: serde_json::Value = http
            .get(url(&format!("/v1/pipelines/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if p["state"] == "SUCCEEDED" {
            break p;
        }
        assert!(Instant::now() < deadline, "pipeline never finished: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        stored["trace_parent"].as_str().is_some_and(|t| t.contains(TRACE_ID)),
        "{stored}"
    );

    let wanted = [
        "api.submit_pipeline",
        "raft.commit",
        "raft.apply",
        "scheduler.place",
        "worker.create",
        "job.run",
    ];
    let trace_id = TraceId::from_hex(TRACE_ID).unwrap();
    let spans = loop {
        let spans: Vec<_> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect();
        let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        if wanted.iter().all(|w| names.contains(w)) {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace: {names:?}, want {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let api = spans.iter().find(|s| s.name == "api.submit_pipeline").unwrap();
    assert_eq!(
        api.parent_span_id,
        SpanId::from_hex(CALLER_SPAN_ID).unwrap(),
        "the request span continues the caller's"
    );
    let commit = spans.iter().find(|s| s.name == "raft.commit").unwrap();
    assert_eq!(
        commit.parent_span_id,
        api.span_context.span_id(),
        "the commit is a child of the request"
    );
    let run = spans.iter().find(|s| s.name == "job.run").unwrap();
    assert!(run.end_time >= run.start_time);

    node.shutdown().await.unwrap();
    provider.shutdown().unwrap();
}
