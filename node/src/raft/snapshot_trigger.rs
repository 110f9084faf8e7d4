//! Snapshots by bytes as well as by entries: openraft's policy counts entries only
//! (`--snapshot-after-entries`), so a log of a few large entries (64 KiB output chunks, 4 MiB
//! report batches) could grow by gigabytes before a snapshot let it be purged. This loop
//! triggers one once the bytes appended since the last snapshot pass
//! `--snapshot-after-log-bytes`.

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
}
