//! `GET /v1/events`: a follower streams every event of a run from its own state; a reader that
//! reconnects (to another node) with `Last-Event-ID` misses nothing and gets nothing twice.

mod common;
#[path = "common/sse.rs"]
mod sse;

use common::*;
use serde_json::{Value, json};
use sse::*;
use std::time::Duration;

fn dag_pipeline() -> Value {
    let job = |name: &str, needs: &[&str]| json!({ "name": name, "needs": needs, "steps": ["echo step-one", "sleep 0.3", "echo step-two"], "resources": { "cpu_millis": 100, "memory_mib": 64 } });
    json!({ "name": "events", "jobs": [job("a", &[]), job("b", &["a"]), job("c", &["a"])] })
}

#[tokio::test]
async fn a_follower_streams_a_run_and_a_resume_on_another_node_is_exact() {
    let c = Cluster::start(3, &[]).await;
    c.register_pool(1).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let base = |id: u64| c.node(id).url("");

    // From the start of the log, on a follower.
    let mut first = SseReader::open(
        &format!("{}/v1/events?after=0", base(followers[0])),
        None,
        c.token.get().map(String::as_str),
    )
    .await
    .expect("stream opens");
    let (status, submitted) = c.post(leader, "/v1/pipelines", dag_pipeline()).await;
    assert_eq!(status, 201, "{submitted}");
    let pipeline = submitted["pipeline"].as_u64().unwrap();
    let jobs: Vec<u64> = submitted["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_u64().unwrap())
        .collect();

    let mut streamed: Vec<Sse> = Vec::new();
    while streamed.iter().filter(|e| e.event == "JobStarted").count() < 1 {
        let e = first
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("stream stalled after {streamed:?}\n{}", c.logs()));
        streamed.push(e);
    }
    drop(first);

    // Resume on the other follower after the last event received.
    let last = streamed.last().unwrap().id.clone().unwrap();
    let mut second = SseReader::open(
        &format!("{}/v1/events", base(followers[1])),
        Some(&last),
        c.token.get().map(String::as_str),
    )
    .await
    .expect("resume opens");
    loop {
        let e = second
            .next(WAIT)
            .await
            .unwrap_or_else(|| panic!("stream stalled after {streamed:?}\n{}", c.logs()));
        let done = e.event == "PipelineCompleted" && e.data["pipeline"] == pipeline;
        streamed.push(e);
        if done {
            break;
        }
    }

    // Exactly what the leader holds up to the same point: nothing missed, nothing repeated.
    let end = id_key(streamed.last().unwrap().id.as_deref().unwrap());
    let reference: Vec<Sse> = all_events(&base(leader), "", c.token.get().map(String::as_str))
        .await
        .into_iter()
        .filter(|e| id_key(e.id.as_deref().unwrap()) <= end)
        .collect();
    let ids = |v: &[Sse]| v.iter().map(|e| e.id.clone().unwrap()).collect::<Vec<_>>();
    assert_eq!(
        ids(&streamed),
        ids(&reference),
        "the resumed stream differs from the leader's events"
    );
    assert_eq!(streamed, reference);
    for e in &streamed {
        assert_eq!(e.data["id"], e.id.clone().unwrap(), "data carries the SSE id");
        assert_eq!(e.data["type"], e.event, "data carries the event type");
    }
    let count = |kind: &str| streamed.iter().filter(|e| e.event == kind).count();
    assert_eq!(count("PipelineRequested"), 1);
    assert_eq!(count("JobRequested"), 3);
    assert_eq!(count("JobCompleted"), 3);
    assert!(count("StepCompleted") >= 9, "three steps per job");
    assert!(count("LogAppended") >= 3);

    // Filters: one job's events, one type, one pipeline (its jobs' events included), once
    // both followers have applied the run (a follower's stream lags by the replication delay).
    for f in &followers {
        c.wait_get(*f, "/v1/cluster", "follower caught up", |_, v| {
            v["applied_index"].as_u64() >= Some(end.0)
        })
        .await;
    }
    let of_job = all_events(
        &base(followers[0]),
        &format!("&job=j{}", jobs[1]),
        c.token.get().map(String::as_str),
    )
    .await;
    assert!(!of_job.is_empty());
    assert!(of_job.iter().all(|e| e.data["job"] == jobs[1]), "{of_job:?}");
    let completed = all_events(
        &base(followers[0]),
        "&type=JobCompleted,PipelineCompleted",
        c.token.get().map(String::as_str),
    )
    .await;
    assert_eq!(
        completed.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["JobCompleted", "JobCompleted", "JobCompleted", "PipelineCompleted"]
    );
    let of_pipeline = all_events(
        &base(followers[1]),
        &format!("&pipeline={pipeline}"),
        c.token.get().map(String::as_str),
    )
    .await;
    assert_eq!(of_pipeline.iter().filter(|e| e.event == "JobCompleted").count(), 3);
    assert!(
        of_pipeline
            .iter()
            .all(|e| e.event != "PoolRegistered" && e.event != "CapacityUpdated"),
        "{of_pipeline:?}"
    );

    // Bad parameters name themselves.
    for (query, header, field) in [
        ("type=JobExploded", None, "type"),
        ("after=12", None, "after"),
        ("heartbeat_ms=5", None, "heartbeat_ms"),
        ("", Some("not-an-id"), "Last-Event-ID"),
        ("colour=red", None, "query"),
    ] {
        let err = SseReader::open(
            &format!("{}/v1/events?{query}", base(leader)),
            header,
            c.token.get().map(String::as_str),
        )
        .await
        .err()
        .expect("refused");
        assert_eq!(err.0, 400, "{query}: {err:?}");
        assert_eq!(err.1["error"]["field"], field, "{query}: {err:?}");
    }

    // A quiet stream still sends heartbeat comments.
    let mut quiet = SseReader::open(
        &format!("{}/v1/events?type=LimitsUpdated&heartbeat_ms=100", base(followers[0])),
        None,
        c.token.get().map(String::as_str),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while quiet.comments == 0 && std::time::Instant::now() < deadline {
        assert!(
            quiet.next(Duration::from_millis(500)).await.is_none(),
            "no LimitsUpdated event was expected"
        );
    }
    assert!(quiet.comments > 0, "no heartbeat arrived");
}

#[tokio::test]
async fn a_resume_point_the_node_no_longer_holds_is_refused_not_skipped() {
    let c = Cluster::start(1, &["--event-journal-events", "4"]).await;
    c.register_pool(1).await;
    let (status, body) = c.submit(1, "small", None).await;
    assert_eq!(status, 201, "{body}");
    let pipeline = body["pipeline"].as_u64().unwrap();
    c.wait_get(1, &format!("/v1/pipelines/{pipeline}"), "pipeline done", |_, v| {
        v["state"] == "SUCCEEDED"
    })
    .await;

    let err = SseReader::open(
        &c.node(1).url("/v1/events?after=0&follow=false"),
        None,
        c.token.get().map(String::as_str),
    )
    .await
    .err()
    .expect("a gap is refused");
    assert_eq!(err.0, 410, "{err:?}");
    assert_eq!(err.1["error"]["field"], "after");
    let err = SseReader::open(
        &c.node(1).url("/v1/events?follow=false"),
        Some("1-0"),
        c.token.get().map(String::as_str),
    )
    .await
    .err()
    .expect("a gap is refused");
    assert_eq!(err.0, 410, "{err:?}");
    assert_eq!(err.1["error"]["field"], "Last-Event-ID");

    // The error names the oldest resume point, and the events after it are all there.
    let message = err.1["error"]["message"].as_str().unwrap().to_string();
    let floor = message
        .split("resume after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("floor in message");
    let mut reader = SseReader::open(
        &c.node(1).url("/v1/events?follow=false"),
        Some(floor),
        c.token.get().map(String::as_str),
    )
    .await
    .expect("the floor is a valid resume point");
    let mut after_floor = Vec::new();
    while let Some(e) = reader.next(WAIT).await {
        after_floor.push(e);
    }
    assert!(!after_floor.is_empty() && after_floor.len() <= 4, "{after_floor:?}");
    let keys: Vec<(u64, u32)> = after_floor.iter().map(|e| id_key(e.id.as_deref().unwrap())).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]) && keys[0] > id_key(floor),
        "{keys:?} after {floor}"
    );
}
