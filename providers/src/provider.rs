//! The contract between the leader and a place that runs workers.

use flotilla_state_machine::{FencingToken, JobId, PoolSpec, Resources};
use std::collections::BTreeMap;

/// Where container workers (Docker, Kubernetes) find their secret files: a tmpfs, one file
/// per variable of `WorkerSpec::secret_files`, named as the variable.
pub const CONTAINER_SECRETS_DIR: &str = "/run/flotilla/secrets";

/// What to run for one attempt of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    pub job: JobId,
    pub attempt: u32,
    pub fencing: FencingToken,
    pub steps: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Environment variables from the tenant's secrets, decrypted by the leader. Providers
    /// inject them natively (a Kubernetes Secret, the container's or process's environment)
    /// and never log them.
    pub secret_env: BTreeMap<String, crate::SecretValue>,
    /// Secrets as files: each value in a file (on a tmpfs, or a Kubernetes Secret volume),
    /// whose path is in the variable named by the key.
    pub secret_files: BTreeMap<String, crate::SecretValue>,
    pub image: Option<String>,
    /// What the job reserved; providers that can enforce limits (Docker, Kubernetes) do.
    pub resources: Resources,
    /// The job's timeout; Kubernetes also sets it (plus a margin) as the pod's deadline.
    pub timeout_ms: u64,
    /// The job's labels (its placement constraints); Kubernetes reads node selectors and
    /// tolerations from them.
    pub labels: BTreeMap<String, String>,
    /// The pool's provider settings (`PoolSpec::settings`).
    pub pool_settings: BTreeMap<String, String>,
    /// The id of the cluster whose leader creates it (`None` only for a node that has none
    /// recorded); providers label the worker with it and never touch another cluster's.
    pub cluster_id: Option<String>,
    /// A tar archive of the source the job runs (its pipeline's commit), on the creating
    /// leader's disk: unpacked into the work directory before the first step.
    pub checkout: Option<std::path::PathBuf>,
    /// How a worker that cannot read the leader's disk (a Kubernetes pod) downloads the same
    /// archive from the cluster's API; `None` when the node has no key to sign a grant with.
    pub source_fetch: Option<SourceFetch>,
    /// The artifacts of the jobs it needs: blobs (`artifact_archive`) on the creating
    /// leader's disk, unpacked into the work directory after the checkout, in order (a pod
    /// fetches as many from the nodes, `source_fetch`).
    pub inputs: Vec<std::path::PathBuf>,
    /// The job's cache restored: a blob on the creating leader's disk, unpacked after the
    /// checkout and before the inputs (so a needed job's artifacts win over a stale cache; a
    /// pod fetches it from the nodes, `SOURCE_CACHE_VAR`).
    pub cache: Option<std::path::PathBuf>,
    /// What the worker packs and uploads by itself after its steps, for a provider whose
    /// workers' files the leader cannot read (Kubernetes, `uploads.rs`); the others leave it
    /// to `collect_artifacts`.
    pub uploads: crate::uploads::Uploads,
}

/// What `collect_artifacts` packs and where it writes the blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRequest {
    /// The job's artifacts or its cache.
    pub purpose: crate::uploads::CollectPurpose,
    /// The job's `artifacts.paths`, relative to its work directory.
    pub paths: Vec<String>,
    /// A new file the blob is written to (its directory exists; the file must not).
    pub dest: std::path::PathBuf,
    pub limits: crate::artifact_archive::PackLimits,
}

/// Where and with what a worker's helper downloads its source: the attempt's endpoint on
/// every node, a grant that opens it for this attempt only while it lives, and the cluster's
/// CA to trust them by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFetch {
    /// `https://<node>/v1/jobs/<job>/attempts/<attempt>/source`, one per member, tried in turn.
    pub urls: Vec<String>,
    /// Sent as `Authorization: Bearer`; never in the job's own environment.
    pub grant: crate::SecretValue,
    /// Opens the attempt's uploads (`uploads.rs`) and nothing else: the container that
    /// uploads is given this one alone.
    pub upload_grant: crate::SecretValue,
    /// The cluster CA's certificates (PEM); `None` under plain HTTP.
    pub ca_pem: Option<String>,
}

/// The variables the source helper (`flotilla-node fetch-source`) reads.
pub const SOURCE_URLS_VAR: &str = "FLOTILLA_SOURCE_URLS";
pub const SOURCE_GRANT_VAR: &str = "FLOTILLA_SOURCE_GRANT";
pub const SOURCE_CA_VAR: &str = "FLOTILLA_SOURCE_CA";
/// Whether the helper fetches a checkout (`true`/`false`), and how many artifacts after it
/// (`/inputs/0` .. `/inputs/<n-1>` beside each node's source URL).
pub const SOURCE_CHECKOUT_VAR: &str = "FLOTILLA_SOURCE_CHECKOUT";
pub const SOURCE_INPUTS_VAR: &str = "FLOTILLA_SOURCE_INPUTS";
/// Whether the helper restores the job's cache (`true`/`false`, from `/cache` beside each
/// node's source URL) before the artifacts; a cache it cannot fetch is skipped.
pub const SOURCE_CACHE_VAR: &str = "FLOTILLA_SOURCE_CACHE";

impl WorkerSpec {
    /// The blobs unpacked into the work directory after the checkout, in order: the cache,
    /// then the needed jobs' artifacts.
    pub fn restored_blobs(&self) -> Vec<std::path::PathBuf> {
        self.cache.iter().chain(&self.inputs).cloned().collect()
    }

    /// The worker's name, unique per job attempt: idempotency key of every provider call.
    pub fn name(&self) -> String {
        worker_name(self.job, self.attempt)
    }

    /// The `LABEL_*` labels of this worker in cluster `cluster` (its name), as Docker
    /// containers and Kubernetes pods carry them.
    pub fn worker_labels(&self, cluster: &str) -> Vec<(String, String)> {
        let mut labels = vec![
            (LABEL_CLUSTER.to_string(), cluster.to_string()),
            (LABEL_JOB.to_string(), self.job.0.to_string()),
            (LABEL_ATTEMPT.to_string(), self.attempt.to_string()),
            (LABEL_WORKER.to_string(), self.name()),
        ];
        if let Some(id) = &self.cluster_id {
            labels.push((LABEL_CLUSTER_ID.to_string(), id.clone()));
        }
        labels
    }

    /// Refuses to take over an existing worker of this name that another cluster created
    /// (`held`: the cluster id it is labelled with).
    pub fn refuse_foreign(&self, held: Option<&str>) -> Result<(), ProviderError> {
        match held {
            Some(id) if foreign(Some(id), self.cluster_id.as_deref()) => Err(ProviderError::Rejected(format!(
                "a worker named {} belongs to cluster {id}, not this one: two clusters share this provider under one cluster name; give each its own --cluster-name",
                self.name()
            ))),
            _ => Ok(()),
        }
    }
}

/// Labels every provider puts on its workers (Docker containers, Kubernetes pods): the
/// cluster they belong to (by name, which prefixes their names, and by id), the job and
/// attempt, and the worker's name.
pub const LABEL_CLUSTER: &str = "flotilla.cluster";
pub const LABEL_CLUSTER_ID: &str = "flotilla.cluster-id";
/// Marks a tombstone (a ConfigMap on Kubernetes, a volume on Docker) of a removed worker.
pub const LABEL_TOMBSTONE: &str = "flotilla.tombstone";
pub const LABEL_JOB: &str = "flotilla.job";
pub const LABEL_ATTEMPT: &str = "flotilla.attempt";
pub const LABEL_WORKER: &str = "flotilla.worker";

pub fn worker_name(job: JobId, attempt: u32) -> String {
    format!("j{}-a{attempt}", job.0)
}

/// The job and attempt a `worker_name` names; `None` for any other text.
pub fn parse_worker_name(name: &str) -> Option<(JobId, u32)> {
    let (job, attempt) = name.strip_prefix('j')?.split_once("-a")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(job) || !digits(attempt) {
        return None;
    }
    Some((JobId(job.parse().ok()?), attempt.parse().ok()?))
}

/// One worker a provider holds, as `list` names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedWorker {
    pub name: String,
    /// The cluster id it is labelled with (`None`: a worker created without one).
    pub cluster_id: Option<String>,
}

impl ListedWorker {
    /// The worker its labels describe (a container's or a pod's), if they name one.
    pub fn from_labels(labels: impl IntoIterator<Item = (String, String)>) -> Option<ListedWorker> {
        let (mut name, mut cluster_id) = (None, None);
        for (key, value) in labels {
            match key.as_str() {
                LABEL_WORKER => name = Some(value),
                LABEL_CLUSTER_ID => cluster_id = Some(value),
                _ => {}
            }
        }
        Some(ListedWorker {
            name: name?,
            cluster_id,
        })
    }

    /// Whether it belongs to another cluster than `own`: both ids known and different. A
    /// node never adopts nor removes such a worker (two clusters given one name and one
    /// Docker engine or namespace, or a node that founded a cluster of its own by mistake).
    pub fn is_foreign(&self, own: Option<&str>) -> bool {
        foreign(self.cluster_id.as_deref(), own)
    }
}

/// Whether a worker labelled `worker_cluster` belongs to another cluster than `own`.
fn foreign(worker_cluster: Option<&str>, own: Option<&str>) -> bool {
    matches!((worker_cluster, own), (Some(w), Some(o)) if w != o)
}

/// What the provider sees of one worker now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// The worker exists (it was created and not removed).
    pub exists: bool,
    /// Its process has started.
    pub started: bool,
    /// Index of the last step started.
    pub step_started: Option<u32>,
    /// `(step, exit_code)` of every finished step, in order.
    pub steps_finished: Vec<(u32, i32)>,
    /// Bytes of output produced so far.
    pub output_bytes: u64,
    /// Exit code once the worker has finished.
    pub exit_code: Option<i32>,
    /// It neither runs nor has an exit status: it was lost.
    pub lost: bool,
    /// Why, when the provider can tell (an evicted pod, a source that could not be fetched).
    pub lost_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider i/o: {0}")]
    Io(#[from] std::io::Error),
    /// This provider can never run this worker as specified.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The provider refused this worker (no such image, invalid limits): retrying will not help.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The provider could not be reached or failed; a later call may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Calls were not made: the provider failed repeatedly and its circuit breaker is open.
    #[error("circuit open after repeated failures ({last}); next try in {retry_in_ms} ms")]
    CircuitOpen { last: String, retry_in_ms: u64 },
    #[error("provider call timed out after {0} ms")]
    Timeout(u64),
}

impl ProviderError {
    /// Whether the same call may succeed later. Permanent errors are about the worker, not the
    /// provider, and neither are retried nor count against the provider's health.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ProviderError::Unsupported(_) | ProviderError::Rejected(_))
    }
}

/// Every call is idempotent by worker name.
pub trait WorkerProvider: Send + Sync + 'static {
    /// Creates and starts the worker unless it exists; returns the provider's id for it.
    fn create(&self, spec: &WorkerSpec) -> impl Future<Output = Result<String, ProviderError>> + Send;
    fn observe(&self, name: &str) -> impl Future<Output = Result<Observation, ProviderError>> + Send;
    /// Up to `max_bytes` of output starting at `offset`.
    fn read_output(
        &self,
        name: &str,
        offset: u64,
        max_bytes: usize,
    ) -> impl Future<Output = Result<Vec<u8>, ProviderError>> + Send;
    /// Stops the worker; `true` once it no longer runs.
    fn terminate(&self, name: &str) -> impl Future<Output = Result<bool, ProviderError>> + Send;
    /// Deletes what is left of a stopped worker (its directory, container...).
    fn remove(&self, name: &str) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// Every worker this provider holds (sorted by name), for orphan removal.
    fn list(&self) -> impl Future<Output = Result<Vec<ListedWorker>, ProviderError>> + Send;
    /// Whether `capacity` measures anything (the leader asks only such providers).
    fn measures_capacity(&self) -> bool {
        false
    }
    /// What `pool` can hold in all, if this provider measures it (Kubernetes: the allocatable
    /// resources of the pool's nodes minus what other pods request); `None` keeps the capacity
    /// the operator registered.
    fn capacity(&self, pool: &PoolSpec) -> impl Future<Output = Result<Option<Resources>, ProviderError>> + Send {
        let _ = pool;
        async { Ok(None) }
    }
    /// Packs the files `request.paths` of the exited worker's work directory into a blob at
    /// `request.dest` (`artifact_archive::pack`). A path missing or a limit passed is
    /// `Rejected` with a message naming it; a provider that cannot reach its workers' files
    /// says so with `Unsupported`.
    fn collect_artifacts(
        &self,
        name: &str,
        request: &ArtifactRequest,
    ) -> impl Future<Output = Result<crate::artifact_archive::Packed, ProviderError>> + Send {
        let _ = (name, request);
        async {
            Err(ProviderError::Unsupported(
                "this provider does not collect artifacts".into(),
            ))
        }
    }
}

impl From<crate::artifact_archive::PackError> for ProviderError {
    fn from(e: crate::artifact_archive::PackError) -> Self {
        match e {
            crate::artifact_archive::PackError::Io(e) => ProviderError::Io(e),
            other => ProviderError::Rejected(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_names_parse_back_and_other_names_do_not() {
        assert_eq!(parse_worker_name(&worker_name(JobId(1042), 3)), Some((JobId(1042), 3)));
        assert_eq!(
            parse_worker_name(&worker_name(JobId(u64::MAX), u32::MAX)),
            Some((JobId(u64::MAX), u32::MAX))
        );
        for other in [
            "",
            "j",
            "j1",
            "j1-a",
            "j-a1",
            "x1-a1",
            "j1-a1x",
            "j+1-a1",
            "j1-a+1",
            "j1-a99999999999",
            "flotilla-j1-a1",
        ] {
            assert_eq!(parse_worker_name(other), None, "{other:?}");
        }
    }

    #[test]
    fn only_a_worker_of_another_known_cluster_is_foreign() {
        let listed = |id: Option<&str>| ListedWorker {
            name: "j1-a1".into(),
            cluster_id: id.map(str::to_string),
        };
        assert!(listed(Some("b")).is_foreign(Some("a")));
        assert!(!listed(Some("a")).is_foreign(Some("a")));
        // Unknown on either side: nothing says it is another cluster's.
        assert!(!listed(None).is_foreign(Some("a")));
        assert!(!listed(Some("b")).is_foreign(None));
    }
}
