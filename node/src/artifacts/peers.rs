//! Artifact blobs between nodes, over the node-to-node gRPC port (mutual TLS, the same
//! admission as Raft's messages): `replicate` pushes a new blob to every other member before
//! its record is proposed, `fetch` brings a blob this node lacks from a member that holds it
//! (a node that was down, or joined, when the blob was made). The server half is in
//! `raft/service.rs`, the same checks on both sides: the receiver keeps nothing whose bytes
//! are not what the name says.

use super::blob_store::{BlobError, BlobStore};
use super::receive::receive_checked;
use crate::Raft;
use crate::identity::{Identity, Incarnation};
use crate::raft::addressing::address;
use crate::raft::network::Channels;
use crate::raft::pb::BlobChunk;
use flotilla_raft_store::NodeAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;

/// Bytes of blob per gRPC message.
pub const BLOB_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest blob a node receives from a peer (the ceiling of the per-job limit).
pub const MAX_BLOB_BYTES: u64 = flotilla_state_machine::Limits::CEILING.max_artifact_bytes_per_job;
/// Time a copy gets beyond what its size needs at `COPY_BYTES_PER_S`.
const COPY_BASE_TIMEOUT: Duration = Duration::from_secs(30);
/// The slowest transfer a copy is given time for.
const COPY_BYTES_PER_S: u64 = 8 * 1024 * 1024;

/// How long copying `size_bytes` may take.
pub fn copy_timeout(size_bytes: u64) -> Duration {
    COPY_BASE_TIMEOUT + Duration::from_secs(size_bytes / COPY_BYTES_PER_S)
}

pub struct BlobPeers {
    pub node_id: u64,
    pub raft: Raft,
    pub channels: Channels,
    pub identity: Identity,
    pub store: Arc<BlobStore>,
    /// The bucket blobs go to under `--artifact-store`: then it, not a majority of the
    /// nodes, holds the copy that counts, and a node lacking a blob downloads it from there.
    pub object: Option<Arc<super::ObjectBlobs>>,
    /// The pace of the copies this node sends (`--blob-copy-mib-per-s`), shared with the
    /// fetches it serves.
    pub throttle: Arc<super::CopyThrottle>,
}

impl BlobPeers {
    /// The other members, and how many nodes make a majority of the voters.
    fn members(&self) -> (Vec<(u64, NodeAddr)>, usize) {
        let metrics = crate::raft::metrics(&self.raft);
        let membership = metrics.membership_config.membership();
        let voters = membership.voter_ids().count();
        let others = membership
            .nodes()
            .filter(|(id, _)| **id != self.node_id)
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        (others, voters / 2 + 1)
    }

    /// Copies blob `digest` (held here) to every other member at once; returns how many nodes
    /// hold it now, this one included, and how many make a majority.
    /// With an object store, the blob is uploaded there instead, and counts as held by a
    /// majority once the upload completed.
    pub async fn replicate(&self, digest: &str) -> Result<(usize, usize), BlobError> {
        let path = self.store.path(digest)?;
        let size_bytes = tokio::fs::metadata(&path).await?.len();
        if let Some(object) = &self.object {
            return match tokio::time::timeout(copy_timeout(size_bytes), object.put(digest, &path)).await {
                Ok(Ok(())) => Ok((1, 1)),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(BlobError::Io(std::io::Error::other(format!(
                    "uploading the blob to {} timed out",
                    object.url()
                )))),
            };
        }
        let (others, majority) = self.members();
        let copies = futures::future::join_all(others.iter().map(|(id, node)| async move {
            match tokio::time::timeout(copy_timeout(size_bytes), self.push(*id, node, digest)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(node = id, digest, error = %e, "copying an artifact to a peer");
                    false
                }
                Err(_) => {
                    tracing::warn!(node = id, digest, "copying an artifact to a peer timed out");
                    false
                }
            }
        }))
        .await;
        Ok((1 + copies.into_iter().filter(|ok| *ok).count(), majority))
    }

    /// Sends blob `digest` to member `id`, checked as it is read: a blob damaged on this disk
    /// is cut short (the receiver keeps nothing) instead of being sent whole.
    async fn push(&self, id: u64, node: &NodeAddr, digest: &str) -> Result<(), String> {
        let mut client = self.channels.client(id, &node.raft_addr)?;
        let chunks =
            super::send::read_checked(self.store.clone(), digest, BLOB_CHUNK_BYTES).map_err(|e| e.to_string())?;
        let chunks = super::throttle::paced(self.throttle.clone(), chunks);
        let failed = Arc::new(std::sync::OnceLock::<String>::new());
        let mut name = Some(digest.to_string());
        let stream = {
            let failed = failed.clone();
            // The first message names the blob; a read error ends the stream early.
            chunks.map_while(move |chunk| match chunk {
                Ok(data) => Some(BlobChunk {
                    digest: name.take().unwrap_or_default(),
                    data,
                }),
                Err(e) => {
                    let _ = failed.set(e.to_string());
                    None
                }
            })
        };
        let mut request = tonic::Request::new(stream);
        address(
            &mut request,
            self.identity.cluster_id().as_deref(),
            Incarnation(node.incarnation),
        );
        let sent = client.put_blob(request).await;
        if let Some(e) = failed.get() {
            return Err(e.clone());
        }
        sent.map(|_| ()).map_err(|s| s.message().to_string())
    }

    /// Brings blob `digest` from the first member that holds it whole; returns its path here.
    pub async fn fetch(&self, digest: &str) -> Result<PathBuf, BlobError> {
        if self.store.has(digest) {
            return self.store.path(digest);
        }
        if let Some(object) = &self.object {
            return object.get(digest, &self.store).await;
        }
        let (others, _) = self.members();
        let mut last = BlobError::Missing(digest.to_string());
        for (id, node) in &others {
            match self.fetch_from(*id, node, digest).await {
                Ok(path) => return Ok(path),
                Err(e) => {
                    tracing::debug!(node = id, digest, error = %e, "fetching an artifact from a peer");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn fetch_from(&self, id: u64, node: &NodeAddr, digest: &str) -> Result<PathBuf, BlobError> {
        let unreachable = |e: String| BlobError::Io(std::io::Error::other(format!("node {id}: {e}")));
        let mut client = self.channels.client(id, &node.raft_addr).map_err(unreachable)?;
        let mut request = tonic::Request::new(BlobChunk {
            digest: digest.to_string(),
            data: Vec::new(),
        });
        request.set_timeout(copy_timeout(MAX_BLOB_BYTES));
        address(
            &mut request,
            self.identity.cluster_id().as_deref(),
            Incarnation(node.incarnation),
        );
        let stream = match client.get_blob(request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::NotFound => return Err(BlobError::Missing(digest.to_string())),
            Err(s) => return Err(unreachable(s.message().to_string())),
        };
        let chunks = stream.map(|chunk| chunk.map(|c| c.data).map_err(|s| unreachable(s.message().to_string())));
        receive_checked(&self.store, digest, chunks, MAX_BLOB_BYTES).await
    }
}
