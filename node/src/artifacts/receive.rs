//! A blob arriving over the network (from a peer, the object store or a worker's upload)
//! written to this node's store. The async side only forwards the chunks as they come; the
//! bytes are hashed and written on a thread of their own at a lower CPU priority
//! (`background`), past the page cache where the disk allows (`direct_io`), and the
//! digest is checked once, as they pass, before the file is adopted under its name. On a
//! small machine a gigabyte's SHA-256 and writes would otherwise run on the runtime's
//! threads, beside the same node's heartbeats and appends, and show as the cluster's commit
//! tail; at a lower priority they yield to that work, and the sender is slowed by the
//! channel's bound (and HTTP/2 flow control) instead.

use super::blob_store::{BlobError, BlobStore, DigestCheck};
use bytes::Bytes;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Chunks waiting for the writing thread; the sender waits beyond that.
pub const CHUNKS_IN_FLIGHT: usize = 8;

/// What the async side hands the writing thread.
enum Piece {
    Bytes(Bytes),
    /// Every byte was sent: the file may be adopted if its digest matches.
    End,
}

/// Writes the chunks of `chunks` to a new file of `store`, at most `max_bytes`, checks them
/// against `digest`, and adopts the file under that name; nothing is left behind when any of
/// that fails. A blob already held is not received again.
pub async fn receive_checked<S, B>(
    store: &Arc<BlobStore>,
    digest: &str,
    mut chunks: S,
    max_bytes: u64,
) -> Result<PathBuf, BlobError>
where
    S: futures::Stream<Item = Result<B, BlobError>> + Unpin,
    B: Into<Bytes>,
{
    use futures::StreamExt;
    let dest = store.path(digest)?;
    if dest.is_file() {
        return Ok(dest);
    }
    let tmp = store.temp_path("receive");
    let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(CHUNKS_IN_FLIGHT);
    let writer = {
        let (store, tmp, digest) = (store.clone(), tmp.clone(), digest.to_string());
        flotilla_providers::background::run_in_background("blob-receive", move || {
            write_checked(&store, &tmp, &digest, rx)
        })
    };
    let feed = async move {
        let mut bytes = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk: Bytes = chunk?.into();
            bytes = bytes.saturating_add(chunk.len() as u64);
            if bytes > max_bytes {
                return Err(BlobError::TooLarge { max_bytes });
            }
            if tx.send(Piece::Bytes(chunk)).await.is_err() {
                // The writer stopped: its own error says why.
                return Ok(());
            }
        }
        let _ = tx.send(Piece::End).await;
        Ok(())
    };
    let (fed, written) = tokio::join!(feed, writer);
    // A writer that failed removed its file itself (`write_checked`); one that never
    // finished (it could not start, or panicked) leaves it to be removed here.
    let written = written.unwrap_or_else(|| {
        let _ = std::fs::remove_file(&tmp);
        Err(BlobError::Io(io::Error::other(
            "the blob's writing thread did not finish",
        )))
    });
    // A feed that failed sent no end, so the writer kept nothing: the feed's error says why.
    fed.and(written)
}

/// The writing thread: every chunk into `tmp` (hashed as it passes), then, once told all
/// were sent, the file adopted under `digest` if its bytes are that. Whatever fails, `tmp` is
/// removed here, so a receive whose caller went away (a timeout, a client gone) leaves
/// nothing behind either. Blocking.
fn write_checked(
    store: &BlobStore,
    tmp: &Path,
    digest: &str,
    pieces: tokio::sync::mpsc::Receiver<Piece>,
) -> Result<PathBuf, BlobError> {
    let written = write_all_checked(store, tmp, digest, pieces);
    if written.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    written
}

fn write_all_checked(
    store: &BlobStore,
    tmp: &Path,
    digest: &str,
    mut pieces: tokio::sync::mpsc::Receiver<Piece>,
) -> Result<PathBuf, BlobError> {
    let mut file = flotilla_providers::direct_io::DirectWriter::new(std::fs::File::create(tmp)?);
    let mut check = DigestCheck::new(digest);
    loop {
        match pieces.blocking_recv() {
            Some(Piece::Bytes(chunk)) => {
                check.update(&chunk);
                file.write_all(&chunk)?;
            }
            Some(Piece::End) => break,
            None => return Err(BlobError::Io(io::Error::other("the blob's stream ended early"))),
        }
    }
    drop(pieces);
    check.finish()?;
    store.keep(tmp, digest, file.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn chunks(parts: &[&'static [u8]]) -> impl futures::Stream<Item = Result<Bytes, BlobError>> + Unpin {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    fn incoming(root: &Path) -> usize {
        std::fs::read_dir(root.join("incoming")).unwrap().count()
    }

    #[tokio::test]
    async fn chunks_are_kept_under_their_digest_once_checked() {
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(root.path()).unwrap());
        let digest = sha(b"hello, world");
        let path = receive_checked(&store, &digest, chunks(&[b"hello", b", ", b"world"]), 100)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello, world");
        assert!(store.has(&digest));
        assert_eq!(incoming(root.path()), 0);
    }

    #[tokio::test]
    async fn other_bytes_too_many_bytes_or_a_broken_stream_leave_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(root.path()).unwrap());
        let digest = sha(b"hello, world");
        let other = receive_checked(&store, &digest, chunks(&[b"hello", b" world"]), 100).await;
        assert!(matches!(other, Err(BlobError::DigestMismatch { .. })), "{other:?}");
        let large = receive_checked(&store, &digest, chunks(&[b"hello", b", ", b"world"]), 8).await;
        assert!(matches!(large, Err(BlobError::TooLarge { max_bytes: 8 })), "{large:?}");
        // Every byte of the blob arrived, then the stream failed: not kept either.
        let broken = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"hello, world")),
            Err(BlobError::Io(io::Error::other("connection reset"))),
        ]);
        let broken = receive_checked(&store, &digest, broken, 100).await;
        assert!(matches!(broken, Err(BlobError::Io(_))), "{broken:?}");
        assert!(!store.has(&digest));
        assert_eq!(incoming(root.path()), 0);
    }

    type Feed = tokio::sync::mpsc::Sender<Result<Bytes, BlobError>>;

    /// A receive of "hello, world" under way in a task, fed its first chunk; the feed for more.
    async fn a_receive_under_way(
        store: &Arc<BlobStore>,
    ) -> (Feed, tokio::task::JoinHandle<Result<PathBuf, BlobError>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (store, digest) = (store.clone(), sha(b"hello, world"));
        let receiving = tokio::spawn(async move {
            receive_checked(&store, &digest, tokio_stream::wrappers::ReceiverStream::new(rx), 100).await
        });
        tx.send(Ok(Bytes::from_static(b"hello"))).await.unwrap();
        (tx, receiving)
    }

    /// Polls `probe` every 10 ms, at most 2 s, until it answers `Some`; its last answer.
    async fn soon<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
        for _ in 0..200 {
            if let Some(found) = probe() {
                return Some(found);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        None
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receive_given_up_midway_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(root.path()).unwrap());
        let (_feed, receiving) = a_receive_under_way(&store).await;
        let on_its_way = soon(|| (incoming(root.path()) == 1).then_some(())).await;
        assert!(on_its_way.is_some(), "the file on its way in");
        // The caller goes (a timeout, say): the writing thread cleans up after itself.
        receiving.abort();
        let _ = receiving.await;
        let cleaned = soon(|| (incoming(root.path()) == 0).then_some(())).await;
        assert!(cleaned.is_some(), "{} files left in incoming/", incoming(root.path()));
    }

    /// The nice values of this process's threads named `name`, from `/proc`.
    fn nice_of_threads(name: &str) -> Vec<i32> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != name {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // Fields after the command's closing parenthesis; nice is the 19th of the line.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            out.push(after.split(' ').nth(16).unwrap().parse().unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bytes_are_written_on_a_thread_at_a_lower_priority_than_the_node() {
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(root.path()).unwrap());
        let (feed, receiving) = a_receive_under_way(&store).await;
        let node = flotilla_providers::background::this_threads_nice();
        let seen = soon(|| Some(nice_of_threads("blob-receive")).filter(|s| !s.is_empty()))
            .await
            .unwrap_or_default();
        // Other tests of this binary may receive at the same time: every such thread is niced.
        let niced = (node + flotilla_providers::background::BACKGROUND_NICE_STEP).min(19);
        assert!(
            !seen.is_empty() && seen.iter().all(|n| *n == niced),
            "{seen:?}, not {niced}"
        );
        feed.send(Ok(Bytes::from_static(b", world"))).await.unwrap();
        drop(feed);
        receiving.await.unwrap().unwrap();
    }
}
