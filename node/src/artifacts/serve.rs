//! The server half of blob copies between nodes (`PutBlob`, `GetBlob` in
//! `proto/raft.proto`): a blob received is kept only if its bytes match its name, and a blob
//! sent is checked as it is read, the stream ending in an error instead of its last chunk if
//! the copy on this disk is damaged (which is then removed).

use super::blob_store::{BlobError, BlobStore, send_checked};
use super::peers::{BLOB_CHUNK_BYTES, MAX_BLOB_BYTES};
use crate::raft::pb::BlobChunk;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

fn status(e: BlobError) -> Status {
    match e {
        BlobError::BadName(_) => Status::invalid_argument(e.to_string()),
        BlobError::Missing(_) => Status::not_found(e.to_string()),
        BlobError::DigestMismatch { .. } => Status::data_loss(e.to_string()),
        BlobError::Io(_) => Status::internal(e.to_string()),
    }
}

/// Receives one blob from a peer's `PutBlob` stream into the store.
pub async fn receive(store: Arc<BlobStore>, mut stream: Streaming<BlobChunk>) -> Result<(), Status> {
    let first = stream
        .next()
        .await
        .ok_or_else(|| Status::invalid_argument("empty blob stream"))??;
    let digest = first.digest.clone();
    store.path(&digest).map_err(status)?;
    if store.has(&digest) {
        return Ok(());
    }
    let tmp = store.temp_path("put");
    let written = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut bytes = first.data.len() as u64;
        file.write_all(&first.data).await?;
        while let Some(chunk) = stream.next().await {
            let data = chunk.map_err(|s| std::io::Error::other(s.message().to_string()))?.data;
            bytes = bytes.saturating_add(data.len() as u64);
            if bytes > MAX_BLOB_BYTES {
                return Err(std::io::Error::other(format!(
                    "blob larger than {MAX_BLOB_BYTES} bytes"
                )));
            }
            file.write_all(&data).await?;
        }
        file.flush().await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(Status::aborted(format!("receiving blob {digest}: {e}")));
    }
    // Hashing a large file is blocking work.
    let adopted = tokio::task::spawn_blocking(move || store.adopt(&tmp, &digest))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    adopted.map(|_| ()).map_err(status)
}

/// Streams blob `digest` to a peer, checking it as it is read (`send_checked`).
pub fn send(
    store: Arc<BlobStore>,
    digest: &str,
) -> Result<tokio_stream::wrappers::ReceiverStream<Result<BlobChunk, Status>>, Status> {
    let (file, check) = store.open_checked(digest).map_err(status)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let digest = digest.to_string();
    tokio::task::spawn_blocking(move || {
        send_checked(file, check, &store, &digest, BLOB_CHUNK_BYTES, |chunk| {
            let chunk = chunk
                .map(|data| BlobChunk {
                    digest: String::new(),
                    data,
                })
                .map_err(status);
            tx.blocking_send(chunk).is_ok()
        })
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}
