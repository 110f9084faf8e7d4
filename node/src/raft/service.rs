//! The server half of node-to-node gRPC: hands Raft RPCs to the local openraft instance,
//! receives snapshots into a file, and applies writes forwarded by followers.

use crate::Raft;
use crate::raft::network::{from_blob, to_blob};
use crate::raft::pb::raft_service_server::RaftService;
use crate::raft::pb::{Blob, SnapshotChunk};
use crate::raft::proposer::{ForwardResult, ProposeError, Proposer};
use flotilla_raft_store::{SnapshotFile, SnapshotMeta, TypeConfig, Vote, decode};
use flotilla_state_machine::Proposal;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

pub struct RaftGrpc {
    pub raft: Raft,
    pub proposer: Proposer,
    /// Where incoming snapshots are written before they are installed.
    pub incoming_dir: PathBuf,
    pub next_incoming: AtomicU64,
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = from_blob(request.get_ref())?;
        let result = self.raft.append_entries(rpc).await.map_err(|e| e.to_string());
        Ok(Response::new(to_blob(&result)?))
    }

    async fn vote(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: VoteRequest<TypeConfig> = from_blob(request.get_ref())?;
        let result = self.raft.vote(rpc).await.map_err(|e| e.to_string());
        Ok(Response::new(to_blob(&result)?))
    }

    async fn install_snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<Blob>, Status> {
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
        let req: TransferLeaderRequest<TypeConfig> = from_blob(request.get_ref())?;
        let result = self.raft.handle_transfer_leader(req).await.map_err(|e| e.to_string());
        Ok(Response::new(to_blob(&result)?))
    }

    async fn forward(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        let proposal: Proposal = from_blob(request.get_ref())?;
        // Applied here or refused with a hint; never forwarded again (no forwarding loops).
        let result: ForwardResult = self.proposer.commit_here(proposal).await;
        Ok(Response::new(to_blob(&result)?))
    }

    async fn read_index(&self, _request: Request<Blob>) -> Result<Response<Blob>, Status> {
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
