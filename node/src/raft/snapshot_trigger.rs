//! Snapshots by bytes as well as by entries: openraft's policy counts entries only
//! (`--snapshot-after-entries`), so a log of a few large entries (64 KiB output chunks, 4 MiB
//! report batches) could grow by gigabytes before a snapshot let it be purged. This loop
//! triggers one once the bytes appended since the last snapshot pass
//! `--snapshot-after-log-bytes`.
//!
//! A node that stops gracefully also builds one first if it applied entries since the last
//! (`before_stop`): its next start then restores that snapshot and replays no log. Settled
//! history lives on disk, not in the snapshot, so this costs the live state only; it is
//! bounded in time, and a crash still replays the log after the last snapshot.

use crate::Raft;
use flotilla_raft_store::{StateHandle, StoreStatsReading};
use std::time::Duration;
use tokio::sync::watch;

/// How often the bytes appended are looked at.
const CHECK_INTERVAL_MS: u64 = 1_000;
/// Least time between two triggers while no snapshot has been built (one may be under way).
const RETRIGGER_AFTER_MS: u64 = 30_000;

/// Whether to trigger a snapshot now: enough bytes since the last one, and no trigger of ours
/// still waiting for its snapshot (`pending_since_ms`: when we last triggered, if no snapshot
/// was built since).
pub fn due(reading: &StoreStatsReading, max_bytes: u64, pending_since_ms: Option<u64>, now_ms: u64) -> bool {
    reading.log_bytes_since_snapshot >= max_bytes
        && pending_since_ms.is_none_or(|t| now_ms.saturating_sub(t) >= RETRIGGER_AFTER_MS)
}

/// Checks every second until `stop`; each node snapshots on its own, as openraft's policy does.
pub async fn run(raft: Raft, machine: StateHandle, max_bytes: u64, mut stop: watch::Receiver<bool>) {
    let started = std::time::Instant::now();
    let mut pending: Option<(u64, u64)> = None; // (triggered at ms, snapshots built then)
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(CHECK_INTERVAL_MS)) => {}
            _ = stop.changed() => return,
        }
        let reading = machine.store_stats();
        let now_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if pending.is_some_and(|(_, built)| reading.snapshots_built + reading.snapshots_installed != built) {
            pending = None;
        }
        if due(&reading, max_bytes, pending.map(|(at, _)| at), now_ms) {
            tracing::info!(
                log_bytes = reading.log_bytes_since_snapshot,
                "log bytes since the last snapshot passed --snapshot-after-log-bytes: building one"
            );
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "triggering a snapshot");
            }
            pending = Some((now_ms, reading.snapshots_built + reading.snapshots_installed));
        }
    }
}

/// Longest a graceful stop waits for its snapshot.
pub const STOP_SNAPSHOT_TIMEOUT_MS: u64 = 10_000;

/// Whether a stopping node should snapshot first: it applied entries the newest snapshot does
/// not cover.
pub fn snapshot_on_stop(applied_index: Option<u64>, snapshot_index: Option<u64>) -> bool {
    applied_index.unwrap_or(0) > snapshot_index.unwrap_or(0)
}

/// Builds a snapshot of what this node applied, if the newest does not cover it, and waits for
/// it up to `STOP_SNAPSHOT_TIMEOUT_MS`.
pub async fn before_stop(raft: &Raft) {
    let m = crate::raft::metrics(raft);
    let (applied, snapshot) = (m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index));
    if !snapshot_on_stop(applied, snapshot) {
        return;
    }
    let target = applied.unwrap_or(0);
    if let Err(e) = raft.trigger().snapshot().await {
        tracing::warn!(error = %e, "snapshot before stopping: not triggered");
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_millis(STOP_SNAPSHOT_TIMEOUT_MS);
    while std::time::Instant::now() < deadline {
        if crate::raft::metrics(raft).snapshot.is_some_and(|l| l.index >= target) {
            tracing::info!(index = target, "snapshot built before stopping");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(
        index = target,
        "snapshot before stopping not built in time; the next start replays the log after the last one"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(bytes: u64) -> StoreStatsReading {
        StoreStatsReading {
            log_bytes_since_snapshot: bytes,
            ..StoreStatsReading::default()
        }
    }

    #[test]
    fn triggers_past_the_bytes_and_not_again_while_one_is_pending() {
        assert!(!due(&reading(99), 100, None, 0));
        assert!(due(&reading(100), 100, None, 0));
        assert!(!due(&reading(500), 100, Some(1_000), 1_000 + RETRIGGER_AFTER_MS - 1));
        assert!(due(&reading(500), 100, Some(1_000), 1_000 + RETRIGGER_AFTER_MS));
    }

    #[test]
    fn a_stop_snapshots_only_what_the_newest_snapshot_does_not_cover() {
        assert!(snapshot_on_stop(Some(10), Some(9)));
        assert!(snapshot_on_stop(Some(1), None));
        assert!(!snapshot_on_stop(Some(9), Some(9)));
        assert!(!snapshot_on_stop(None, None));
    }
}
