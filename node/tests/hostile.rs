//! Hostile input against real node processes: every request below once crashed, stalled or
//! bloated a cluster, or could have. Each gets a 4xx whose JSON names the field (or, on the
//! Raft port, an error status), no 5xx, the nodes stay live and keep committing, the replicas
//! stay identical, and the leader's resident memory grows by less than `RSS_GROWTH_BOUND_KIB`.
//!
//! Keep this suite growing with every new endpoint and limit.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How much the leader's resident memory may grow over the whole suite. Every request here is
/// refused, or small; a single amplified one (an 84 MB entry, a 1 GiB matrix) would pass it.
const RSS_GROWTH_BOUND_KIB: u64 = 256 * 1024;

async fn send(c: &Cluster, id: u64, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Value) {
    let r = c
        .http
        .post(c.node(id).url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Asserts a 4xx whose JSON error names `field` (a prefix of it for long paths).
#[track_caller]
fn refused(what: &str, (status, body): &(u16, Value), want_status: u16, field: &str) {
    assert_eq!(*status, want_status, "{what}: {body}");
    let got = body["error"]["field"].as_str().unwrap_or_default();
    assert!(
        got.starts_with(field),
        "{what}: field {got:?}, expected {field:?}: {body}"
    );
}

/// Each node answers `live`, and a normal pipeline still commits on all of them with equal
/// state digests: the cluster was not stopped by what came before.
async fn still_serving(c: &Cluster, n: u64, tag: &str) {
    for id in 1..=n {
        let (s, v) = c.get(id, "/v1/health/live").await;
        assert_eq!(s, 200, "node {id} not live after {tag}: {v}\n{}", c.logs());
    }
    let (s, v) = c.submit(1, &format!("after-{}", tag.replace(' ', "-")), None).await;
    assert_eq!(s, 201, "submission after {tag}: {v}\n{}", c.logs());
    c.wait_digests_agree(n, &format!("after {tag}")).await;
}

/// Submits `body`, which must be accepted, then cancels it: accepted at a limit is what a case
/// checks, running its thousand jobs is not.
async fn accepted_then_cancelled(c: &Cluster, what: &str, body: Value) {
    let (s, v) = c.post(1, "/v1/pipelines", body).await;
    assert_eq!(s, 201, "{what}: {v}");
    let cancel = format!("/v1/pipelines/{}/cancel", v["pipeline"].as_u64().unwrap());
    let (s, v) = c.post(1, &cancel, json!({})).await;
    assert_eq!(s, 200, "cancelling {what}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_and_the_cluster_stays_up() {
    let c = Cluster::start(3, &["--header-read-timeout-ms", "2000", "--max-connections", "600"]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(1).await;
    let rss_before = c.node(leader).rss_kib();

    // The review's reproduction: pools and jobs with resources near u64::MAX, for a tenant
    // without a quota. Placing two of them used to panic every replica for good.
    for name in ["huge-a", "huge-b"] {
        let pool = json!({ "name": name, "provider": "process", "capacity": { "cpu_millis": u64::MAX - 1, "memory_mib": u64::MAX - 1 }, "max_workers": 4 });
        refused(
            "huge pool",
            &c.post(1, "/v1/pools", pool).await,
            422,
            "capacity.cpu_millis",
        );
    }
    for (field, value) in [
        ("cpu_millis", json!(u64::MAX - 1)),
        ("memory_mib", json!(u64::MAX)),
        ("gpus", json!(u32::MAX)),
    ] {
        let mut resources = json!({ "cpu_millis": 100, "memory_mib": 64 });
        resources[field] = value;
        let body = json!({ "name": "p", "jobs": [job_spec("a", json!({ "resources": resources }))] });
        refused(
            field,
            &c.post(2, "/v1/pipelines", body).await,
            422,
            &format!("jobs[a].resources.{field}"),
        );
    }
    // Every other quantity a user picks, at its extremes.
    for (field, extra) in [
        ("jobs[a].priority", json!({ "priority": i32::MIN })),
        ("jobs[a].timeout_ms", json!({ "timeout_ms": u64::MAX })),
        (
            "jobs[a].retry.max_retries",
            json!({ "retry": { "max_retries": u32::MAX } }),
        ),
        (
            "jobs[a].retry.backoff_base_ms",
            json!({ "retry": { "backoff_base_ms": u64::MAX } }),
        ),
        ("jobs[a].steps[0]", json!({ "steps": ["x".repeat(64 * 1024 + 1)] })),
        (
            "jobs[a].resources.cpu_millis",
            json!({ "resources": { "cpu_millis": 0, "memory_mib": 1 } }),
        ),
    ] {
        let body = json!({ "name": "p", "jobs": [job_spec("a", extra)] });
        refused(field, &c.post(1, "/v1/pipelines", body).await, 422, field);
    }
    let too_many_workers = json!({ "name": "w", "provider": "process", "capacity": { "cpu_millis": 1, "memory_mib": 1 }, "max_workers": u32::MAX });
    refused(
        "max_workers",
        &c.post(1, "/v1/pools", too_many_workers).await,
        422,
        "max_workers",
    );
    // Path traversal and odd names.
    for name in ["../../etc/passwd", "a/b", "", "é", "x".repeat(200).as_str()] {
        let pool = json!({ "name": name, "provider": "process", "capacity": { "cpu_millis": 1, "memory_mib": 1 }, "max_workers": 1 });
        refused("pool name", &c.post(1, "/v1/pools", pool).await, 422, "name");
        let body = json!({ "name": "p", "jobs": [job_spec(name, json!({}))] });
        refused("job name", &c.post(1, "/v1/pipelines", body).await, 422, "jobs[0].name");
    }
    still_serving(&c, 3, "extreme quantities").await;

    // Amplification: a 67 KB YAML file whose steps alias one 64 KiB string. It became an 84 MB
    // entry that no follower accepted, and the cluster stopped for good.
    let mut bomb = format!(
        "name: bomb\nbig: &big {}\njobs:\n  - name: a\n    resources: {{cpu_millis: 1, memory_mib: 1}}\n    script:\n",
        "x".repeat(64 * 1024)
    );
    for _ in 0..1300 {
        bomb.push_str("      - *big\n");
    }
    assert!(bomb.len() < 100 * 1024);
    refused(
        "alias bomb",
        &send(&c, 1, "/v1/pipelines", bomb.into_bytes(), "application/yaml").await,
        413,
        "body",
    );
    // Matrix expansion past the pipeline's byte bound, and exactly at the job count bound.
    let axis: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    let matrix = json!({ "A": axis, "B": axis });
    let body =
        json!({ "name": "m", "jobs": [job_spec("m", json!({ "matrix": matrix, "steps": ["x".repeat(60 * 1024)] }))] });
    refused(
        "matrix bytes",
        &c.post(1, "/v1/pipelines", body).await,
        422,
        "jobs[m].matrix",
    );
    let axis: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    let body = json!({ "name": "m", "jobs": [job_spec("m", json!({ "matrix": { "A": axis, "B": (0..25).map(|i| i.to_string()).collect::<Vec<_>>() } }))] });
    accepted_then_cancelled(&c, "a 1000-job matrix is at the limit", body).await;
    let body = json!({ "name": "m", "jobs": [job_spec("m", json!({ "matrix": { "A": axis, "B": (0..26).map(|i| i.to_string()).collect::<Vec<_>>() } }))] });
    refused(
        "matrix count",
        &c.post(1, "/v1/pipelines", body).await,
        422,
        "jobs[m].matrix",
    );
    // A `needs` chain as long as a pipeline may be, and a cycle.
    let chain: Vec<Value> = (0..1000)
        .map(|i| {
            job_spec(
                &format!("j{i}"),
                if i == 0 {
                    json!({})
                } else {
                    json!({ "needs": [format!("j{}", i - 1)] })
                },
            )
        })
        .collect();
    accepted_then_cancelled(&c, "a 1000-job chain", json!({ "name": "chain", "jobs": chain })).await;
    let cycle = json!({ "name": "c", "jobs": [job_spec("a", json!({ "needs": ["b"] })), job_spec("b", json!({ "needs": ["a"] }))] });
    refused("cycle", &c.post(1, "/v1/pipelines", cycle).await, 422, "jobs");
    still_serving(&c, 3, "amplification").await;

    // Nesting: 200 KB bodies nested 100,000 deep took up to 90 s each to refuse, on the
    // threads that serve heartbeats; two of them made the leader lose its leadership. Both
    // are sent at once, while the leader must keep answering.
    let deep_yaml = "[".repeat(100_000).into_bytes();
    let deep_json = "[".repeat(100_000).into_bytes();
    let started = Instant::now();
    let (a, b, live) = tokio::join!(
        send(&c, leader, "/v1/pipelines", deep_yaml, "application/yaml"),
        send(&c, leader, "/v1/pipelines", deep_json, "application/json"),
        c.get(leader, "/v1/health/live"),
    );
    refused("deep yaml", &a, 422, "body");
    // serde_json stops at its own depth of 128, and a typed body fails at the first element.
    assert!(b.0 == 400 || b.0 == 422, "deep json: {} {}", b.0, b.1);
    assert_eq!(live.0, 200, "leader live during deep parses: {}", live.1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "deep bodies took {:?}",
        started.elapsed()
    );
    assert_eq!(
        c.wait_leader_among(&[1, 2, 3]).await,
        leader,
        "the leader kept its leadership"
    );
    // Invalid UTF-8, unknown fields, wrong media type (an oversized body is in `api.rs`).
    refused(
        "utf-8 yaml",
        &send(&c, 1, "/v1/pipelines", b"name: \xff\xfe\n".to_vec(), "application/yaml").await,
        400,
        "body",
    );
    let (s, _) = send(
        &c,
        1,
        "/v1/pipelines",
        b"{\"name\": \"\xff\"}".to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(s, 400);
    let mut unknown = pipeline("u");
    unknown["surprise"] = json!(true);
    refused(
        "unknown field",
        &c.post(1, "/v1/pipelines", unknown).await,
        422,
        "surprise",
    );
    refused(
        "media type",
        &send(&c, 1, "/v1/pools", b"x".to_vec(), "text/plain").await,
        415,
        "Content-Type",
    );
    still_serving(&c, 3, "parsing").await;

    // A body trickled a byte at a time is cut off by the body deadline, not held forever.
    let started = Instant::now();
    let mut slow = tls_connect(&c.node(1).api_addr).await;
    // With a token the gate admits, so the body is read (an anonymous one is refused at once).
    let head = format!(
        "POST /v1/pipelines HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n",
        c.token.get().unwrap()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    for _ in 0..200 {
        if slow.write_all(b" ").await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), slow.read_buf(&mut answer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) if answer.windows(4).any(|w| w == b"\r\n\r\n") => break,
            _ => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled body: {answer:?} after {:?}",
        started.elapsed()
    );

    // A thousand connections that send nothing: past `--max-connections` they are closed at
    // once, the others when the header deadline passes; then the node serves again.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(&c.node(1).api_addr).await.unwrap());
    }
    let started = Instant::now();
    for (i, conn) in idle.iter_mut().enumerate() {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(15), conn.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "idle connection {i} still open after {:?}",
            started.elapsed()
        );
    }
    drop(idle);
    let (s, _) = c.get(1, "/v1/health/live").await;
    assert_eq!(s, 200);

    // Followed log streams take stream permits: past the limit a follow is refused with 429,
    // and the node still answers everything else.
    let (_, v) = c.submit(1, "followed", None).await;
    let job_id = v["jobs"][0]["id"].as_u64().unwrap();
    let long = json!({ "name": "long", "jobs": [job_spec("sleep", json!({ "steps": ["sleep 600"] }))] });
    let (_, v) = c.post(1, "/v1/pipelines", long).await;
    let sleeping = v["jobs"][0]["id"].as_u64().unwrap_or(job_id);
    // Node 2 serves the follows from its own applied state: wait until it has the job (a
    // follow sent before it applied the submission is a 404, seen under load).
    c.wait_get(2, &format!("/v1/jobs/{sleeping}"), "the job on node 2", |s, _| s == 200)
        .await;
    let mut streams = Vec::new();
    let mut refused_follows = 0;
    for _ in 0..300 {
        let r = c
            .http
            .get(c.node(2).url(&format!("/v1/jobs/{sleeping}/logs?follow=true")))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => streams.push(r),
            429 => refused_follows += 1,
            other => panic!("follow answered {other}"),
        }
    }
    assert!(
        refused_follows >= 300 - 256,
        "only {refused_follows} follows refused past the limit of 256"
    );
    let (s, _) = c.get(2, "/v1/health/live").await;
    assert_eq!(s, 200);
    drop(streams);
    let (s, v) = c.post(1, &format!("/v1/jobs/{sleeping}/cancel"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    still_serving(&c, 3, "slow clients and streams").await;

    let rss_after = c.node(leader).rss_kib();
    assert!(
        rss_after < rss_before + RSS_GROWTH_BOUND_KIB,
        "leader RSS grew from {rss_before} KiB to {rss_after} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
}

/// The Raft port: malformed and oversized-length frames to every gRPC method get an error
/// status; the node stays up and its cluster keeps committing. A frame claiming a 2^60-byte
/// string used to make the decoder allocate it and abort the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_on_the_raft_port_are_refused() {
    use flotilla_node::raft::pb::{Blob, SnapshotChunk};
    let c = Cluster::start(3, &[]).await;
    c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(1).await;
    let channels = peer_channels(1);
    let version = flotilla_raft_store::FORMAT_VERSION;
    let mut claims_huge = vec![version, 253];
    claims_huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
    claims_huge.extend_from_slice(b"tail");
    let mut frames: Vec<Vec<u8>> = vec![
        vec![],
        vec![version],
        vec![version + 1, 0],
        vec![0xff; 64],
        claims_huge.clone(),
    ];
    frames.push({
        let mut v = vec![version];
        v.extend(std::iter::repeat_n(0xfc, 4096));
        v
    });
    for target in 1..=3u64 {
        let addr = c.node(target).raft_addr.clone();
        // Addressed as a peer would, so the frames reach the decoders.
        let to = c.raft_address(target).await;
        for data in &frames {
            let blob = || to.request(Blob { data: data.clone() });
            let mut client = channels.client(target, &addr).unwrap();
            assert!(
                client.append_entries(blob()).await.is_err(),
                "append_entries accepted {data:?}"
            );
            assert!(client.vote(blob()).await.is_err());
            assert!(client.forward(blob()).await.is_err());
            assert!(client.transfer_leader(blob()).await.is_err());
            // ReadIndex takes `()`: an empty record decodes as nothing; a malformed one fails.
            let _ = client.read_index(blob()).await;
            let chunk = SnapshotChunk {
                header: data.clone(),
                data: claims_huge.clone(),
            };
            assert!(
                client
                    .install_snapshot(to.request(futures::stream::iter(vec![chunk])))
                    .await
                    .is_err()
            );
        }
        // Unaddressed (or addressed to another incarnation) a request is refused before it is
        // decoded, whatever it holds.
        let mut client = channels.client(target, &addr).unwrap();
        let vote = flotilla_raft_store::encode(&()).unwrap();
        let unaddressed = client.vote(tonic::Request::new(Blob { data: vote.clone() })).await;
        assert_eq!(
            unaddressed.map(|_| ()).unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
        let elsewhere = RaftAddress {
            incarnation: flotilla_node::identity::Incarnation(to.incarnation.0 ^ 1),
            ..to.clone()
        };
        let refused = client
            .vote(elsewhere.request(Blob { data: vote }))
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("flotilla cluster remove"), "{refused:?}");
        // A forwarded command larger than one entry may be is refused before it is proposed.
        let big = flotilla_state_machine::Proposal::new(
            1,
            flotilla_state_machine::Command::AppendLog {
                job: flotilla_state_machine::JobId(1),
                fencing: flotilla_state_machine::FencingToken { term: 1, log_index: 1 },
                offset: 0,
                data: vec![b'x'; flotilla_node::raft::proposer::MAX_ENTRY_BYTES + 1],
            },
        );
        let mut client = channels.client(target, &addr).unwrap();
        let reply = client
            .forward(to.request(Blob {
                data: flotilla_raft_store::encode(&big).unwrap(),
            }))
            .await;
        let refused = match reply {
            Err(_) => true,
            Ok(r) => matches!(
                flotilla_raft_store::decode::<flotilla_node::raft::proposer::ForwardResult>(&r.get_ref().data),
                Ok(Err(flotilla_node::raft::proposer::ProposeError::TooLarge { .. }
                    | flotilla_node::raft::proposer::ProposeError::NotLeader { .. }))
            ),
        };
        assert!(refused, "an oversized forward to node {target} was not refused");
    }
    still_serving(&c, 3, "malformed raft frames").await;
}

/// A follower that was away while large entries were committed catches up. Together those
/// entries are larger than one gRPC message may be, so the leader must send them in several
/// (a prefix at a time) rather than retry one oversized message forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_over_entries_larger_than_one_message() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let away = if leader == 3 { 2 } else { 3 };
    c.node_mut(away).kill9();
    // Each pipeline is about 900 KB (14 steps of 64 KiB); 90 of them are about 81 MB.
    let steps: Vec<String> = (0..14).map(|i| format!("{i}{}", "x".repeat(64 * 1024 - 8))).collect();
    for i in 0..90 {
        let body = json!({ "name": format!("big-{i}"), "jobs": [job_spec("a", json!({ "steps": steps, "resources": { "cpu_millis": 100_000, "memory_mib": 1 } }))] });
        // No pool can run these jobs (more CPU than any pool has), so `apply` refuses each
        // one; each is still an entry of about 900 KB in the log, which is what this needs.
        let (s, v) = c.post(leader, "/v1/pipelines", body).await;
        assert_eq!(s, 422, "{v}");
    }
    c.node_mut(away).spawn();
    c.wait_get(away, "/v1/health/live", "restart", |s, _| s == 200).await;
    still_serving(&c, 3, "catch-up over large entries").await;
}
