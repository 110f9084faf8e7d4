//! Every node's removal of the blobs no artifact record names any more (expired, their
//! pipeline removed, a retry's replaced, or copies of a collection whose record was never
//! committed). A blob younger than `SWEEP_GRACE_MS` is kept whatever the state says: its
//! record may not have committed yet. The choice is a pure function (`unreferenced`).

use super::blob_store::BlobStore;
use flotilla_raft_store::StateHandle;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How long a blob no record names is kept: longer than any collection takes between storing
/// the blob and committing its record.
pub const SWEEP_GRACE_MS: u64 = 60 * 60 * 1000;
/// How often each node sweeps.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The blobs of `held` (name, bytes, stored at) that no record names and that are older than
/// `grace_ms` at `now`.
pub fn unreferenced(
    held: &[(String, u64, SystemTime)],
    referenced: &BTreeSet<String>,
    now: SystemTime,
    grace_ms: u64,
) -> Vec<String> {
    held.iter()
        .filter(|(digest, _, stored)| {
            let age_ms = now.duration_since(*stored).map_or(0, |d| d.as_millis() as u64);
            !referenced.contains(digest) && age_ms >= grace_ms
        })
        .map(|(digest, _, _)| digest.clone())
        .collect()
}

/// Sweeps this node's blobs every minute until `stop`; records the bytes held in
/// `blob_bytes`.
pub async fn run_sweeps(
    store: Arc<BlobStore>,
    machine: StateHandle,
    blob_bytes: prometheus_client::metrics::gauge::Gauge,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let referenced: BTreeSet<String> = {
            let data = machine.read();
            data.state.artifacts().iter().map(|r| r.digest.to_string()).collect()
        };
        let store = store.clone();
        let swept = tokio::task::spawn_blocking(move || -> std::io::Result<(usize, u64)> {
            let held = store.list()?;
            let gone = unreferenced(&held, &referenced, SystemTime::now(), SWEEP_GRACE_MS);
            for digest in &gone {
                if let Err(e) = store.remove(digest) {
                    tracing::warn!(digest, error = %e, "removing an artifact blob");
                }
            }
            let left: u64 = held
                .iter()
                .filter(|(d, _, _)| !gone.contains(d))
                .map(|(_, bytes, _)| *bytes)
                .sum();
            Ok((gone.len(), left))
        })
        .await;
        match swept {
            Ok(Ok((removed, left_bytes))) => {
                if removed > 0 {
                    tracing::info!(removed, "removed artifact blobs no record names");
                }
                blob_bytes.set(i64::try_from(left_bytes).unwrap_or(i64::MAX));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping artifact blobs"),
            Err(e) => tracing::warn!(error = %e, "sweeping artifact blobs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_blobs_no_record_names_go() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100_000);
        let old = now - Duration::from_millis(SWEEP_GRACE_MS);
        let young = now - Duration::from_millis(SWEEP_GRACE_MS - 1);
        let held = vec![
            ("kept".to_string(), 1, old),
            ("orphan".to_string(), 2, old),
            ("in-flight".to_string(), 3, young),
            ("future".to_string(), 4, now + Duration::from_secs(5)),
        ];
        let referenced = BTreeSet::from(["kept".to_string()]);
        assert_eq!(unreferenced(&held, &referenced, now, SWEEP_GRACE_MS), vec!["orphan"]);
    }
}
