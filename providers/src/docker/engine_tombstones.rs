//! Names of removed containers, remembered in the engine itself: one empty volume
//! `<cluster>-removed-<worker>` per removed worker, labelled with the cluster and the time of
//! removal. What `tombstones.rs` does with files, for an engine that nodes on several hosts
//! share (a `tcp://` endpoint): whichever node removed a worker, a deposed leader anywhere sees
//! the tombstone before it would start the attempt again. Volumes need no image and cost the
//! engine a directory each; those older than `keep_ms` are pruned.

use super::status_of;
use crate::provider::{LABEL_CLUSTER, LABEL_TOMBSTONE, LABEL_WORKER, ProviderError};
use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};
use std::collections::HashMap;

/// Label holding the removal time, in milliseconds since the Unix epoch.
pub const LABEL_REMOVED_AT_MS: &str = "flotilla.removed-at-ms";

#[derive(Clone, Debug)]
pub struct EngineTombstones {
    cluster: String,
    keep_ms: u64,
}

fn unavailable(what: &str, e: bollard::errors::Error) -> ProviderError {
    ProviderError::Unavailable(format!("docker tombstone {what}: {e}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl EngineTombstones {
    pub fn new(cluster: impl Into<String>, keep_ms: u64) -> Self {
        EngineTombstones {
            cluster: cluster.into(),
            keep_ms,
        }
    }

    pub fn volume_name(&self, worker: &str) -> String {
        format!("{}-removed-{worker}", self.cluster)
    }

    /// Records that `worker` is removed for good. Called before its container is deleted;
    /// creating a volume that exists is a no-op.
    pub async fn bury(&self, docker: &Docker, worker: &str) -> Result<(), ProviderError> {
        let labels = HashMap::from([
            (LABEL_CLUSTER.to_string(), self.cluster.clone()),
            (LABEL_TOMBSTONE.to_string(), "true".to_string()),
            (LABEL_WORKER.to_string(), worker.to_string()),
            (LABEL_REMOVED_AT_MS.to_string(), now_ms().to_string()),
        ]);
        let request = VolumeCreateRequest {
            name: Some(self.volume_name(worker)),
            labels: Some(labels),
            ..Default::default()
        };
        docker
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(|e| unavailable("create", e))
    }

    pub async fn is_buried(&self, docker: &Docker, worker: &str) -> Result<bool, ProviderError> {
        match docker.inspect_volume(&self.volume_name(worker)).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(unavailable("lookup", e)),
        }
    }

    /// Deletes this cluster's tombstones older than `keep_ms` (the attempts they guard are
    /// long settled by then). Best effort: a failure leaves them for the next prune.
    pub async fn prune(&self, docker: &Docker) {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_CLUSTER}={}", self.cluster),
                format!("{LABEL_TOMBSTONE}=true"),
            ],
        )]);
        let options = ListVolumesOptions { filters: Some(filters) };
        let Ok(list) = docker.list_volumes(Some(options)).await else {
            return;
        };
        let now = now_ms();
        for volume in list.volumes.unwrap_or_default() {
            let removed_at_ms = volume
                .labels
                .get(LABEL_REMOVED_AT_MS)
                .and_then(|t| t.parse::<u64>().ok());
            if removed_at_ms.is_some_and(|t| now.saturating_sub(t) > self.keep_ms) {
                let _ = docker.remove_volume(&volume.name, None::<RemoveVolumeOptions>).await;
            }
        }
    }
}
