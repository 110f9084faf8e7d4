//! Counters of the storage layer, read by the node's `/metrics` at scrape time.
//!
//! Plain atomics updated where the work happens (lock-free on the append path). Latency is kept
//! as a sum and a count, so a dashboard derives the mean over any window from two rates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct StoreStats {
    appends: AtomicU64,
    append_wait_micros: AtomicU64,
    appended_bytes: AtomicU64,
    /// `appended_bytes` when the last snapshot was built or installed.
    appended_bytes_at_snapshot: AtomicU64,
    wal_syncs: AtomicU64,
    snapshots_built: AtomicU64,
    snapshot_lock_micros: AtomicU64,
    snapshots_installed: AtomicU64,
}

/// A consistent-enough reading of the counters (each is read once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStatsReading {
    /// Log appends acknowledged to Raft (each after the fsync that covers it).
    pub appends: u64,
    /// Bytes of log entries appended since the last snapshot was built or installed (what a
    /// snapshot would let the log purge, roughly).
    pub log_bytes_since_snapshot: u64,
    /// Total time appends waited from write to acknowledgement.
    pub append_wait: Duration,
    /// WAL fsyncs (group commits: one covers every append queued while the previous ran).
    pub wal_syncs: u64,
    pub snapshots_built: u64,
    /// Total time snapshot builds held the state's read lock (encoding it in memory).
    pub snapshot_lock: Duration,
    pub snapshots_installed: u64,
}

impl StoreStats {
    pub(crate) fn appended(&self, waited: Duration) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.append_wait_micros
            .fetch_add(u64::try_from(waited.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn log_bytes_appended(&self, bytes: u64) {
        self.appended_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn mark_snapshot(&self) {
        self.appended_bytes_at_snapshot
            .store(self.appended_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub(crate) fn synced(&self) {
        self.wal_syncs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot_built(&self) {
        self.mark_snapshot();
        self.snapshots_built.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot_locked(&self, held: Duration) {
        self.snapshot_lock_micros
            .fetch_add(u64::try_from(held.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn snapshot_installed(&self) {
        self.mark_snapshot();
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> StoreStatsReading {
        StoreStatsReading {
            appends: self.appends.load(Ordering::Relaxed),
            log_bytes_since_snapshot: self
                .appended_bytes
                .load(Ordering::Relaxed)
                .saturating_sub(self.appended_bytes_at_snapshot.load(Ordering::Relaxed)),
            append_wait: Duration::from_micros(self.append_wait_micros.load(Ordering::Relaxed)),
            wal_syncs: self.wal_syncs.load(Ordering::Relaxed),
            snapshots_built: self.snapshots_built.load(Ordering::Relaxed),
            snapshot_lock: Duration::from_micros(self.snapshot_lock_micros.load(Ordering::Relaxed)),
            snapshots_installed: self.snapshots_installed.load(Ordering::Relaxed),
        }
    }
}
