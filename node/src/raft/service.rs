//! The server half of node-to-node gRPC: hands Raft RPCs to the local openraft instance,
//! receives snapshots into a file, and applies writes forwarded by followers.

use crate::Raft;
use crate::identity::Identity;
use crate::raft::addressing::{Addressed, Admission, admit};
use crate::raft::network::{from_blob, to_blob};
use crate::raft::pb::raft_service_server::RaftService;
use crate::raft::pb::{Blob, BlobChunk, SnapshotChunk};
use crate::raft::peer_certificate::admit_peer;
use crate::raft::proposer::{ForwardResult, ProposeError, Proposer};
use flotilla_raft_store::{SnapshotFile, SnapshotMeta, TypeConfig, Vote, decode};
use flotilla_state_machine::Proposal;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

pub struct RaftGrpc {
    pub node_id: u64,
    pub raft: Raft,
    pub proposer: Proposer,
    /// Checked against every request's address before it is decoded (`addressing.rs`).
    pub identity: Identity,
    /// Mutual TLS is on: every request's certificate must name a member
    /// (`peer_certificate.rs`).
    pub peers_by_certificate: bool,
    /// When a refusal was last logged, in ms since the epoch: a wiped node hears its old
    /// cluster's heartbeats several times a second and says why it refuses them once a minute.
    pub last_refusal_logged_ms: AtomicU64,
    /// Where incoming snapshots are written before they are installed.
    pub incoming_dir: PathBuf,
    pub next_incoming: AtomicU64,
    /// Gaps between a leader's messages, for `/metrics`.
    pub leader_contact: std::sync::Arc<crate::raft::leader_contact::LeaderContact>,
    /// Artifact blobs peers put here and get from here (`artifacts/peers.rs`).
    pub blobs: std::sync::Arc<crate::artifacts::BlobStore>,
    /// The pace of the blob copies this node sends (`--blob-copy-mib-per-s`).
    pub blob_throttle: std::sync::Arc<crate::artifacts::CopyThrottle>,
}

/// Least time between two logged refusals.
const REFUSAL_LOG_INTERVAL_MS: u64 = 60_000;

impl RaftGrpc {
    /// Admits a request from a member's certificate (under mutual TLS), addressed to this
    /// node's incarnation in its cluster; learns the cluster id (durably) from the first
    /// admitted request of a new member.
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.peers_by_certificate {
            let certificate = request
                .peer_certs()
                .map(|chain| chain.first().and_then(flotilla_pki::peer_node_id));
            let members: BTreeSet<u64> = {
                use openraft::async_runtime::WatchReceiver;
                let metrics = self.raft.metrics();
                let metrics = metrics.borrow_watched();
                metrics
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect()
            };
            if let Err(refusal) = admit_peer(certificate, &members) {
                self.log_refusal(&refusal.to_string());
                return Err(Status::permission_denied(refusal.to_string()));
            }
        }
        let addressed = Addressed::read(request.metadata());
        let own_cluster = self.identity.cluster_id();
        match admit(
            self.node_id,
            self.identity.incarnation(),
            own_cluster.as_deref(),
            &addressed,
        ) {
            Admission::Admit => Ok(()),
            Admission::AdmitAndJoin(cluster_id) => {
                self.identity
                    .join_cluster(&cluster_id)
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                tracing::info!(cluster_id, "this node now belongs to the cluster that added it");
                Ok(())
            }
            Admission::Refuse(refusal) => {
                self.log_refusal(&refusal.to_string());
                Err(Status::failed_precondition(refusal.to_string()))
            }
        }
    }

    /// Logs why a request was refused, once a minute at most.
    fn log_refusal(&self, reason: &str) {
        let now_ms = crate::raft::proposer::wall_clock_ms();
        let last = self.last_refusal_logged_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= REFUSAL_LOG_INTERVAL_MS
            && self
                .last_refusal_logged_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(reason, "refused a peer's request");
        }
    }
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    type GetBlobStream = crate::artifacts::serve::BlobStream;

    async fn put_blob(&self, request: Request<Streaming<BlobChunk>>) -> Result<Response<Blob>, Status> {
        self.admit(&request)?;
        crate::artifacts::serve::receive(self.blobs.clone(), request.into_inner()).await?;
        Ok(Response::new(Blob { data: Vec::new() }))
    }

    async fn get_blob(&self, request: Request<BlobChunk>) -> Result<Response<Self::GetBlobStream>, Status> {
        self.admit(&request)?;
        let stream = crate::artifacts::serve::send(
            self.blobs.clone(),
            &request.get_ref().digest,
            self.blob_throttle.clone(),
        )?;
        Ok(Response::new(stream))
    }

    async fn append_entries(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.admit(&request)?;
        let rpc: AppendEntriesRequest<TypeConfig> = from_blob(request.get_ref())?;
        self.leader_contact.heard(rpc.vote);
        let result = self.raft.append_entries(rpc).await.map_err(|e| e.to_string());
        Ok(Response::new(to_blob(&result)?))
    }

    async fn vote(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.admit(&request)?;
        let rpc: VoteRequest<TypeConfig> = from_blob(request.get_ref())?;
        let result = self.raft.vote(rpc).await.map_err(|e| e.to_string());
        Ok(Response::new(to_blob(&result)?))
    }

    async fn pre_vote(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.admit(&request)?;
        let rpc: VoteRequest<TypeConfig> = from_blob(request.get_ref())?;
        let result = self.raft.pre_vote(rpc).await.map_err(|e| e.to_string());
        Ok(Response::new(to_blob(&result)?))
    }

    async fn install_snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<Blob>, Status> {
        self.admit(&request)?;
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
        let (vote, meta): (Vote, SnapshotMeta) =
            decode(&first.header).map_err(|e| Status::invalid_argument(format!("snapshot header: {e}")))?;
        let n = self.next_incoming.fetch_add(1, Ordering::Relaxed);
        // Removed when this function returns, whether the stream completed or broke off: the
        // store keeps its own copy of an installed snapshot.
        let part = PartFile(self.incoming_dir.join(format!("snapshot-{n}.part")));
        let mut file = tokio::fs::File::create(&part.0)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut received = first.data.len() as u64;
        file.write_all(&first.data)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        while let Some(chunk) = stream.next().await {
            let data = chunk?.data;
            received = received.saturating_add(data.len() as u64);
            if received > MAX_SNAPSHOT_BYTES {
                return Err(Status::resource_exhausted(format!(
                    "snapshot larger than {MAX_SNAPSHOT_BYTES} bytes"
                )));
            }
            file.write_all(&data)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        file.sync_all().await.map_err(|e| Status::internal(e.to_string()))?;
        drop(file);
        // The open descriptor keeps the data readable after the file is removed.
        let snapshot_file = SnapshotFile::open(&part.0).map_err(|e| Status::internal(e.to_string()))?;
        drop(part);
        let snapshot = openraft::storage::Snapshot {
            meta,
            snapshot: snapshot_file,
        };
        let result = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| e.to_string());
        Ok(Response::new(to_blob(&result)?))
    }

    async fn transfer_leader(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.admit(&request)?;
        let req: TransferLeaderRequest<TypeConfig> = from_blob(request.get_ref())?;
        let result = self.raft.handle_transfer_leader(req).await.map_err(|e| e.to_string());
        Ok(Response::new(to_blob(&result)?))
    }

    async fn forward(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.admit(&request)?;
        let proposal: Proposal = from_blob(request.get_ref())?;
        // Only what a client may ask for travels as a forward (see `is_client_request`); the
        // rest is applied here or refused with a hint, never forwarded again (no loops).
        let result: ForwardResult = match crate::raft::proposer::check_entry_size(&proposal) {
            Err(e) => Err(e),
            Ok(()) if !forwardable(&proposal.command) => Err(ProposeError::NotForwardable {
                kind: proposal.command.kind().to_string(),
            }),
            Ok(()) => self.proposer.commit_here(proposal).await,
        };
        Ok(Response::new(to_blob(&result)?))
    }

    async fn read_index(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        self.admit(&request)?;
        let result: Result<u64, ProposeError> = if self.raft.is_leader() {
            self.proposer.read_index_local().await
        } else {
            Err(ProposeError::NoLeader("asked node is not the leader".into()))
        };
        Ok(Response::new(to_blob(&result)?))
    }
}

/// Largest snapshot a node receives: a peer cannot fill the disk with one endless stream.
pub const MAX_SNAPSHOT_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// A snapshot file being received, removed when dropped.
struct PartFile(std::path::PathBuf);

impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a forward may carry `command`: a client's request, or a batch of nothing else
/// (no batch is forwarded today, and none of anything else ever may be).
fn forwardable(command: &flotilla_state_machine::Command) -> bool {
    match command {
        flotilla_state_machine::Command::Batch { commands } => !commands.is_empty() && commands.iter().all(forwardable),
        other => other.is_client_request(),
    }
}

#[cfg(test)]
mod tests {
    use super::forwardable;
    use flotilla_state_machine::{Command, Limits};

    #[test]
    fn only_client_requests_travel_as_forwards() {
        let cancel = Command::CancelJob {
            job: flotilla_state_machine::JobId(1),
        };
        assert!(forwardable(&cancel));
        let limits = Command::UpdateLimits {
            limits: Limits::default(),
        };
        let plan = Command::ApplyPlan { placements: vec![] };
        assert!(!forwardable(&limits) && !forwardable(&plan));
        let batch = |commands| Command::Batch { commands };
        assert!(forwardable(&batch(vec![cancel.clone()])));
        assert!(!forwardable(&batch(vec![cancel, limits])));
        assert!(!forwardable(&batch(vec![])));
    }
}
