//! Job output on disk: read by range without loading a whole log, the same bytes after a
//! restart and a replay, and replaced whole when a follower installs a snapshot.

mod common;
use common::*;
use flotilla_raft_store::{Entry, StoreConfig, open};
use flotilla_state_machine::*;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

const JOB: JobId = JobId(1);

/// A pool, a one-job pipeline placed and started, then `chunks` appends of its output; the
/// entries and the bytes the job's log must hold after each one.
fn history(chunks: usize, seed: u8) -> (Vec<Entry>, Vec<Vec<u8>>) {
    let pool = PoolSpec {
        name: "main".into(),
        provider: ProviderKind::Process,
        capacity: Resources::new(4000, 8192, 0),
        max_workers: 8,
        labels: Default::default(),
        settings: Default::default(),
    };
    let mut entries = vec![
        membership_entry(1, 1),
        entry(1, 2, Command::RegisterPool { spec: pool }),
        entry(
            1,
            3,
            Command::SubmitPipeline {
                tenant: "default".into(),
                idempotency_key: None,
                spec: PipelineSpec {
                    name: "p".into(),
                    jobs: vec![JobSpec::simple("build", "make", Resources::new(100, 64, 0))],
                },
                source: None,
                rerun_of: None,
            },
        ),
        entry(
            1,
            4,
            Command::ApplyPlan {
                placements: vec![Placement {
                    job: JOB,
                    attempt: 1,
                    pool: "main".into(),
                    worker_host: None,
                }],
            },
        ),
    ];
    let fencing = FencingToken { term: 1, log_index: 4 };
    entries.push(entry(1, 5, Command::WorkerStarted { job: JOB, fencing }));
    let mut log = Vec::new();
    let mut after = Vec::new();
    for i in 0..chunks {
        // Sizes vary from 1 byte to a few KiB so that ranges start and end inside chunks.
        let len = 1 + (i * 977) % 3000;
        let data: Vec<u8> = (0..len).map(|b| seed.wrapping_add((i + b) as u8)).collect();
        let offset = log.len() as u64;
        log.extend_from_slice(&data);
        let index = entries.len() as u64 + 1;
        entries.push(entry(
            1,
            index,
            Command::AppendLog {
                job: JOB,
                fencing,
                offset,
                data,
            },
        ));
        after.push(log.clone());
    }
    (entries, after)
}

fn read(sm: &flotilla_raft_store::StateMachineStore, from: u64, to: u64, max: usize) -> Vec<u8> {
    sm.handle().disk().read(JOB, from, to, max).expect("output reads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_read_by_range_and_a_replay_after_a_restart_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, after) = history(60, 7);
    let full = after.last().unwrap().clone();
    let split = 5 + 30; // the snapshot covers the first 30 chunks
    {
        let (_log, mut sm) = open(&StoreConfig::new(dir.path())).unwrap();
        apply_all(&mut sm, entries[..split].to_vec()).await;
        let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        // The node's own snapshot holds the state, not the output (which stays in RocksDB):
        // building one costs the same whatever the output.
        let file_bytes = built.snapshot.len_bytes().unwrap();
        assert!(
            file_bytes < after[29].len() as u64 / 4,
            "a snapshot of {file_bytes} bytes for {} bytes of output",
            after[29].len()
        );
        apply_all(&mut sm, entries[split..].to_vec()).await;
        let total = full.len() as u64;
        assert_eq!(sm.handle().read().state.job(JOB).unwrap().log_bytes, total);
        assert_eq!(read(&sm, 0, total, usize::MAX), full);
        // Ranges that start and end inside chunks, a page limit, and empty ranges.
        for (from, to) in [(0, 1), (1, 2), (999, 4_321), (12_345, total), (total - 1, total)] {
            assert_eq!(
                read(&sm, from, to, usize::MAX),
                full[from as usize..to as usize],
                "{from}..{to}"
            );
        }
        assert_eq!(read(&sm, 100, total, 1000), full[100..1100]);
        assert!(read(&sm, total, total + 10, usize::MAX).is_empty());
        assert!(read(&sm, 10, 5, usize::MAX).is_empty());
        // Never past what the caller says the state counts.
        assert_eq!(read(&sm, 0, 10, usize::MAX), full[..10]);
    }
    // Reopened, the state is the snapshot's; the log replays the rest over the output already
    // stored, and the bytes come out the same.
    let (_log, mut sm) = open(&StoreConfig::new(dir.path())).unwrap();
    let counted = sm.handle().read().state.job(JOB).unwrap().log_bytes;
    assert_eq!(counted, after[29].len() as u64, "restored from the snapshot");
    assert_eq!(read(&sm, 0, counted, usize::MAX), after[29]);
    apply_all(&mut sm, entries[split..].to_vec()).await;
    assert_eq!(output_of(&sm.handle()), vec![(JOB, full)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_installs_a_snapshot_holds_its_output_and_nothing_else() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_l, mut leader) = open(&StoreConfig::new(leader_dir.path())).unwrap();
    let (entries, after) = history(40, 1);
    apply_all(&mut leader, entries).await;
    leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let current = leader.get_current_snapshot().await.unwrap().expect("a snapshot");

    // The follower holds output of its own first: another history, with more chunks.
    let follower_dir = tempfile::tempdir().unwrap();
    let (_f, mut follower) = open(&StoreConfig::new(follower_dir.path())).unwrap();
    let (own, _) = history(70, 99);
    apply_all(&mut follower, own).await;
    follower
        .install_snapshot(&current.meta, received(current.snapshot, follower_dir.path()))
        .await
        .unwrap();

    let chunks = |sm: &flotilla_raft_store::StateMachineStore| -> Vec<OutputChunkRow> {
        let handle = sm.handle();
        let view = handle.disk().consistent_view();
        view.chunks()
            .map(|c| c.map(|c| (c.job, c.offset, c.data)).unwrap())
            .collect()
    };
    assert_eq!(
        chunks(&follower),
        chunks(&leader),
        "the leader's chunks, and none of its own"
    );
    assert_eq!(
        output_of(&follower.handle()),
        vec![(JOB, after.last().unwrap().clone())]
    );
}

type OutputChunkRow = (JobId, u64, Vec<u8>);

/// A crash while an installed snapshot's output was being loaded leaves the marker (naming
/// the received snapshot, already published) and the output half replaced; the next start
/// loads the output again from that snapshot. A marker whose snapshot was never published
/// (a crash before that) is dropped and the output left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_output_install_is_finished_at_the_next_start() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (entries, after) = history(20, 3);
    let (_l, mut leader) = open(&StoreConfig::new(leader_dir.path())).unwrap();
    apply_all(&mut leader, entries).await;
    leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
    let current = leader.get_current_snapshot().await.unwrap().expect("a snapshot");
    let dir = tempfile::tempdir().unwrap();
    let name = {
        let (_log, mut sm) = open(&StoreConfig::new(dir.path())).unwrap();
        sm.install_snapshot(&current.meta, received(current.snapshot, dir.path()))
            .await
            .unwrap();
        let installed = sm.get_current_snapshot().await.unwrap().expect("installed");
        installed
            .snapshot
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let crash = |marker: &str| {
        let opts = rocksdb::Options::default();
        let db = rocksdb::DB::open_cf(&opts, dir.path().join("log"), ["logs", "meta", "output", "history"]).unwrap();
        db.put_cf(db.cf_handle("meta").unwrap(), b"output_rebuild", marker.as_bytes())
            .unwrap();
        let mut stray = [0u8; 16];
        stray[..8].copy_from_slice(&77u64.to_be_bytes());
        db.put_cf(db.cf_handle("output").unwrap(), stray, b"stray").unwrap();
    };
    let jobs_stored = |handle: &flotilla_raft_store::StateHandle| -> Vec<JobId> {
        let view = handle.disk().consistent_view();
        view.chunks().map(|c| c.unwrap().job).collect()
    };
    // What the crash left: the marker naming the published snapshot, a stray chunk, and the
    // job's first chunk gone.
    crash(&name);
    {
        let opts = rocksdb::Options::default();
        let db = rocksdb::DB::open_cf(&opts, dir.path().join("log"), ["logs", "meta", "output", "history"]).unwrap();
        let mut first = [0u8; 16];
        first[..8].copy_from_slice(&JOB.0.to_be_bytes());
        db.delete_cf(db.cf_handle("output").unwrap(), first).unwrap();
    }
    {
        let (_log, sm) = open(&StoreConfig::new(dir.path())).unwrap();
        let handle = sm.handle();
        let jobs = jobs_stored(&handle);
        assert!(jobs.iter().all(|j| *j == JOB), "only the snapshot's output: {jobs:?}");
        assert_eq!(output_of(&handle), vec![(JOB, after.last().unwrap().clone())]);
    }
    // The marker is gone (no rebuild at every start), and a marker naming a snapshot never
    // published changes nothing but itself: the stray chunk stays.
    crash("snapshot-00000000000000099999-00000000000000000009.snap");
    let (_log, sm) = open(&StoreConfig::new(dir.path())).unwrap();
    let handle = sm.handle();
    assert!(
        jobs_stored(&handle).contains(&JobId(77)),
        "the output was left as it was"
    );
    assert_eq!(output_of(&handle), vec![(JOB, after.last().unwrap().clone())]);
    drop((_log, sm, handle));
    let opts = rocksdb::Options::default();
    let db = rocksdb::DB::open_cf(&opts, dir.path().join("log"), ["logs", "meta", "output", "history"]).unwrap();
    assert!(
        db.get_cf(db.cf_handle("meta").unwrap(), b"output_rebuild")
            .unwrap()
            .is_none()
    );
}

/// The snapshot as a follower receives it: what `SnapshotFile::wire` sends, in a file.
fn received(sent: flotilla_raft_store::SnapshotFile, dir: &std::path::Path) -> flotilla_raft_store::SnapshotFile {
    sent.materialize(&dir.join("received.snap"))
        .expect("the snapshot streams")
}
