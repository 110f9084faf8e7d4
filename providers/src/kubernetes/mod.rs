//! The `kubernetes` provider: one pod per job attempt in a configured namespace.
//!
//! Pods are named `<cluster>-j<job>-a<attempt>` and labelled like Docker containers
//! (`flotilla.{cluster,job,attempt,worker}`), so a new leader lists and adopts them. A create
//! answered 409 means an earlier leader created the pod; Kubernetes starts pods by itself, so
//! the pod is adopted as it is and the attempt still runs once.
//!
//! Pod state comes from a watcher (`kube::runtime::watcher` into a reflector store, which
//! re-lists by itself after a 410 Gone); a pod missing from the store is looked up directly
//! before it is called gone, so a pod created a moment ago is never taken for a lost one.
//! Output comes from the container's log, followed (`output.rs`). Removal first
//! leaves a tombstone (a ConfigMap `<cluster>-removed-<worker>`) and creation checks for it
//! before and after creating, the cluster-wide form of `tombstones.rs`: a deposed leader
//! cannot bring back an attempt its successor removed.
//!
//! A repository pipeline's pod first runs an init container that fetches the attempt's
//! source from the nodes with the attempt's grant (`pod.rs`, `WorkerSpec::source_fetch`):
//! the leader's disk, where process and Docker workers get it, is out of a pod's reach.

mod capacity;
mod markers;
mod output;
mod pod;
mod quantity;

pub use pod::PodView;

use crate::output_window::OutputWindow;
use crate::provider::{LABEL_CLUSTER, LABEL_CLUSTER_ID, LABEL_TOMBSTONE, LABEL_WORKER};
use crate::provider::{ListedWorker, Observation, ProviderError, WorkerProvider, WorkerSpec};
use capacity::pool_capacity;
use flotilla_state_machine::{PoolSpec, ProviderKind, Resources};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use pod::{PodTemplate, node_selector};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a removed worker's tombstone ConfigMap is kept.
const TOMBSTONE_KEEP_S: i64 = 7 * 24 * 3600;

#[derive(Clone, Debug)]
pub struct KubernetesConfig {
    /// API server URL; `None` finds it as kubectl does (in-cluster service account, then
    /// `KUBECONFIG`/`~/.kube/config`).
    pub api_url: Option<String>,
    /// Namespace of worker pods and tombstones.
    pub namespace: String,
    /// Cluster name: prefix of pod names and value of the `flotilla.cluster` label (lowercase
    /// letters, digits and `-`, as pod names need).
    pub cluster: String,
    /// Image for jobs that name none.
    pub default_image: Option<String>,
    /// Image holding `flotilla-node` (the nodes' own) whose `fetch-source` puts a repository
    /// pipeline's source into the pod's workspace; `None`: such jobs are refused.
    pub helper_image: Option<String>,
    /// Grace period given to a pod being stopped.
    pub stop_grace_ms: u64,
    /// Output held per worker before the log stream is paused until the leader commits some.
    pub max_buffered_output_bytes: usize,
    /// How long a measured pool capacity is reused before the nodes are listed again.
    pub capacity_refresh_ms: u64,
    /// Added to a job's timeout for the pod's `activeDeadlineSeconds`.
    pub deadline_margin_s: u64,
}

impl KubernetesConfig {
    pub fn new(namespace: impl Into<String>, cluster: impl Into<String>) -> Self {
        KubernetesConfig {
            api_url: None,
            namespace: namespace.into(),
            cluster: cluster.into(),
            default_image: None,
            helper_image: None,
            stop_grace_ms: 10_000,
            max_buffered_output_bytes: 8 * 1024 * 1024,
            capacity_refresh_ms: 10_000,
            deadline_margin_s: 60,
        }
    }
}

/// The API handles and the watcher, made on first use.
struct Connected {
    pods: Api<Pod>,
    all_pods: Api<Pod>,
    nodes: Api<Node>,
    tombstones: Api<ConfigMap>,
    /// The Secrets of attempts that use secrets, one per pod, named as the pod.
    secrets: Api<Secret>,
    store: Store<Pod>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

pub struct KubernetesProvider {
    config: KubernetesConfig,
    connected: tokio::sync::OnceCell<Connected>,
    outputs: Mutex<HashMap<String, Arc<OutputWindow>>>,
    /// Pools' measured capacity and when it was measured.
    capacities: Mutex<HashMap<String, (Instant, Resources)>>,
}

fn api_error(e: kube::Error) -> ProviderError {
    ProviderError::Unavailable(format!("kubernetes: {e}"))
}

fn status_of(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl KubernetesProvider {
    pub fn new(config: KubernetesConfig) -> Result<Self, ProviderError> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 40
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !valid(&config.cluster) {
            return Err(ProviderError::Rejected(format!(
                "cluster name {:?} cannot prefix pod names: use lowercase letters, digits and '-' (at most 40)",
                config.cluster
            )));
        }
        if !valid(&config.namespace) {
            return Err(ProviderError::Rejected(format!(
                "namespace {:?} is not a valid Kubernetes namespace name",
                config.namespace
            )));
        }
        Ok(KubernetesProvider {
            config,
            connected: tokio::sync::OnceCell::new(),
            outputs: Mutex::new(HashMap::new()),
            capacities: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    fn template(&self) -> PodTemplate<'_> {
        PodTemplate {
            cluster: &self.config.cluster,
            namespace: &self.config.namespace,
            default_image: self.config.default_image.as_deref(),
            helper_image: self.config.helper_image.as_deref(),
            stop_grace_ms: self.config.stop_grace_ms,
            deadline_margin_s: self.config.deadline_margin_s,
        }
    }

    fn pod_name(&self, worker: &str) -> String {
        self.template().pod_name(worker)
    }

    fn tombstone_name(&self, worker: &str) -> String {
        format!("{}-removed-{worker}", self.config.cluster)
    }

    async fn connected(&self) -> Result<&Connected, ProviderError> {
        self.connected
            .get_or_try_init(|| async {
                let config = match &self.config.api_url {
                    Some(url) => {
                        let uri = url
                            .parse()
                            .map_err(|e| ProviderError::Rejected(format!("kubernetes API URL {url:?}: {e}")))?;
                        kube::Config::new(uri)
                    }
                    None => kube::Config::infer().await.map_err(|e| {
                        ProviderError::Unavailable(format!("kubernetes: no API server configured: {e}"))
                    })?,
                };
                let client = Client::try_from(config).map_err(api_error)?;
                let ns = self.config.namespace.as_str();
                let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
                let (store, writer) = reflector::store();
                let selector = format!("{LABEL_CLUSTER}={}", self.config.cluster);
                let stream = reflector(
                    writer,
                    watcher(pods.clone(), watcher::Config::default().labels(&selector)),
                )
                .default_backoff();
                let watcher = tokio::spawn(async move {
                    futures::pin_mut!(stream);
                    while let Some(item) = stream.next().await {
                        if let Err(e) = item {
                            tracing::debug!(error = %e, "kubernetes pod watch; retrying");
                        }
                    }
                });
                let connected = Connected {
                    pods,
                    all_pods: Api::all(client.clone()),
                    nodes: Api::all(client.clone()),
                    tombstones: Api::namespaced(client.clone(), ns),
                    secrets: Api::namespaced(client, ns),
                    store,
                    watcher,
                };
                prune_tombstones(&connected.tombstones, &self.config.cluster).await;
                Ok(connected)
            })
            .await
    }

    /// The pod as the watcher last saw it, or as the API server says when the watcher has
    /// not seen it (just created, or gone).
    async fn pod(&self, c: &Connected, worker: &str) -> Result<Option<Pod>, ProviderError> {
        let name = self.pod_name(worker);
        if let Some(pod) = c.store.get(&ObjectRef::new(&name).within(&self.config.namespace)) {
            return Ok(Some((*pod).clone()));
        }
        c.pods.get_opt(&name).await.map_err(api_error)
    }

    async fn is_buried(&self, c: &Connected, worker: &str) -> Result<bool, ProviderError> {
        Ok(c.tombstones
            .get_opt(&self.tombstone_name(worker))
            .await
            .map_err(api_error)?
            .is_some())
    }

    async fn bury(&self, c: &Connected, worker: &str) -> Result<(), ProviderError> {
        let labels = BTreeMap::from([
            (LABEL_CLUSTER.to_string(), self.config.cluster.clone()),
            (LABEL_TOMBSTONE.to_string(), "true".to_string()),
            (LABEL_WORKER.to_string(), worker.to_string()),
        ]);
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.tombstone_name(worker)),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        match c.tombstones.create(&PostParams::default(), &map).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(api_error(e)),
        }
    }

    /// Creates the attempt's Secret unless it exists (an earlier leader made it: a secret
    /// cannot change while an attempt uses it, so it holds the same values).
    async fn create_secret(&self, c: &Connected, secret: &Secret) -> Result<(), ProviderError> {
        match c.secrets.create(&PostParams::default(), secret).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(400 | 403 | 422)) => Err(ProviderError::Rejected(format!(
                "kubernetes refused the Secret of {}: {e}",
                secret.metadata.name.as_deref().unwrap_or_default()
            ))),
            Err(e) => Err(api_error(e)),
        }
    }

    /// Deletes the attempt's Secret, if it has one.
    async fn delete_secret(&self, c: &Connected, worker: &str) -> Result<(), ProviderError> {
        match c.secrets.delete(&self.pod_name(worker), &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(api_error(e)),
        }
    }

    async fn delete_pod(&self, c: &Connected, worker: &str) -> Result<(), ProviderError> {
        let grace_s = u32::try_from(self.config.stop_grace_ms.div_ceil(1000)).unwrap_or(u32::MAX);
        match c
            .pods
            .delete(
                &self.pod_name(worker),
                &DeleteParams {
                    grace_period_seconds: Some(grace_s),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(api_error(e)),
        }
    }

    fn output(&self, c: &Connected, worker: &str, nonce: String) -> Arc<OutputWindow> {
        let mut outputs = self.outputs.lock().expect("outputs lock");
        outputs
            .entry(worker.to_string())
            .or_insert_with(|| {
                Arc::new(output::follow(
                    c.pods.clone(),
                    self.pod_name(worker),
                    nonce,
                    self.config.max_buffered_output_bytes,
                ))
            })
            .clone()
    }

    fn forget(&self, worker: &str) {
        self.outputs.lock().expect("outputs lock").remove(worker);
    }
}

/// The nonce the pod's wrapper marks steps with, read back from the pod.
fn nonce_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "FLOTILLA_MARKER"))
        .and_then(|e| e.value.clone())
        .unwrap_or_default()
}

/// Deletes this cluster's tombstones older than a week (the attempts they guard are long
/// settled by then).
async fn prune_tombstones(api: &Api<ConfigMap>, cluster: &str) {
    let selector = format!("{LABEL_CLUSTER}={cluster},{LABEL_TOMBSTONE}=true");
    let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else {
        return;
    };
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    for map in list.items {
        let old = map
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| now - t.0.as_second() > TOMBSTONE_KEEP_S);
        if let (true, Some(name)) = (old, map.metadata.name.as_deref()) {
            let _ = api.delete(name, &DeleteParams::default()).await;
        }
    }
}

impl WorkerProvider for KubernetesProvider {
    /// A pod uploads its own files (`uploads.rs`): this reads what its collect container
    /// reported; the blob is on the node that received it, not at `request.dest`.
    async fn collect_artifacts(
        &self,
        worker: &str,
        request: &crate::ArtifactRequest,
    ) -> Result<crate::artifact_archive::Packed, ProviderError> {
        let c = self.connected().await?;
        let pod = self
            .pod(c, worker)
            .await?
            .ok_or_else(|| ProviderError::Rejected(format!("the pod of {worker} is gone with its files")))?;
        pod::collected(&pod, request.purpose)
    }

    async fn create(&self, spec: &WorkerSpec) -> Result<String, ProviderError> {
        let c = self.connected().await?;
        let worker = spec.name();
        let buried = || {
            ProviderError::Rejected(format!(
                "worker {worker} was removed before; an attempt never runs twice"
            ))
        };
        if self.is_buried(c, &worker).await? {
            return Err(buried());
        }
        let pod = self.template().build(spec)?;
        // The Secret first: the pod's container reads it as it starts.
        if let Some(secret) = self.template().secret(spec) {
            self.create_secret(c, &secret).await?;
        }
        let name = self.pod_name(&worker);
        let uid = match c.pods.create(&PostParams::default(), &pod).await {
            Ok(p) => p.metadata.uid.unwrap_or_else(|| name.clone()),
            // Created before, by this leader or an earlier one: adopt it as it is.
            Err(e) if status_of(&e) == Some(409) => {
                let existing = c.pods.get_opt(&name).await.map_err(api_error)?;
                let labels = existing.as_ref().and_then(|p| p.metadata.labels.as_ref());
                spec.refuse_foreign(labels.and_then(|l| l.get(LABEL_CLUSTER_ID)).map(String::as_str))?;
                return Ok(existing.and_then(|p| p.metadata.uid).unwrap_or(name));
            }
            Err(e) if matches!(status_of(&e), Some(400 | 422)) => {
                return Err(ProviderError::Rejected(format!("kubernetes refused pod {name}: {e}")));
            }
            Err(e) => return Err(api_error(e)),
        };
        // A removal that buried the name while the pod was being created is seen here.
        if self.is_buried(c, &worker).await? {
            self.delete_pod(c, &worker).await?;
            self.delete_secret(c, &worker).await?;
            return Err(buried());
        }
        Ok(uid)
    }

    async fn observe(&self, worker: &str) -> Result<Observation, ProviderError> {
        let c = self.connected().await?;
        let Some(pod) = self.pod(c, worker).await? else {
            self.forget(worker);
            return Ok(Observation::default());
        };
        let view = PodView::of(&pod);
        let mut o = Observation {
            exists: true,
            started: view.started,
            ..Observation::default()
        };
        if let Some(reason) = view.lost {
            tracing::info!(worker, %reason, "kubernetes worker lost");
            o.lost = true;
            o.lost_reason = Some(reason);
            return Ok(o);
        }
        if !view.started {
            return Ok(o);
        }
        if let Err(e) = self.output(c, worker, nonce_of(&pod)).observe(&mut o, view.exit_code) {
            // Follow again from the start at the next observation.
            self.forget(worker);
            return Err(ProviderError::Unavailable(format!(
                "kubernetes log stream of {worker} broke: {e}"
            )));
        }
        Ok(o)
    }

    async fn read_output(&self, worker: &str, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        let c = self.connected().await?;
        let output = {
            let existing = self.outputs.lock().expect("outputs lock").get(worker).cloned();
            match existing {
                Some(o) => o,
                None => {
                    let pod = self
                        .pod(c, worker)
                        .await?
                        .ok_or_else(|| ProviderError::Unavailable(format!("pod of {worker} is gone")))?;
                    self.output(c, worker, nonce_of(&pod))
                }
            }
        };
        output.read(offset, max_bytes).inspect_err(|_| self.forget(worker))
    }

    async fn terminate(&self, worker: &str) -> Result<bool, ProviderError> {
        let c = self.connected().await?;
        let Some(pod) = self.pod(c, worker).await? else {
            return Ok(true);
        };
        let view = PodView::of(&pod);
        if view.exit_code.is_some() || view.lost.is_some() {
            return Ok(true);
        }
        if pod.metadata.deletion_timestamp.is_none() {
            self.delete_pod(c, worker).await?;
        }
        Ok(false)
    }

    async fn remove(&self, worker: &str) -> Result<(), ProviderError> {
        let c = self.connected().await?;
        self.bury(c, worker).await?;
        self.forget(worker);
        self.delete_pod(c, worker).await?;
        // The Secret goes with its pod (an attempt without secrets has none: a 404).
        self.delete_secret(c, worker).await
    }

    async fn list(&self) -> Result<Vec<ListedWorker>, ProviderError> {
        let c = self.connected().await?;
        let selector = format!("{LABEL_CLUSTER}={}", self.config.cluster);
        let pods = c
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_error)?;
        let mut listed: Vec<ListedWorker> = pods
            .items
            .into_iter()
            .filter_map(|p| ListedWorker::from_labels(p.metadata.labels?))
            .collect();
        listed.sort();
        Ok(listed)
    }

    fn measures_capacity(&self) -> bool {
        true
    }

    async fn capacity(&self, pool: &PoolSpec) -> Result<Option<Resources>, ProviderError> {
        if pool.provider != ProviderKind::Kubernetes {
            return Ok(None);
        }
        let refresh = Duration::from_millis(self.config.capacity_refresh_ms);
        if let Some((at, measured)) = self
            .capacities
            .lock()
            .expect("capacities lock")
            .get(&pool.name)
            .copied()
            && at.elapsed() < refresh
        {
            return Ok(Some(measured));
        }
        let c = self.connected().await?;
        let selector: Vec<String> = node_selector(&pool.settings)?
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let nodes = c
            .nodes
            .list(&ListParams::default().labels(&selector.join(",")))
            .await
            .map_err(api_error)?;
        let busy = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        let pods = c.all_pods.list(&busy).await.map_err(api_error)?;
        let measured = pool_capacity(&nodes.items, &pods.items, &self.config.cluster);
        self.capacities
            .lock()
            .expect("capacities lock")
            .insert(pool.name.clone(), (Instant::now(), measured));
        Ok(Some(measured))
    }
}
