//! What the store promises across crashes: acknowledged appends, the vote and the committed id
//! survive, including a `kill -9` of the writing process in the middle of appending.

mod common;
use common::*;
use flotilla_raft_store::{StoreConfig, Vote, open};
use flotilla_state_machine::Command;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};

const CHILD_ENV: &str = "FLOTILLA_CRASH_CHILD_DIR";

fn vote() -> Vote {
    Vote::new_committed(3, 1)
}

fn noop(i: u64) -> Command {
    Command::CancelJob {
        job: flotilla_state_machine::JobId(i),
    }
}

#[tokio::test]
async fn acknowledged_appends_vote_and_committed_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::new(dir.path());
    {
        let (mut log, _sm) = open(&config).unwrap();
        log.save_vote(&vote()).await.unwrap();
        let entries: Vec<_> = (1..=100).map(|i| entry(3, i, noop(i))).collect();
        for chunk in entries.chunks(7) {
            log.blocking_append(chunk.to_vec()).await.unwrap();
        }
        log.save_committed(Some(log_id(3, 60))).await.unwrap();
        // Dropped without any shutdown step.
    }
    let (mut log, _sm) = open(&config).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(3, 100)));
    assert_eq!(state.last_purged_log_id, None);
    let entries = log.try_get_log_entries(1..=100).await.unwrap();
    assert_eq!(entries.len(), 100);
    assert!(
        entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.log_id == log_id(3, i as u64 + 1))
    );
    assert_eq!(entries[41], entry(3, 42, noop(42)));
    assert_eq!(log.read_vote().await.unwrap(), Some(vote()));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(3, 60)));
}

/// Runs in a child process: appends one entry at a time and prints each acknowledgement.
async fn crash_child(dir: &str) {
    let (mut log, _sm) = open(&StoreConfig::new(dir)).unwrap();
    log.save_vote(&vote()).await.unwrap();
    println!("vote saved");
    for i in 1.. {
        log.blocking_append([entry(3, i, noop(i))]).await.unwrap();
        println!("acked {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_append_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        crash_child(&dir).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args([
            "kill_9_mid_append_loses_nothing_acknowledged",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut last_acked = 0u64;
    let mut vote_saved = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        vote_saved |= line.ends_with("vote saved"); // libtest may print "test <name> ... " first
        if let Some(n) = line.strip_prefix("acked ") {
            last_acked = n.parse().unwrap();
            if last_acked >= 300 {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL the child"); // Child::kill sends SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success(), "child was killed, not finished");
    assert!(vote_saved && last_acked >= 300, "child acknowledged only {last_acked}");

    let (mut log, _sm) = open(&StoreConfig::new(dir.path())).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(vote()));
    let entries = log.try_get_log_entries(1..=last_acked).await.unwrap();
    assert_eq!(entries.len() as u64, last_acked, "every acknowledged entry survived");
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(*e, entry(3, i as u64 + 1, noop(i as u64 + 1)));
    }
    let last = log.get_log_state().await.unwrap().last_log_id.unwrap();
    assert!(last.index >= last_acked);
}
