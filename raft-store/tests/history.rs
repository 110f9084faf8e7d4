//! Archived pipelines and jobs on disk: written as pipelines settle, read by key and by page
//! (by state, by tenant), kept across a restart, sent whole with a snapshot, and removed
//! with their index keys by retention.

mod common;
use common::*;
use flotilla_raft_store::{Entry, StateMachineStore, StoreConfig, open};
use flotilla_state_machine::retention::RetentionPolicy;
use flotilla_state_machine::*;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

/// Tenants of the pipelines `history` submits, one job each: pipeline `i + 1` is job `i + 1`.
const TENANTS: [&str; 4] = ["a", "b", "a", "a"];

/// A pool and four one-job pipelines, each placed, started and run to its end: jobs 1, 2
/// and 4 succeed (job 1 with output), job 3 fails. Every pipeline settles.
fn history() -> Vec<Entry> {
    let pool = PoolSpec {
        name: "main".into(),
        provider: ProviderKind::Process,
        capacity: Resources::new(4000, 8192, 0),
        max_workers: 8,
        labels: Default::default(),
        settings: Default::default(),
    };
    let mut commands = vec![Command::RegisterPool { spec: pool }];
    for (i, tenant) in TENANTS.iter().enumerate() {
        commands.push(Command::SubmitPipeline {
            tenant: (*tenant).into(),
            idempotency_key: None,
            spec: PipelineSpec {
                name: format!("p{i}"),
                jobs: vec![JobSpec::simple("build", "make", Resources::new(100, 64, 0))],
            },
            source: None,
            rerun_of: None,
        });
    }
    let placements = (1..=TENANTS.len() as u64)
        .map(|j| Placement {
            job: JobId(j),
            attempt: 1,
            pool: "main".into(),
            worker_host: None,
        })
        .collect();
    commands.push(Command::ApplyPlan { placements });
    // Entries start at index 2 (after the membership).
    let fencing = FencingToken {
        term: 1,
        log_index: 1 + commands.len() as u64,
    };
    for j in 1..=TENANTS.len() as u64 {
        let job = JobId(j);
        commands.push(Command::WorkerStarted { job, fencing });
        if j == 1 {
            commands.push(Command::AppendLog {
                job,
                fencing,
                offset: 0,
                data: b"built\n".to_vec(),
            });
        }
        commands.push(Command::WorkerExited {
            job,
            fencing,
            exit_code: if j == 3 { 1 } else { 0 },
            jitter_permille: 0,
        });
    }
    let mut entries = vec![membership_entry(1, 1)];
    entries.extend(commands.into_iter().enumerate().map(|(i, c)| entry(1, 2 + i as u64, c)));
    entries
}

fn ids<T>(items: Vec<T>, id: impl Fn(&T) -> u64) -> Vec<u64> {
    items.iter().map(id).collect()
}

/// What a node can list of its archived pipelines and jobs, by state and by tenant.
fn pages(sm: &StateMachineStore) -> Vec<Vec<u64>> {
    let handle = sm.handle();
    let disk = handle.disk();
    let p = |state, tenants: Option<&[&str]>| {
        ids(
            disk.pipelines_page(state, tenants, PipelineId(0), 10).unwrap(),
            |p: &Pipeline| p.id.0,
        )
    };
    let j = |state, tenants: Option<&[&str]>, after| {
        ids(disk.jobs_page(state, tenants, JobId(after), 10).unwrap(), |j: &Job| {
            j.id.0
        })
    };
    vec![
        p(None, None),
        p(Some(PipelineState::Failed), None),
        p(None, Some(&["a"])),
        p(Some(PipelineState::Succeeded), Some(&["a", "b"])),
        j(None, None, 0),
        j(None, None, 2),
        j(Some(JobState::Succeeded), Some(&["a"]), 0),
        j(None, Some(&["nobody"]), 0),
    ]
}

fn expected_pages() -> Vec<Vec<u64>> {
    vec![
        vec![1, 2, 3, 4],
        vec![3],
        vec![1, 3, 4],
        vec![1, 2, 4],
        vec![1, 2, 3, 4],
        vec![3, 4],
        vec![1, 4],
        vec![],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_pipelines_are_archived_read_by_key_and_page_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(dir.path());
    let (log, mut sm) = open(&config).unwrap();
    apply_all(&mut sm, history()).await;
    {
        let handle = sm.handle();
        let data = handle.read();
        assert_eq!(data.state.pipelines().count(), 0, "nothing live is left");
        assert_eq!(data.state.jobs().count(), 0);
        assert_eq!((data.state.archive().len(), data.state.archive().jobs()), (4, 4));
        let p = handle.disk().pipeline(PipelineId(3)).unwrap().expect("archived");
        assert_eq!((p.state, p.tenant.as_str()), (PipelineState::Failed, "a"));
        let j = handle.disk().job(JobId(1)).unwrap().expect("archived");
        assert_eq!((j.state, j.log_bytes), (JobState::Succeeded, 6));
        assert_eq!(handle.disk().read(JobId(1), 0, 6, 100).unwrap(), b"built\n");
        assert!(handle.disk().pipeline(PipelineId(5)).unwrap().is_none());
    }
    assert_eq!(pages(&sm), expected_pages());

    // A snapshot holds the compact records; the store keeps the full ones across a restart.
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    drop((log, sm));
    let (_log, sm) = open(&config).unwrap();
    assert_eq!(sm.handle().read().state.archive().len(), 4);
    assert_eq!(pages(&sm), expected_pages());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_installing_a_snapshot_gets_the_archived_records_and_their_indexes() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_l, mut leader) = open(&StoreConfig::new(leader_dir.path())).unwrap();
    apply_all(&mut leader, history()).await;
    leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let current = leader.get_current_snapshot().await.unwrap().expect("a snapshot");

    // The follower archived a history of its own first (a pipeline the leader never had).
    let follower_dir = tempfile::tempdir().unwrap();
    let (_f, mut follower) = open(&StoreConfig::new(follower_dir.path())).unwrap();
    let mut own = history();
    own.truncate(3); // membership, pool, one submission: nothing settled
    apply_all(&mut follower, own).await;
    let sent = current
        .snapshot
        .materialize(&follower_dir.path().join("received.snap"))
        .unwrap();
    follower.install_snapshot(&current.meta, sent).await.unwrap();

    assert_eq!(pages(&follower), expected_pages());
    let records = |sm: &StateMachineStore| -> Vec<(Vec<u8>, Vec<u8>)> {
        let handle = sm.handle();
        let view = handle.disk().consistent_view();
        view.records().map(|r| r.map(|r| (r.key, r.value)).unwrap()).collect()
    };
    assert_eq!(
        records(&follower),
        records(&leader),
        "the leader's records, byte for byte"
    );
    assert_eq!(records(&leader).len(), 8, "four pipelines and four jobs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_archived_records_and_their_index_keys_and_marks_removed_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(&StoreConfig::new(dir.path())).unwrap();
    let mut entries = history();
    let next = entries.len() as u64 + 1;
    let policy = RetentionPolicy {
        max_age_ms: Some(1_000_000),
        max_pipelines: None,
        output_max_age_ms: Some(1),
        output_max_bytes_per_job: None,
    };
    entries.push(entry(
        1,
        next,
        Command::SetRetention {
            tenant: None,
            policy: Some(policy),
        },
    ));
    // The output of pipeline 1 is due; then the whole of pipeline 2, under tenant b's count.
    entries.push(entry(
        1,
        next + 1,
        Command::ExpireHistory {
            pipelines: vec![],
            outputs: vec![PipelineId(1)],
        },
    ));
    let none_kept = RetentionPolicy {
        max_pipelines: Some(0),
        ..RetentionPolicy::default()
    };
    entries.push(entry(
        1,
        next + 2,
        Command::SetRetention {
            tenant: Some("b".into()),
            policy: Some(none_kept),
        },
    ));
    entries.push(entry(
        1,
        next + 3,
        Command::ExpireHistory {
            pipelines: vec![PipelineId(2)],
            outputs: vec![],
        },
    ));
    apply_all(&mut sm, entries).await;

    let handle = sm.handle();
    let disk = handle.disk();
    {
        let data = handle.read();
        assert!(data.state.pipeline_removed(PipelineId(2)) && !data.state.pipeline_removed(PipelineId(1)));
        assert_eq!(data.state.archive().len(), 3);
    }
    assert!(disk.pipeline(PipelineId(2)).unwrap().is_none(), "pipeline 2 removed");
    assert!(disk.job(JobId(2)).unwrap().is_none(), "its job removed");
    let marked = disk.pipeline(PipelineId(1)).unwrap().expect("kept");
    assert!(marked.output_removed_at_ms.is_some(), "the record says its output went");
    assert_eq!(disk.job(JobId(1)).unwrap().expect("kept").log_bytes, 0);
    assert!(disk.read(JobId(1), 0, 6, 100).unwrap().is_empty(), "its output removed");
    assert_eq!(
        ids(disk.pipelines_page(None, None, PipelineId(0), 10).unwrap(), |p| p.id.0),
        vec![1, 3, 4]
    );
    assert_eq!(
        ids(disk.jobs_page(None, Some(&["b"]), JobId(0), 10).unwrap(), |j| j.id.0),
        Vec::<u64>::new(),
        "the removed job's index keys went with it"
    );
    assert_eq!(
        ids(
            disk.jobs_page(Some(JobState::Succeeded), None, JobId(0), 10).unwrap(),
            |j| j.id.0
        ),
        vec![1, 4]
    );
    assert_eq!(
        disk.consistent_view().records().count(),
        6,
        "three pipelines and their jobs"
    );
}
