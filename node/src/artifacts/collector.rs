//! The leader's artifact work beside the drive, never awaited by it: packing an exited
//! worker's files into a blob and copying it to a majority of the nodes (`collect`), and
//! making sure the blobs a new worker needs are here and whole (`inputs`). Both can take
//! minutes for large artifacts; the drive asks each tick, gets `Preparing` until the work is
//! done, and goes on with the other assignments meanwhile, as for checkouts.
//!
//! Nothing here is state the cluster depends on: a new leader that never saw this work does it
//! again (packing the same files gives a blob under its own digest; copies already made are
//! kept), and the blob becomes live only when its record commits.

use super::blob_store::{BlobError, BlobStore};
use super::peers::BlobPeers;
use flotilla_providers::artifact_archive::{BlobPlace, PackLimits, Packed};
use flotilla_providers::{ArtifactRequest, ProviderError, ProviderSet, WorkerProvider};
use flotilla_state_machine::{JobId, ProviderKind};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where one piece of artifact work stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress<T> {
    Ready(T),
    Preparing,
    /// It failed; `permanent`: the job's files are the cause (a path missing, a limit passed),
    /// so doing it again would fail again.
    Failed {
        reason: String,
        permanent: bool,
    },
}

/// What a collection packs: the job's artifacts or its cache (one of each per attempt).
pub use flotilla_providers::uploads::CollectPurpose as Purpose;

/// What a collection needs to know of the assignment.
#[derive(Clone, Debug)]
pub struct CollectOrder {
    pub job: JobId,
    pub attempt: u32,
    pub purpose: Purpose,
    pub kind: ProviderKind,
    /// The provider's name for the worker.
    pub worker: String,
    pub paths: Vec<String>,
    pub limits: PackLimits,
}

type Outcome<T> = Option<Progress<T>>;

pub struct Collector {
    store: Arc<BlobStore>,
    peers: Arc<BlobPeers>,
    providers: Arc<ProviderSet>,
    /// Collections by `(job, attempt, purpose)`: `None` while running.
    collections: Mutex<HashMap<(JobId, u32, Purpose), Outcome<Packed>>>,
    /// Blobs being fetched from peers: `None` while running, then the failure if it failed.
    fetches: Mutex<HashMap<String, Option<String>>>,
    /// Blobs read whole and found intact by this process, so a create does not hash them
    /// again.
    verified: Mutex<BTreeSet<String>>,
}

/// Most results kept untaken (an assignment whose leader changed leaves its result behind).
const MAX_KEPT: usize = 4096;

impl Collector {
    pub fn new(store: Arc<BlobStore>, peers: Arc<BlobPeers>, providers: Arc<ProviderSet>) -> Arc<Self> {
        Arc::new(Collector {
            store,
            peers,
            providers,
            collections: Default::default(),
            fetches: Default::default(),
            verified: Default::default(),
        })
    }

    /// Where the collection of `order`'s artifacts stands; starts it if nothing does. A
    /// finished collection is answered once and forgotten.
    pub fn collect(self: &Arc<Self>, order: &CollectOrder) -> Progress<Packed> {
        let key = (order.job, order.attempt, order.purpose);
        let mut map = self.collections.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&key) {
            Some(None) => return Progress::Preparing,
            Some(Some(_)) => return map.remove(&key).flatten().unwrap_or(Progress::Preparing),
            None => {}
        }
        if map.len() >= MAX_KEPT {
            map.retain(|_, outcome| outcome.is_none());
        }
        map.insert(key, None);
        drop(map);
        let this = self.clone();
        let order = order.clone();
        tokio::spawn(async move {
            let mut outcome = this.run_collection(&order).await;
            if let Progress::Failed { reason, .. } = &mut outcome {
                if order.purpose == Purpose::Cache {
                    *reason = cache_reason(reason);
                }
                tracing::warn!(job = %order.job, attempt = order.attempt, purpose = ?order.purpose, reason, "collecting files");
            }
            let mut map = this.collections.lock().unwrap_or_else(|p| p.into_inner());
            map.insert((order.job, order.attempt, order.purpose), Some(outcome));
        });
        Progress::Preparing
    }

    async fn run_collection(&self, order: &CollectOrder) -> Progress<Packed> {
        let Some(provider) = self.providers.get(order.kind) else {
            return Progress::Failed {
                reason: format!("no {} provider on this node", order.kind),
                permanent: false,
            };
        };
        let dest = self.store.temp_path("collect");
        let request = ArtifactRequest {
            purpose: order.purpose,
            paths: order.paths.clone(),
            dest: dest.clone(),
            limits: order.limits,
        };
        let started = std::time::Instant::now();
        let packed = match provider.collect_artifacts(&order.worker, &request).await {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_file(&dest);
                let permanent = !e.is_transient();
                let reason = match e {
                    ProviderError::Rejected(m) | ProviderError::Unsupported(m) => m,
                    other => other.to_string(),
                };
                return Progress::Failed { reason, permanent };
            }
        };
        let store = self.store.clone();
        let digest = packed.digest.clone();
        let placed = match packed.place {
            BlobPlace::Dest => tokio::task::spawn_blocking(move || store.adopt(&dest, &digest)).await,
            // The worker sent it to a node (maybe this one), which checked it on arrival.
            BlobPlace::Uploaded if store.has(&digest) => {
                tokio::task::spawn_blocking(move || store.verify(&digest)).await
            }
            BlobPlace::Uploaded => Ok(self.peers.fetch(&digest).await),
        };
        match placed {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return transient(e),
            Err(e) => return transient(BlobError::Io(std::io::Error::other(e.to_string()))),
        }
        self.mark_verified(&packed.digest);
        let pack_ms = started.elapsed().as_millis() as u64;
        match self.peers.replicate(&packed.digest).await {
            Ok((held, majority)) if held >= majority => {
                let copy_ms = started.elapsed().as_millis() as u64 - pack_ms;
                tracing::info!(
                    job = %order.job,
                    attempt = order.attempt,
                    size_bytes = packed.size_bytes,
                    purpose = ?order.purpose,
                    pack_ms,
                    copy_ms,
                    nodes = held,
                    "artifacts packed and copied"
                );
                Progress::Ready(packed)
            }
            Ok((held, majority)) => Progress::Failed {
                reason: format!("the artifact reached {held} of the {majority} nodes it must be on before it is kept"),
                permanent: false,
            },
            Err(e) => transient(e),
        }
    }

    fn mark_verified(&self, digest: &str) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_KEPT {
            verified.clear();
        }
        verified.insert(digest.to_string());
    }

    /// Where the blobs `digests` stand on this node, for a worker about to be created: their
    /// paths once every one is here and intact; the missing ones are fetched from the peers
    /// meanwhile.
    pub fn inputs(self: &Arc<Self>, digests: &[String]) -> Progress<Vec<PathBuf>> {
        let mut paths = Vec::with_capacity(digests.len());
        let mut waiting = false;
        for digest in digests {
            let known_good = self.verified.lock().unwrap_or_else(|p| p.into_inner()).contains(digest);
            if known_good && self.store.has(digest) {
                match self.store.path(digest) {
                    Ok(p) => paths.push(p),
                    Err(e) => {
                        return Progress::Failed {
                            reason: e.to_string(),
                            permanent: true,
                        };
                    }
                }
                continue;
            }
            if self.store.has(digest) {
                // Checked once per process; a damaged copy is removed and fetched again.
                match self.store.verify(digest) {
                    Ok(p) => {
                        self.mark_verified(digest);
                        paths.push(p);
                        continue;
                    }
                    Err(e) => tracing::warn!(digest, error = %e, "artifact blob"),
                }
            }
            match self.fetch_state(digest) {
                Some(Some(failure)) => {
                    return Progress::Failed {
                        reason: failure,
                        permanent: false,
                    };
                }
                Some(None) => waiting = true,
                None => {
                    self.start_fetch(digest);
                    waiting = true;
                }
            }
        }
        if waiting {
            Progress::Preparing
        } else {
            Progress::Ready(paths)
        }
    }

    /// The state of the fetch of `digest`: `None` if none runs or ran; a failed fetch is
    /// answered once and forgotten, so the next ask tries again.
    fn fetch_state(&self, digest: &str) -> Option<Option<String>> {
        let mut map = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(digest) {
            Some(None) => Some(None),
            Some(Some(_)) => map.remove(digest),
            None => None,
        }
    }

    fn start_fetch(self: &Arc<Self>, digest: &str) {
        self.fetches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_string(), None);
        let this = self.clone();
        let digest = digest.to_string();
        tokio::spawn(async move {
            let result = this.peers.fetch(&digest).await;
            let mut map = this.fetches.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(_) => {
                    map.remove(&digest);
                    drop(map);
                    this.mark_verified(&digest);
                }
                Err(e) => {
                    map.insert(digest, Some(format!("no node could give the artifact: {e}")));
                }
            }
        });
    }
}

/// A packing failure as it reads for a cache: the providers name the artifacts' field, and a
/// cache's paths are checked and packed by the same code.
fn cache_reason(reason: &str) -> String {
    reason
        .replacen("artifacts.paths[", "cache.paths[", 1)
        .replacen("the artifacts take", "the cache takes", 1)
        .replacen("the artifact reached", "the cache reached", 1)
}

fn transient<T>(e: BlobError) -> Progress<T> {
    Progress::Failed {
        reason: e.to_string(),
        permanent: false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cache_failure_names_the_cache_field() {
        assert_eq!(
            super::cache_reason("artifacts.paths[2] \"target\" does not exist in the workspace"),
            "cache.paths[2] \"target\" does not exist in the workspace"
        );
        assert!(
            super::cache_reason("the artifacts take more than 5 bytes (compressed)").starts_with("the cache takes")
        );
    }
}
