//! A fake Kubernetes API server for tests: axum on a loopback port, speaking the part of the
//! core/v1 API the `kubernetes` provider uses, with a simulated kubelet that really runs each
//! pod's container command as a local process.
//!
//! No kube-apiserver can run on the build machines, and mocking kube's client calls one by one
//! would test the mock. This server is faithful where the provider depends on behaviour:
//!
//! - pods: create (201; 409 `AlreadyExists` for a taken name), get (404 `NotFound`), list with
//!   label and field selectors (`status.phase`, `spec.nodeName`; `=`, `==`, `!=`), watch
//!   (newline-delimited `ADDED`/`MODIFIED`/`DELETED` events from a `resourceVersion`,
//!   `BOOKMARK`s when asked, an `ERROR` event with a 410 `Expired` status when the version is
//!   older than the retained history, `timeoutSeconds`), log (whole or `follow=true` until the
//!   container ends; 400 while the container waits to start), delete (graceful: the pod is
//!   marked with `deletionTimestamp`, its process gets SIGTERM, then SIGKILL after the grace
//!   period, then the object goes).
//! - configmaps: create, get, list by label, delete (the provider's tombstones).
//! - nodes: list by label (capacity).
//! - the kubelet: a pod is bound to the first node matching its `nodeSelector` whose
//!   allocatable resources still fit its requests (otherwise it stays `Pending`); it starts
//!   after `start_delay_ms`; init containers run first, in order, each to its end (one that
//!   fails ends the pod `Failed`, its last output as its termination message); then
//!   `command`+`args` run in the container's working directory with its `env`
//!   (`secretKeyRef` values read from the namespace's Secrets; Secret and emptyDir volumes
//!   are directories of the pod's own, see `volumes.rs`; an image's programs come first on
//!   `PATH`, `image_paths`); stdout and stderr form one log, as in Kubernetes; the exit code
//!   gives `Succeeded` or `Failed`; `activeDeadlineSeconds` ends it with reason
//!   `DeadlineExceeded`.
//! - test hooks: `evict` (kubelet eviction: `Failed`, reason `Evicted`, no exit code),
//!   `lose_node` (the node's pods are killed and force-deleted), `compact` (drop the watch
//!   history so the next watch from an older version gets 410), foreign pods using capacity.
//!
//! Not covered: authentication, admission and defaulting (fields are stored as sent), server-side
//! apply and patch, `limit`/`continue` paging (every list is one page), `previous`/`sinceTime`/
//! `tailLines` on logs, the logs of init containers, sidecar containers (only the first
//! container runs after the init containers), images (the command runs on the host; an image
//! only adds its directory to `PATH`), namespaces as objects.

mod cluster;
mod kubelet;
mod routes;
mod selector;
mod volumes;

pub use cluster::{Cluster, NodeSpec};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Settings of one fake server.
#[derive(Clone, Debug)]
pub struct FakeKubeConfig {
    /// Time from binding a pod to starting its container.
    pub start_delay_ms: u64,
    /// Interval of `BOOKMARK` events on watches that allow them.
    pub bookmark_interval_ms: u64,
    /// Watch events kept for watches that resume from an older `resourceVersion`.
    pub history_events: usize,
    /// What an image holds, as a directory of programs put first on the `PATH` of its
    /// containers (the command runs on the host, so an image is where its programs are).
    pub image_paths: std::collections::BTreeMap<String, std::path::PathBuf>,
}

impl Default for FakeKubeConfig {
    fn default() -> Self {
        FakeKubeConfig {
            start_delay_ms: 50,
            bookmark_interval_ms: 1_000,
            history_events: 10_000,
            image_paths: std::collections::BTreeMap::new(),
        }
    }
}

/// A running fake API server. Dropping it stops the server and kills its pods' processes.
pub struct FakeKube {
    addr: SocketAddr,
    cluster: Arc<Mutex<Cluster>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeKube {
    /// Starts a server on a free loopback port.
    pub async fn start(config: FakeKubeConfig) -> std::io::Result<FakeKube> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cluster = Arc::new(Mutex::new(Cluster::new(config)?));
        let app = routes::router(cluster.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake kube server stopped");
            }
        });
        Ok(FakeKube { addr, cluster, server })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulated cluster, for hooks and assertions.
    pub fn cluster(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().expect("fake cluster lock")
    }

    /// Stops the server (in-flight watches end) but keeps the cluster's objects.
    pub fn stop_serving(&self) {
        self.server.abort();
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
        self.cluster.lock().map(|mut c| c.kill_all()).ok();
    }
}
