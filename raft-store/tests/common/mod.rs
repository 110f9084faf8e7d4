//! Builders for log entries and domain commands shared by the store tests.

#![allow(dead_code)]

use flotilla_raft_store::{Entry, LogId, Membership, NodeAddr, TypeConfig};
use flotilla_state_machine::*;
use futures::stream;
use openraft::EntryPayload;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::RaftStateMachine;
use std::collections::{BTreeMap, BTreeSet};

pub fn log_id(term: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id: 1 },
        index,
    }
}

pub fn entry(term: u64, index: u64, command: Command) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Proposal::new(1_000 + index, command)),
    }
}

pub fn membership_entry(term: u64, index: u64) -> Entry {
    let nodes: BTreeMap<u64, NodeAddr> = (1..=3)
        .map(|i| {
            (
                i,
                NodeAddr {
                    raft_addr: format!("127.0.0.{i}:7000"),
                    api_addr: format!("127.0.0.{i}:8000"),
                    incarnation: i,
                },
            )
        })
        .collect();
    let voters: BTreeSet<u64> = nodes.keys().copied().collect();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], nodes).expect("valid membership")),
    }
}

/// A realistic sequence: a pool, pipelines, a plan, worker reports, logs.
pub fn domain_entries(term: u64, first_index: u64) -> Vec<Entry> {
    let pool = PoolSpec {
        name: "main".into(),
        provider: ProviderKind::Process,
        capacity: Resources::new(4000, 8192, 0),
        max_workers: 8,
        labels: BTreeMap::new(),
        settings: BTreeMap::new(),
    };
    let mut commands = vec![Command::RegisterPool { spec: pool }];
    for p in 0..5 {
        let jobs = (0..3)
            .map(|j| {
                let mut spec = JobSpec::simple(&format!("j{j}"), "echo hi", Resources::new(100, 64, 0));
                if j > 0 {
                    spec.needs = vec![format!("j{}", j - 1)];
                }
                spec
            })
            .collect();
        commands.push(Command::SubmitPipeline {
            tenant: "default".into(),
            idempotency_key: Some(format!("key-{p}")),
            spec: PipelineSpec {
                name: format!("p{p}"),
                jobs,
            },
            source: None,
            rerun_of: None,
        });
    }
    // Place the first job of every pipeline (ids 1, 4, 7, 10, 13).
    let placements = (0..5)
        .map(|p| Placement {
            job: JobId(1 + 3 * p),
            attempt: 1,
            pool: "main".into(),
            worker_host: None,
        })
        .collect();
    commands.push(Command::ApplyPlan { placements });
    let plan_index = first_index + commands.len() as u64 - 1;
    let fencing = FencingToken {
        term,
        log_index: plan_index,
    };
    commands.push(Command::WorkerStarted { job: JobId(1), fencing });
    commands.push(Command::AppendLog {
        job: JobId(1),
        fencing,
        offset: 0,
        data: b"hello from j0\n".to_vec(),
    });
    commands.push(Command::WorkerExited {
        job: JobId(1),
        fencing,
        exit_code: 0,
        jitter_permille: 0,
    });
    commands.push(Command::CancelPipeline {
        pipeline: PipelineId(2),
    });
    commands
        .into_iter()
        .enumerate()
        .map(|(i, c)| entry(term, first_index + i as u64, c))
        .collect()
}

pub async fn apply_all<SM: RaftStateMachine<TypeConfig>>(sm: &mut SM, entries: Vec<Entry>) {
    sm.apply(stream::iter(entries.into_iter().map(|e| Ok((e, None)))))
        .await
        .expect("apply");
}

pub fn state_bytes(state: &State) -> Vec<u8> {
    flotilla_raft_store::encode(state).expect("encode state")
}

/// Every job's stored output as the state (or, for an archived job, its record) counts it,
/// read from the store's output, by job.
pub fn output_of(handle: &flotilla_raft_store::StateHandle) -> Vec<(JobId, Vec<u8>)> {
    let data = handle.read();
    let disk = handle.disk();
    let archived = data.state.archive().iter().flat_map(|(_, a)| a.job_ids()).map(|id| {
        disk.job(id)
            .expect("archived record reads")
            .expect("an archived job has its record")
    });
    let mut jobs: Vec<_> = data.state.jobs().cloned().chain(archived).collect();
    jobs.sort_by_key(|j| j.id);
    jobs.into_iter()
        .filter(|j| j.log_bytes > 0)
        .map(|j| {
            let bytes = disk.read(j.id, 0, j.log_bytes, usize::MAX).expect("output reads");
            assert_eq!(bytes.len() as u64, j.log_bytes, "job {} output is whole", j.id);
            (j.id, bytes)
        })
        .collect()
}
