//! Snapshots: built on one store, installed on a fresh one, equal state; restored at open;
//! corrupt files refused; applied events broadcast.

mod common;
use common::*;
use flotilla_raft_store::{StoreConfig, open};
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
    let expected_output = output_of(&leader.handle());
    {
        let handle = leader.handle();
        let data = handle.read();
        assert_eq!(data.state.jobs().count(), 15);
    }
    assert_eq!(
        expected_output,
        vec![(flotilla_state_machine::JobId(1), b"hello from j0\n".to_vec())]
    );

    let mut builder = leader.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(2, last_index)));
    assert!(snapshot.snapshot.len_bytes().unwrap() > 100);

    let follower_dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut follower) = open(&StoreConfig::new(follower_dir.path())).unwrap();
        let current = leader
            .get_current_snapshot()
            .await
            .unwrap()
            .expect("leader has a snapshot");
        follower
            .install_snapshot(
                &current.meta,
                current
                    .snapshot
                    .materialize(&follower_dir.path().join("received.snap"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(state_bytes(&follower.handle().read().state), expected);
        assert_eq!(output_of(&follower.handle()), expected_output);
        assert_eq!(
            follower.applied_state().await.unwrap(),
            leader.applied_state().await.unwrap()
        );
    }
    // Reopened from disk, the follower restores the installed snapshot and its output.
    let (_log, mut reopened) = open(&StoreConfig::new(follower_dir.path())).unwrap();
    assert_eq!(state_bytes(&reopened.handle().read().state), expected);
    assert_eq!(output_of(&reopened.handle()), expected_output);
    assert_eq!(reopened.applied_state().await.unwrap().0, Some(log_id(2, last_index)));
    let current = reopened
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("snapshot survives reopen");
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
    assert!(
        err.to_string().contains("checksum") || err.kind() == std::io::ErrorKind::InvalidData,
        "{err}"
    );

    // A good file presented with someone else's metadata.
    let mut meta = snap.meta.clone();
    meta.last_log_id = Some(log_id(9, 999));
    let file = flotilla_raft_store::SnapshotFile::open(&snap.snapshot.path).unwrap();
    assert!(other.install_snapshot(&meta, file).await.is_err());
    assert_eq!(other.handle().read().state.jobs().count(), 0, "nothing installed");

    // A snapshot of an older state layout (version byte after the 8-byte magic, checksum
    // made valid again) is refused by name, not misread.
    let mut bytes = std::fs::read(&snap.snapshot.path).unwrap();
    bytes[8] = 1;
    let body = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    let old = dir.path().join("old.snap");
    std::fs::write(&old, &bytes).unwrap();
    let file = flotilla_raft_store::SnapshotFile::open(&old).unwrap();
    let err = other.install_snapshot(&snap.meta, file).await.unwrap_err();
    assert!(err.to_string().contains("snapshot layout version 1"), "{err}");
    assert_eq!(other.handle().read().state.jobs().count(), 0, "nothing installed");
}

#[tokio::test]
async fn applied_entries_are_journaled_with_their_ids_and_a_restart_resumes_after_the_snapshot() {
    use flotilla_state_machine::EventId;
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(&StoreConfig::new(dir.path())).unwrap();
    let appended = sm.handle().journal().watch();
    apply_all(&mut sm, domain_entries(1, 1)).await;
    assert!(appended.has_changed().unwrap(), "readers waiting for events are woken");
    let journal = sm.handle().journal().clone();
    let events = journal.read_after(EventId::START, 100).unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.id.to_string(), e.event.kind())).collect();
    assert_eq!(
        kinds[..3],
        [
            ("1-0".into(), "PoolRegistered"),
            ("1-1".into(), "CapacityUpdated"),
            ("2-0".into(), "PipelineRequested")
        ]
    );

    // After a snapshot and a reopen, the events folded into the snapshot are no longer offered.
    assert_eq!(sm.handle().store_stats().snapshots_built, 0);
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(sm.handle().store_stats().snapshots_built, 1);
    let last = journal.last_id().unwrap();
    drop((_log, sm));
    let (_log, sm) = open(&StoreConfig::new(dir.path())).unwrap();
    let reopened = sm.handle().journal().clone();
    assert!(reopened.read_after(EventId::START, 100).is_err());
    assert!(
        reopened
            .read_after(EventId::new(last.log_index + 1, 0), 100)
            .unwrap()
            .is_empty()
    );
}

/// A corrupt newest snapshot no longer stops the node from starting: it is kept aside as
/// `.corrupt` and the older snapshot is restored (the log replays the rest). When the log was
/// purged past every usable snapshot, opening fails with the recovery procedure instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_newest_snapshot_falls_back_to_an_older_one() {
    use openraft::storage::RaftLogStorage;
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(dir.path());
    let (older_index, newest_path) = {
        let (_log, mut sm) = open(&config).unwrap();
        let first = domain_entries(1, 1);
        let older_index = first.len() as u64;
        apply_all(&mut sm, first).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let mut more = vec![membership_entry(1, older_index + 1)];
        more.push(entry(
            1,
            older_index + 2,
            flotilla_state_machine::Command::CancelPipeline {
                pipeline: flotilla_state_machine::PipelineId(1),
            },
        ));
        apply_all(&mut sm, more).await;
        let newest = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        (older_index, newest.snapshot.path.clone())
    };
    let mut bytes = std::fs::read(&newest_path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&newest_path, &bytes).unwrap();

    {
        let (_log, mut sm) = open(&config).unwrap();
        assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, older_index)));
        let mut corrupt = newest_path.clone().into_os_string();
        corrupt.push(".corrupt");
        assert!(
            std::path::Path::new(&corrupt).exists(),
            "the corrupt file is kept for inspection"
        );
        assert!(!newest_path.exists());
    }

    // Purge the log past the only usable snapshot: the state cannot be rebuilt locally.
    {
        let (mut log, _sm) = open(&config).unwrap();
        log.purge(log_id(1, older_index + 2)).await.unwrap();
    }
    for e in std::fs::read_dir(dir.path().join("snapshots")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "snap") {
            let mut b = std::fs::read(&path).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
            std::fs::write(&path, &b).unwrap();
        }
    }
    let err = match open(&config) {
        Ok(_) => panic!("opened with no usable snapshot and a purged log"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("remove it from the cluster"), "{err}");
}
