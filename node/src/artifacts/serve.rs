//! The server half of blob copies between nodes (`PutBlob`, `GetBlob` in
//! `proto/raft.proto`): a blob received is kept only if its bytes match its name, and a blob
//! sent is checked as it is read, the stream ending in an error instead of its last chunk if
//! the copy on this disk is damaged (which is then removed).

use super::blob_store::{BlobError, BlobStore};
use super::peers::{BLOB_CHUNK_BYTES, MAX_BLOB_BYTES};
use super::receive::receive_checked;
use super::send::read_checked;
use super::throttle::{CopyThrottle, paced};
use crate::raft::pb::BlobChunk;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

fn status(e: BlobError) -> Status {
    match e {
        BlobError::BadName(_) => Status::invalid_argument(e.to_string()),
        BlobError::Missing(_) => Status::not_found(e.to_string()),
        BlobError::DigestMismatch { .. } => Status::data_loss(e.to_string()),
        BlobError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
        BlobError::Io(_) => Status::internal(e.to_string()),
    }
}

/// Receives one blob from a peer's `PutBlob` stream into the store (`receive_checked`: off
/// the runtime, at a lower priority, checked as it is written).
pub async fn receive(store: Arc<BlobStore>, mut stream: Streaming<BlobChunk>) -> Result<(), Status> {
    let first = stream
        .next()
        .await
        .ok_or_else(|| Status::invalid_argument("empty blob stream"))??;
    let digest = first.digest.clone();
    let rest = stream.map(|chunk| {
        chunk
            .map(|c| c.data)
            .map_err(|s| BlobError::Io(std::io::Error::other(s.message().to_string())))
    });
    let chunks = futures::stream::iter([Ok(first.data)]).chain(rest);
    match receive_checked(&store, &digest, chunks, MAX_BLOB_BYTES).await {
        Ok(_) => Ok(()),
        Err(e @ (BlobError::BadName(_) | BlobError::DigestMismatch { .. } | BlobError::TooLarge { .. })) => {
            Err(status(e))
        }
        Err(e) => Err(Status::aborted(format!("receiving blob {digest}: {e}"))),
    }
}

/// The chunks of a blob on their way to a peer.
pub type BlobStream = std::pin::Pin<Box<dyn Stream<Item = Result<BlobChunk, Status>> + Send>>;

/// Streams blob `digest` to a peer, checking it as it is read (`read_checked`), at the pace
/// of this node's copies.
pub fn send(store: Arc<BlobStore>, digest: &str, throttle: Arc<CopyThrottle>) -> Result<BlobStream, Status> {
    let chunks = read_checked(store, digest, BLOB_CHUNK_BYTES).map_err(status)?;
    Ok(Box::pin(paced(throttle, chunks).map(|chunk| {
        chunk
            .map(|data| BlobChunk {
                digest: String::new(),
                data,
            })
            .map_err(status)
    })))
}
