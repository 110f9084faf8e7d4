//! Every node's upkeep of its blobs, each minute: the removal of the blobs no artifact record
//! names any more (expired, their pipeline removed, a retry's replaced, or copies of a
//! collection whose record was never committed), and the fetch from a peer of the blobs a
//! record names that this node lacks (it was down, or joined, when they were made). A record
//! is committed once a majority holds its blob; the fetches bring every member to hold every
//! live blob, so that losing nodes one after another, as long as a majority is left each
//! time, loses no artifact. A blob younger than `SWEEP_GRACE_MS` is kept whatever the state
//! says: its record may not have committed yet. The choices are pure functions
//! (`unreferenced`, `missing`).

use super::peers::BlobPeers;
use flotilla_raft_store::StateHandle;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How long a blob no record names is kept: longer than any collection takes between storing
/// the blob and committing its record.
pub const SWEEP_GRACE_MS: u64 = 60 * 60 * 1000;

/// The blobs of `held` (name, bytes, stored at) that no record names and that are older than
/// `grace_ms` at `now`.
pub fn unreferenced(
    held: &[(String, u64, SystemTime)],
    referenced: &BTreeMap<String, u64>,
    now: SystemTime,
    grace_ms: u64,
) -> Vec<String> {
    held.iter()
        .filter(|(digest, _, stored)| {
            let age_ms = now.duration_since(*stored).map_or(0, |d| d.as_millis() as u64);
            !referenced.contains_key(digest) && age_ms >= grace_ms
        })
        .map(|(digest, _, _)| digest.clone())
        .collect()
}

/// The blobs `referenced` (name and size) that `held` lacks, at most `max`, smallest first
/// (the most artifacts made safe for the time spent).
pub fn missing(
    held: &[(String, u64, SystemTime)],
    referenced: &BTreeMap<String, u64>,
    max: usize,
) -> Vec<(String, u64)> {
    let held: BTreeSet<&str> = held.iter().map(|(d, _, _)| d.as_str()).collect();
    let mut out: Vec<(String, u64)> = referenced
        .iter()
        .filter(|(d, _)| !held.contains(d.as_str()))
        .map(|(d, size)| (d.clone(), *size))
        .collect();
    out.sort_by_key(|(d, size)| (*size, d.clone()));
    out.truncate(max);
    out
}

/// Blobs fetched from peers per pass at most.
const FETCHES_PER_PASS: usize = 16;

/// Sweeps and completes this node's blobs every `interval` until `stop`; records the bytes held
/// in `blob_bytes`.
pub async fn run_sweeps(
    peers: Arc<BlobPeers>,
    machine: StateHandle,
    interval: Duration,
    blob_bytes: prometheus_client::metrics::gauge::Gauge,
    mut stop: watch::Receiver<bool>,
) {
    let store = peers.store.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let referenced = referenced(&machine.read().state);
        // One listing serves both: what is removed, then what is left and missing.
        let store = store.clone();
        // With a bucket, this disk is a cache of it: every copy goes an hour after it arrived,
        // named or not, and comes back from the bucket when it is needed again. This bounds
        // the disk by what the last hour used, not by everything the records name.
        let names = if peers.object.is_some() {
            BTreeMap::new()
        } else {
            referenced.clone()
        };
        let swept = tokio::task::spawn_blocking(move || -> std::io::Result<(usize, Vec<_>)> {
            let mut held = store.list()?;
            let gone = unreferenced(&held, &names, SystemTime::now(), SWEEP_GRACE_MS);
            for digest in &gone {
                if let Err(e) = store.remove(digest) {
                    tracing::warn!(digest, error = %e, "removing an artifact blob");
                }
            }
            held.retain(|(d, _, _)| !gone.contains(d));
            Ok((gone.len(), held))
        })
        .await;
        let held = match swept {
            Ok(Ok((removed, held))) => {
                if removed > 0 {
                    tracing::info!(removed, "removed artifact blobs no record names");
                }
                let left_bytes: u64 = held.iter().map(|(_, bytes, _)| *bytes).sum();
                blob_bytes.set(i64::try_from(left_bytes).unwrap_or(i64::MAX));
                held
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "sweeping artifact blobs");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeping artifact blobs");
                continue;
            }
        };
        if let Some(object) = &peers.object {
            // The bucket holds the copies that count; this disk is a cache of it, so nothing
            // is fetched ahead of need, and the bucket is swept as the disk is.
            sweep_bucket(&peers, object, &machine).await;
            continue;
        }
        for (digest, size_bytes) in missing(&held, &referenced, FETCHES_PER_PASS) {
            match tokio::time::timeout(super::copy_timeout(size_bytes), peers.fetch(&digest)).await {
                Ok(Ok(_)) => tracing::info!(digest, size_bytes, "fetched an artifact blob this node lacked"),
                Ok(Err(e)) => tracing::warn!(digest, error = %e, "fetching an artifact blob this node lacks"),
                Err(_) => tracing::warn!(digest, "fetching an artifact blob this node lacks timed out"),
            }
        }
    }
}

/// Most blobs removed from the bucket per pass.
const BUCKET_REMOVALS_PER_PASS: usize = 1000;

/// Removes from the bucket the blobs no record names, once older than `SWEEP_GRACE_MS` (an
/// upload whose record is not committed yet is younger). The bucket holds the only copy, so
/// only the leader sweeps it, and only with a state confirmed current by a read index: a node
/// back from a long absence, still behind, would take the records it has not applied yet for
/// none, and remove what they name.
async fn sweep_bucket(peers: &BlobPeers, object: &super::ObjectBlobs, machine: &StateHandle) {
    if crate::raft::metrics(&peers.raft).current_leader != Some(peers.node_id) {
        return;
    }
    if let Err(e) = peers
        .raft
        .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
        .await
    {
        tracing::debug!(error = %e, "not sweeping the artifact bucket: leadership unconfirmed");
        return;
    }
    let referenced = referenced(&machine.read().state);
    let listed = match object.list().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(bucket = object.url(), error = %e, "listing the artifact bucket");
            return;
        }
    };
    let gone = unreferenced(&listed, &referenced, SystemTime::now(), SWEEP_GRACE_MS);
    for digest in gone.iter().take(BUCKET_REMOVALS_PER_PASS) {
        if let Err(e) = object.delete(digest).await {
            tracing::warn!(bucket = object.url(), digest, error = %e, "removing a blob from the bucket");
        }
    }
}

/// Every blob a record names (an artifact or a cache), with its size.
pub fn referenced(state: &flotilla_state_machine::State) -> BTreeMap<String, u64> {
    let artifacts = state.artifacts().iter().map(|r| (r.digest.to_string(), r.size_bytes));
    let caches = state.caches().iter().map(|r| (r.digest.to_string(), r.size_bytes));
    artifacts.chain(caches).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_and_caches_keep_their_blobs() {
        use flotilla_state_machine::scheduler::{SchedulerPolicy, schedule};
        use flotilla_state_machine::*;
        let mut state = State::new(Limits::DEFAULT);
        let mut index = 0;
        let mut apply = |state: &mut State, command: Command| {
            index += 1;
            let (r, _) = state.apply(
                ApplyContext {
                    log_index: index,
                    term: 1,
                },
                &Proposal::new(1000, command),
            );
            assert!(r.rejection().is_none(), "{r:?}");
        };
        let pool = PoolSpec {
            name: "local".into(),
            provider: ProviderKind::Process,
            capacity: Resources::new(4000, 4096, 0),
            max_workers: 4,
            labels: Default::default(),
            settings: Default::default(),
        };
        apply(&mut state, Command::RegisterPool { spec: pool });
        let mut job = JobSpec::simple("build", "make", Resources::new(100, 64, 0));
        job.artifacts = Some(Box::new(ArtifactsSpec {
            paths: vec!["out".into()],
            expire_in_ms: 60_000,
            when: ArtifactsWhen::OnSuccess,
        }));
        job.cache = Some(Box::new(CacheSpec {
            key: "deps".into(),
            files: Vec::new(),
            paths: vec!["target".into()],
            policy: CachePolicy::PullPush,
        }));
        let spec = PipelineSpec {
            name: "p".into(),
            jobs: vec![job],
        };
        apply(
            &mut state,
            Command::SubmitPipeline {
                tenant: "default".into(),
                idempotency_key: None,
                spec,
                source: None,
                rerun_of: None,
            },
        );
        let plan = schedule(&state, &SchedulerPolicy::default(), 1000);
        let job = plan.placements[0].job;
        apply(
            &mut state,
            Command::ApplyPlan {
                placements: plan.placements,
            },
        );
        let fencing = state.job(job).and_then(Job::fencing).unwrap();
        apply(&mut state, Command::WorkerStarted { job, fencing });
        let (a, c) = ("a".repeat(64), "c".repeat(64));
        apply(
            &mut state,
            Command::ArtifactStored {
                job,
                fencing,
                digest: a.clone(),
                size_bytes: 10,
                entries: 1,
            },
        );
        apply(
            &mut state,
            Command::CacheSaved {
                job,
                fencing,
                outcome: CacheSave::Stored {
                    digest: c.clone().into(),
                    size_bytes: 20,
                    entries: 1,
                },
            },
        );
        assert_eq!(referenced(&state), BTreeMap::from([(a, 10), (c, 20)]));
    }

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
        let referenced = BTreeMap::from([("kept".to_string(), 1)]);
        assert_eq!(unreferenced(&held, &referenced, now, SWEEP_GRACE_MS), vec!["orphan"]);
    }

    #[test]
    fn the_blobs_a_record_names_and_this_node_lacks_are_fetched_smallest_first() {
        let now = SystemTime::UNIX_EPOCH;
        let held = vec![("held".to_string(), 1, now)];
        let referenced = BTreeMap::from([
            ("held".to_string(), 1),
            ("big".to_string(), 1000),
            ("small".to_string(), 10),
            ("medium".to_string(), 100),
        ]);
        let names = |v: Vec<(String, u64)>| v.into_iter().map(|(d, _)| d).collect::<Vec<_>>();
        assert_eq!(names(missing(&held, &referenced, 10)), ["small", "medium", "big"]);
        assert_eq!(names(missing(&held, &referenced, 2)), ["small", "medium"]);
        assert!(missing(&held, &BTreeMap::new(), 10).is_empty());
    }
}
