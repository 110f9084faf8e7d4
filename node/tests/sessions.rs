//! A forward that is retried after the leader committed it (its answer lost on the way back)
//! is answered from the client session, not applied twice; the entry's time is the leader's,
//! whatever the forwarded proposal carried. A forward carrying what only the leader proposes is
//! refused.

mod common;
use common::*;
use flotilla_node::raft::pb::Blob;
use flotilla_node::raft::proposer::{ForwardResult, ProposeError};
use flotilla_state_machine::{ClientId, ClientRequest, Command, PipelineSpec, Proposal, Rejection, Response};

/// Sends `proposal` to node `to`'s Raft port as a follower's forward would, and decodes the
/// leader's answer.
async fn forward(c: &Cluster, to: u64, proposal: &Proposal) -> ForwardResult {
    // As a follower of the cluster forwards it.
    let follower = (1..=3).find(|id| *id != to).unwrap();
    let channels = peer_channels(follower);
    let mut client = channels.client(to, &c.node(to).raft_addr).expect("channel");
    let reply = client
        .forward(
            c.raft_request(
                to,
                Blob {
                    data: flotilla_raft_store::encode(proposal).expect("encodes"),
                },
            )
            .await,
        )
        .await
        .expect("the leader answers");
    flotilla_raft_store::decode::<ForwardResult>(&reply.get_ref().data).expect("decodes")
}

fn submission(name: &str, now_ms: u64, seq: u64) -> Proposal {
    let spec: PipelineSpec = serde_json::from_value(pipeline(name)).expect("the test pipeline is a valid spec");
    let command = Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: None,
        spec,
        source: None,
        rerun_of: None,
    };
    Proposal::new(now_ms, command).from_client(ClientRequest {
        client: ClientId(0x5e55_1011),
        seq,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_forward_is_answered_once_and_the_leaders_clock_stamps_it() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;

    // A forged clock at the end of time: the leader stamps its own.
    let first = forward(&c, leader, &submission("once", u64::MAX - 1, 1)).await;
    let Ok(Response::Submitted {
        pipeline,
        ref jobs,
        duplicate: false,
    }) = first
    else {
        panic!("first forward: {first:?}")
    };
    // The same request again, as a follower retries when the answer was lost.
    let again = forward(&c, leader, &submission("once", u64::MAX - 1, 1)).await;
    assert_eq!(again.ok(), first.clone().ok(), "a retry gets the first answer");
    // An older request of the same client than its last is refused.
    let next = forward(&c, leader, &submission("twice", 1, 2)).await;
    assert!(matches!(next, Ok(Response::Submitted { .. })), "{next:?}");
    let stale = forward(&c, leader, &submission("once", 1, 1)).await;
    assert!(
        matches!(
            stale,
            Ok(Response::Rejected(Rejection::StaleRequest {
                seq: 1,
                last_seq: 2,
                ..
            }))
        ),
        "{stale:?}"
    );

    let listed = c
        .wait_get(
            leader,
            "/v1/pipelines?consistency=linearizable",
            "the pipelines",
            |s, _| s == 200,
        )
        .await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("a page")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "once").count(),
        1,
        "one pipeline for one request: {listed}"
    );
    let (s, view) = c.get(leader, &format!("/v1/pipelines/{pipeline}")).await;
    assert_eq!(s, 200, "{view}");
    assert_eq!(jobs.len(), 1);
    let created = view["created_at_ms"].as_u64().expect("created_at_ms");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        created <= now && now - created < 600_000,
        "the entry carries the leader's time, not the forged one: created at {created}, now {now}"
    );
}

/// Plans, worker reports and limits are the leader's own: sent to the Raft port as a forward
/// (by anyone who reaches it), they are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_of_what_only_the_leader_proposes_is_refused() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let limits = flotilla_state_machine::Limits {
        max_pools: 1,
        ..Default::default()
    };
    for command in [
        Command::UpdateLimits { limits },
        Command::ApplyPlan { placements: vec![] },
        Command::Batch {
            commands: vec![
                Command::CancelJob {
                    job: flotilla_state_machine::JobId(1),
                },
                Command::ApplyPlan { placements: vec![] },
            ],
        },
    ] {
        let kind = command.kind();
        let answer = forward(&c, leader, &Proposal::new(1, command)).await;
        assert!(
            matches!(&answer, Err(ProposeError::NotForwardable { kind: k }) if k == kind),
            "{kind}: {answer:?}"
        );
    }
    // The limits are as they were: a second pool may still be registered.
    let (s, v) = c
        .post(
            leader,
            "/v1/pools",
            serde_json::json!({ "name": "second", "provider": "process", "capacity": { "cpu_millis": 1000, "memory_mib": 512 }, "max_workers": 2 }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
}
