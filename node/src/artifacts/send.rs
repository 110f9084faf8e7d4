//! A blob leaving this node (to a peer that lacks it, to a peer it is copied to, in an API
//! download) read from the store, past the page cache where the disk allows (`direct_io`),
//! and checked as it goes, on a thread of its own at a lower CPU priority (`background`), as
//! a blob arriving is written (`receive.rs`): reading and hashing a gigabyte yields to the
//! node's Raft and API work, and the reader waits for the consumer through the channel's
//! bound.

use super::blob_store::{BlobError, BlobStore, DigestCheck};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;

/// Chunks read ahead of the consumer.
pub const CHUNKS_READ_AHEAD: usize = 4;

/// Blob `digest`'s bytes in chunks of `chunk_bytes`, checked as they are read: a damaged
/// blob ends in its error instead of its last chunk (and is removed from `store`). Missing
/// or unreadable: the error at once.
pub fn read_checked(
    store: Arc<BlobStore>,
    digest: &str,
    chunk_bytes: usize,
) -> Result<ReceiverStream<Result<Vec<u8>, BlobError>>, BlobError> {
    let (file, check) = store.open_checked(digest)?;
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_READ_AHEAD);
    let digest = digest.to_string();
    tokio::spawn(flotilla_providers::background::run_in_background(
        "blob-send",
        move || {
            send_checked(file, check, &store, &digest, chunk_bytes, |chunk| {
                tx.blocking_send(chunk).is_ok()
            })
        },
    ));
    Ok(ReceiverStream::new(rx))
}

/// Reads an open blob (`BlobStore::open_checked`) in chunks of `chunk_bytes` and hands each to
/// `emit`, which answers whether to go on (its reader may have gone). The digest is checked
/// on the way and the last chunk held back until it matched: a damaged blob is removed from
/// `store` and ends with its error instead, so no reader ever gets it whole. Blocking.
fn send_checked(
    file: std::fs::File,
    mut check: DigestCheck,
    store: &BlobStore,
    digest: &str,
    chunk_bytes: usize,
    mut emit: impl FnMut(Result<Vec<u8>, BlobError>) -> bool,
) {
    let mut reader = flotilla_providers::direct_io::DirectReader::new(file, chunk_bytes);
    let mut held: Option<Vec<u8>> = None;
    loop {
        let chunk = match reader.next_chunk() {
            Ok(chunk) => chunk,
            Err(e) => {
                emit(Err(e.into()));
                return;
            }
        };
        if chunk.is_empty() {
            break;
        }
        check.update(chunk);
        if let Some(previous) = held.replace(chunk.to_vec())
            && !emit(Ok(previous))
        {
            return;
        }
    }
    match check.finish() {
        Ok(()) => {
            if let Some(last) = held {
                emit(Ok(last));
            }
        }
        Err(e) => {
            tracing::error!(digest, error = %e, "an artifact blob on disk is damaged; removed");
            let _ = store.remove(digest);
            emit(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use tokio_stream::StreamExt;

    fn store_with(bytes: &[u8]) -> (tempfile::TempDir, Arc<BlobStore>, String) {
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(root.path()).unwrap());
        let digest = hex::encode(Sha256::digest(bytes));
        let tmp = store.temp_path("t");
        std::fs::write(&tmp, bytes).unwrap();
        store.adopt(&tmp, &digest).unwrap();
        (root, store, digest)
    }

    #[tokio::test]
    async fn a_blob_is_read_whole_in_chunks() {
        let (_root, store, digest) = store_with(b"0123456789");
        let chunks: Vec<_> = read_checked(store, &digest, 4).unwrap().collect().await;
        let chunks: Vec<Vec<u8>> = chunks.into_iter().map(Result::unwrap).collect();
        assert_eq!(chunks, vec![b"0123".to_vec(), b"4567".to_vec(), b"89".to_vec()]);
    }

    #[tokio::test]
    async fn a_damaged_blob_ends_in_an_error_before_its_last_chunk_and_is_removed() {
        let (_root, store, digest) = store_with(b"0123456789");
        std::fs::write(store.path(&digest).unwrap(), b"0123456788").unwrap();
        let chunks: Vec<_> = read_checked(store.clone(), &digest, 4).unwrap().collect().await;
        assert_eq!(chunks.len(), 3, "two chunks, then the error in place of the last");
        assert!(chunks[..2].iter().all(Result::is_ok));
        assert!(matches!(chunks[2], Err(BlobError::DigestMismatch { .. })));
        assert!(!store.has(&digest));
        assert!(matches!(read_checked(store, &digest, 4), Err(BlobError::Missing(_))));
    }
}
