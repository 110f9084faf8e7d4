//! Snapshots: built on one store, installed on a fresh one, equal state; restored at open;
//! corrupt files refused; applied events broadcast.

mod common;
use common::*;
use flotilla_raft_store::{open, StoreConfig};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_built_on_one_store_installs_on_a_fresh_one() {
    let leader_dir = tempfile::tempdir().unwrap();
    let (_log, mut leader) = open(&StoreConfig::new(leader_dir.path())).unwrap();
    let mut entries = vec![membership_entry(2, 1)];
    entries.extend(domain_entries(2, 2));
    let last_index = entries.len() as u64;
    apply_all(&mut leader, entries).await;
    let expected = state_bytes(&leader.handle().read().state);
    {
        let handle = leader.handle();
        let data = handle.read();
        assert_eq!(data.state.jobs().count(), 15);
        assert_eq!(data.state.log(flotilla_state_machine::JobId(1)), b"hello from j0\n");
    }

    let mut builder = leader.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(2, last_index)));
    assert!(snapshot.snapshot.len_bytes().unwrap() > 100);

    let follower_dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut follower) = open(&StoreConfig::new(follower_dir.path())).unwrap();
        let current = leader.get_current_snapshot().await.unwrap().expect("leader has a snapshot");
        follower.install_snapshot(&current.meta, current.snapshot).await.unwrap();
        assert_eq!(state_bytes(&follower.handle().read().state), expected);
        assert_eq!(follower.applied_state().await.unwrap(), leader.applied_state().await.unwrap());
    }
    // Reopened from disk, the follower restores the installed snapshot.
    let (_log, mut reopened) = open(&StoreConfig::new(follower_dir.path())).unwrap();
    assert_eq!(state_bytes(&reopened.handle().read().state), expected);
    assert_eq!(reopened.applied_state().await.unwrap().0, Some(log_id(2, last_index)));
    let current = reopened.get_current_snapshot().await.unwrap().expect("snapshot survives reopen");
    assert_eq!(current.meta.last_log_id, Some(log_id(2, last_index)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_mismatched_snapshots_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(&StoreConfig::new(dir.path())).unwrap();
    apply_all(&mut sm, domain_entries(1, 1)).await;
    let snap = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();

    // Flip one byte in a copy of the file.
    let mut bytes = std::fs::read(&snap.snapshot.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let bad = dir.path().join("bad.snap");
    std::fs::write(&bad, &bytes).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let (_l, mut other) = open(&StoreConfig::new(other_dir.path())).unwrap();
    let file = flotilla_raft_store::SnapshotFile::open(&bad).unwrap();
    let err = other.install_snapshot(&snap.meta, file).await.unwrap_err();
    assert!(err.to_string().contains("checksum") || err.kind() == std::io::ErrorKind::InvalidData, "{err}");

    // A good file presented with someone else's metadata.
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(9, 999));
    let file = flotilla_raft_store::SnapshotFile::open(&snap.snapshot.path).unwrap();
    assert!(other.install_snapshot(&meta, file).await.is_err());
    assert_eq!(other.handle().read().state.jobs().count(), 0, "nothing installed");
}

#[tokio::test]
async fn applied_entries_broadcast_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(&StoreConfig::new(dir.path())).unwrap();
    let mut rx = sm.handle().subscribe();
    apply_all(&mut sm, domain_entries(1, 1)).await;
    let first = rx.recv().await.unwrap();
    assert_eq!(first.log_index, 1);
    assert_eq!(first.events.iter().map(|e| e.kind()).collect::<Vec<_>>(), ["PoolRegistered", "CapacityUpdated"]);
    let second = rx.recv().await.unwrap();
    assert_eq!(second.log_index, 2);
    assert_eq!(second.events[0].kind(), "PipelineRequested");
}
