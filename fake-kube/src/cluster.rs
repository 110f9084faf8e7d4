//! The fake API server's objects and their watch history.

use crate::FakeKubeConfig;
use k8s_openapi::api::core::v1::{ConfigMap, Node, NodeStatus, Pod, PodSpec, PodStatus, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::watch;

/// A node of the simulated cluster.
#[derive(Clone, Debug, Default)]
pub struct NodeSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Allocatable resources as Kubernetes quantities: `cpu`, `memory`, `nvidia.com/gpu`.
    pub allocatable: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Pod,
    ConfigMap,
}

/// One change, as a watch sends it.
pub(crate) struct WatchRecord {
    pub rv: u64,
    pub kind: Kind,
    pub namespace: String,
    pub event_type: &'static str,
    pub object: Value,
    pub labels: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
}

/// A container's combined stdout and stderr, growing while it runs.
#[derive(Default)]
pub(crate) struct LogBuffer {
    pub data: std::sync::Mutex<(Vec<u8>, bool)>,
    pub changed: tokio::sync::Notify,
}

impl LogBuffer {
    pub fn push(&self, bytes: &[u8]) {
        self.data.lock().expect("log lock").0.extend_from_slice(bytes);
        self.changed.notify_waiters();
    }

    pub fn close(&self) {
        self.data.lock().expect("log lock").1 = true;
        self.changed.notify_waiters();
    }
}

pub(crate) struct PodRecord {
    pub pod: Pod,
    pub log: Arc<LogBuffer>,
    /// Process group of the running container.
    pub pgid: Option<u32>,
    /// Process groups of the pod's other containers (sidecars), running beside the first.
    pub sidecars: Vec<u32>,
    pub started: bool,
    pub exited: bool,
    pub evicted: bool,
    pub _workdir: Option<tempfile::TempDir>,
    /// The pod's directory (its volumes under `volumes/<name>`), once the kubelet made it.
    pub root: Option<std::path::PathBuf>,
    /// What each init container printed, in order, kept after it ended.
    pub init_logs: Vec<Arc<LogBuffer>>,
}

pub struct Cluster {
    pub(crate) config: FakeKubeConfig,
    rv: u64,
    pub(crate) pods: BTreeMap<(String, String), PodRecord>,
    pub(crate) config_maps: BTreeMap<(String, String), ConfigMap>,
    /// Secrets by namespace and name (not watched: nothing the provider follows).
    pub(crate) secrets: BTreeMap<(String, String), Secret>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) history: VecDeque<WatchRecord>,
    /// Watches from a version below this get 410 Gone.
    pub(crate) compacted_through: u64,
    pub(crate) changed: watch::Sender<u64>,
    pods_created: u64,
    pub(crate) lists: u64,
    pub(crate) watches: u64,
    pub(crate) gets: u64,
}

impl Cluster {
    pub(crate) fn new(config: FakeKubeConfig) -> std::io::Result<Cluster> {
        Ok(Cluster {
            config,
            rv: 1,
            pods: BTreeMap::new(),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
            nodes: Vec::new(),
            history: VecDeque::new(),
            compacted_through: 0,
            changed: watch::channel(1).0,
            pods_created: 0,
            lists: 0,
            watches: 0,
            gets: 0,
        })
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Bumps the resource version, stamps `meta` with it and records the change for watches.
    pub(crate) fn record(
        &mut self,
        kind: Kind,
        event_type: &'static str,
        namespace: &str,
        meta: &mut ObjectMeta,
        object: impl FnOnce(&ObjectMeta) -> Value,
        fields: BTreeMap<String, String>,
    ) {
        self.rv += 1;
        meta.resource_version = Some(self.rv.to_string());
        let labels = meta.labels.clone().unwrap_or_default();
        let object = object(meta);
        self.history.push_back(WatchRecord {
            rv: self.rv,
            kind,
            namespace: namespace.to_string(),
            event_type,
            object,
            labels,
            fields,
        });
        while self.history.len() > self.config.history_events {
            let dropped = self.history.pop_front().expect("non-empty history");
            self.compacted_through = dropped.rv;
        }
        self.changed.send_replace(self.rv);
    }

    pub(crate) fn record_pod(&mut self, key: &(String, String), event_type: &'static str) {
        let Some(mut pod) = self.pods.get(key).map(|r| r.pod.clone()) else {
            return;
        };
        let fields = pod_fields(&pod);
        let mut meta = std::mem::take(&mut pod.metadata);
        self.record(
            Kind::Pod,
            event_type,
            &key.0,
            &mut meta,
            |m| {
                let mut p = pod.clone();
                p.metadata = m.clone();
                serde_json::to_value(&p).expect("pod to json")
            },
            fields,
        );
        if let Some(r) = self.pods.get_mut(key) {
            r.pod.metadata = meta;
        }
    }

    pub(crate) fn count_pod_created(&mut self) {
        self.pods_created += 1;
    }

    // ---- hooks for tests ----

    pub fn add_node(&mut self, spec: NodeSpec) {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(spec.name.clone()),
                labels: Some(spec.labels.clone()),
                resource_version: Some(self.rv.to_string()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: Some(
                    spec.allocatable
                        .iter()
                        .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                        .collect(),
                ),
                capacity: Some(
                    spec.allocatable
                        .iter()
                        .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.nodes
            .retain(|n| n.metadata.name.as_deref() != Some(spec.name.as_str()));
        self.nodes.push(node);
    }

    /// A pod of someone else's, running on `node` and holding `requests` (quantities by
    /// resource name). It runs no process.
    pub fn add_foreign_pod(&mut self, namespace: &str, name: &str, node: &str, requests: BTreeMap<String, String>) {
        let container = k8s_openapi::api::core::v1::Container {
            name: "app".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(requests.into_iter().map(|(k, v)| (k, Quantity(v))).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container],
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        };
        let key = (namespace.to_string(), name.to_string());
        self.pods.insert(
            key.clone(),
            PodRecord {
                pod,
                log: Arc::default(),
                pgid: None,
                sidecars: Vec::new(),
                started: true,
                exited: false,
                evicted: false,
                _workdir: None,
                root: None,
                init_logs: Vec::new(),
            },
        );
        self.record_pod(&key, "ADDED");
    }

    /// Removes a pod that `add_foreign_pod` added (its owner deleted it).
    pub fn remove_foreign_pod(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.record_pod(&key, "DELETED");
        self.pods.remove(&key);
    }

    /// Evicts a pod as a kubelet under pressure does: its container is killed and the pod ends
    /// `Failed` with reason `Evicted`. Returns whether the pod was running.
    pub fn evict(&mut self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_string(), name.to_string());
        let Some(r) = self.pods.get_mut(&key) else { return false };
        let Some(pgid) = r.pgid.filter(|_| !r.exited) else {
            return false;
        };
        r.evicted = true;
        crate::kubelet::signal(pgid, "KILL");
        for pgid in &r.sidecars {
            crate::kubelet::signal(*pgid, "KILL");
        }
        true
    }

    /// The node stops and the control plane force-deletes its pods.
    pub fn lose_node(&mut self, node: &str) {
        self.nodes.retain(|n| n.metadata.name.as_deref() != Some(node));
        let keys: Vec<_> = self
            .pods
            .iter()
            .filter(|(_, r)| r.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if let Some(r) = self.pods.get(&key) {
                for pgid in r.pgid.iter().chain(&r.sidecars) {
                    crate::kubelet::signal(*pgid, "KILL");
                }
            }
            self.record_pod(&key, "DELETED");
            self.pods.remove(&key);
        }
    }

    /// Compacts the history as etcd does: every version before now is gone, so open watches
    /// end with a 410 `Expired` error and a watch resuming from an older version gets one too;
    /// a fresh list gives a version that can be watched from.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.history.clear();
        self.compacted_through = self.rv;
        self.changed.send_replace(self.rv);
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|r| r.pod.clone())
    }

    pub fn pod_names(&self, namespace: &str) -> Vec<String> {
        self.pods
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, n)| n.clone())
            .collect()
    }

    pub fn config_map_names(&self, namespace: &str) -> Vec<String> {
        self.config_maps
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, n)| n.clone())
            .collect()
    }

    pub fn secret_names(&self, namespace: &str) -> Vec<String> {
        self.secrets
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The value of `key` in secret `name`, as a container's `secretKeyRef` reads it.
    pub fn secret_value(&self, namespace: &str, name: &str, key: &str) -> Option<Vec<u8>> {
        let secret = self.secrets.get(&(namespace.to_string(), name.to_string()))?;
        if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
            return Some(v.0.clone());
        }
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.clone().into_bytes())
    }

    /// Pods created successfully since the start (a 409 does not count).
    pub fn pods_created(&self) -> u64 {
        self.pods_created
    }

    /// Pods whose container was started (its command run) since the start.
    /// The host directory standing for volume `volume` of a pod (an emptyDir), once the
    /// kubelet has started the pod.
    pub fn volume_dir(&self, namespace: &str, name: &str, volume: &str) -> Option<std::path::PathBuf> {
        let r = self.pods.get(&(namespace.to_string(), name.to_string()))?;
        Some(r.root.as_ref()?.join("volumes").join(volume))
    }

    /// What the pod's init containers printed so far, one after the other.
    pub fn init_log_of(&self, namespace: &str, name: &str) -> Option<Vec<u8>> {
        let r = self.pods.get(&(namespace.to_string(), name.to_string()))?;
        Some(
            r.init_logs
                .iter()
                .flat_map(|l| l.data.lock().expect("log lock").0.clone())
                .collect(),
        )
    }

    pub fn log_of(&self, namespace: &str, name: &str) -> Option<Vec<u8>> {
        self.pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|r| r.log.data.lock().expect("log lock").0.clone())
    }

    /// List requests (not watches) served, for pods, config maps and nodes.
    pub fn list_requests(&self) -> u64 {
        self.lists
    }

    /// Watch requests served.
    pub fn watch_requests(&self) -> u64 {
        self.watches
    }

    /// Single-object GET requests served.
    pub fn get_requests(&self) -> u64 {
        self.gets
    }

    pub(crate) fn kill_all(&mut self) {
        for r in self.pods.values() {
            if r.exited {
                continue;
            }
            for pgid in r.pgid.iter().chain(&r.sidecars) {
                crate::kubelet::signal(*pgid, "KILL");
            }
        }
    }
}

/// The fields a pod can be selected by.
pub(crate) fn pod_fields(pod: &Pod) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert("metadata.name".into(), pod.metadata.name.clone().unwrap_or_default());
    f.insert(
        "metadata.namespace".into(),
        pod.metadata.namespace.clone().unwrap_or_default(),
    );
    f.insert(
        "status.phase".into(),
        pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
    );
    f.insert(
        "spec.nodeName".into(),
        pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
    );
    f
}
