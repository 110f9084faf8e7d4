//! Artifact blobs on this node's disk, named by the SHA-256 of their bytes.
//!
//! A blob arrives as a temporary file (packed by a provider, received from a peer), is
//! synced, checked against its name and renamed into place, so a blob under its name is
//! always whole and always what the name says. Reads check the digest again as they go
//! (`DigestCheck`): a blob damaged on disk is refused, never served.

use flotilla_state_machine::is_digest;
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0:?} is not a blob name (a SHA-256 in lowercase hexadecimal)")]
    BadName(String),
    #[error("blob {0} is not on this node")]
    Missing(String),
    #[error("the bytes received for blob {expected} have the digest {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob store i/o: {0}")]
    Io(#[from] io::Error),
}

pub struct BlobStore {
    /// `<dir>/<digest>` for every blob held.
    dir: PathBuf,
    /// Files on their way in; emptied at every start.
    tmp: PathBuf,
    next_tmp: AtomicU64,
}

impl BlobStore {
    /// Opens (creating) the store under `root`; what a crash left half-written is removed.
    pub fn open(root: &Path) -> io::Result<BlobStore> {
        let dir = root.join("sha256");
        let tmp = root.join("incoming");
        std::fs::create_dir_all(&dir)?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(BlobStore {
            dir,
            tmp,
            next_tmp: AtomicU64::new(0),
        })
    }

    fn checked(digest: &str) -> Result<&str, BlobError> {
        if is_digest(digest) {
            Ok(digest)
        } else {
            Err(BlobError::BadName(digest.chars().take(80).collect()))
        }
    }

    /// Where blob `digest` lives if it is held.
    pub fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        Ok(self.dir.join(Self::checked(digest)?))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// A new path for a file on its way in, never handed out twice by this process.
    pub fn temp_path(&self, label: &str) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{label}-{n}"))
    }

    /// Keeps the complete file at `tmp` as blob `digest` after checking that its bytes are
    /// what the name says (a blob already held under the name is kept as it is). The file at
    /// `tmp` is gone afterwards either way.
    pub fn adopt(&self, tmp: &Path, digest: &str) -> Result<PathBuf, BlobError> {
        let dest = self.path(digest)?;
        let result = (|| {
            let actual = flotilla_providers::artifact_archive::digest_of(tmp)?;
            if actual != digest {
                return Err(BlobError::DigestMismatch {
                    expected: digest.to_string(),
                    actual,
                });
            }
            std::fs::File::open(tmp)?.sync_all()?;
            std::fs::rename(tmp, &dest)?;
            std::fs::File::open(&self.dir)?.sync_all()?;
            Ok(dest.clone())
        })();
        let _ = std::fs::remove_file(tmp);
        result
    }

    /// Opens blob `digest` for reading, with a check of its digest to run over the bytes read.
    pub fn open_checked(&self, digest: &str) -> Result<(std::fs::File, DigestCheck), BlobError> {
        let path = self.path(digest)?;
        match std::fs::File::open(&path) {
            Ok(file) => Ok((file, DigestCheck::new(digest))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::Missing(digest.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads blob `digest` whole and checks it; a damaged one is removed (a peer's copy can
    /// take its place) and reported as missing.
    pub fn verify(&self, digest: &str) -> Result<PathBuf, BlobError> {
        let path = self.path(digest)?;
        if !path.is_file() {
            return Err(BlobError::Missing(digest.to_string()));
        }
        let actual = flotilla_providers::artifact_archive::digest_of(&path)?;
        if actual != digest {
            tracing::error!(digest, actual, "an artifact blob on disk is damaged; removed");
            let _ = std::fs::remove_file(&path);
            return Err(BlobError::Missing(digest.to_string()));
        }
        Ok(path)
    }

    pub fn remove(&self, digest: &str) -> Result<(), BlobError> {
        match std::fs::remove_file(self.path(digest)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Every blob held, with its size and when it was stored.
    pub fn list(&self) -> io::Result<Vec<(String, u64, SystemTime)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_digest(&name) {
                continue;
            }
            let meta = entry.metadata()?;
            out.push((name, meta.len(), meta.modified()?));
        }
        Ok(out)
    }
}

/// Reads an open blob (`BlobStore::open_checked`) in chunks of `chunk_bytes` and hands each to
/// `emit`, which answers whether to go on (its reader may have gone). The digest is checked
/// on the way and the last chunk held back until it matched: a damaged blob is removed from
/// `store` and ends with its error instead, so no reader ever gets it whole. Blocking: for
/// the blocking pool.
pub fn send_checked(
    mut file: std::fs::File,
    mut check: DigestCheck,
    store: &BlobStore,
    digest: &str,
    chunk_bytes: usize,
    mut emit: impl FnMut(Result<Vec<u8>, BlobError>) -> bool,
) {
    use std::io::Read;
    let mut held: Option<Vec<u8>> = None;
    loop {
        let mut buf = vec![0u8; chunk_bytes];
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                emit(Err(e.into()));
                return;
            }
        };
        if n == 0 {
            break;
        }
        buf.truncate(n);
        check.update(&buf);
        if let Some(previous) = held.replace(buf)
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

/// Writes the chunks of `chunks` (from a peer or the object store) to a new file of `store`,
/// at most `max_bytes`, checks them against `digest`, and adopts the file under that name;
/// nothing is left behind when any of that fails.
pub async fn receive_checked<S, B>(
    store: &std::sync::Arc<BlobStore>,
    digest: &str,
    mut chunks: S,
    max_bytes: u64,
) -> Result<PathBuf, BlobError>
where
    S: futures::Stream<Item = Result<B, BlobError>> + Unpin,
    B: AsRef<[u8]>,
{
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let tmp = store.temp_path("receive");
    let received = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut check = DigestCheck::new(digest);
        let mut bytes = 0u64;
        let mut window_start = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            let chunk = chunk.as_ref();
            bytes += chunk.len() as u64;
            if bytes > max_bytes {
                return Err(BlobError::Io(io::Error::other(format!(
                    "more than {max_bytes} bytes arrived"
                ))));
            }
            check.update(chunk);
            file.write_all(chunk).await?;
            // Sent to disk a window at a time, as a pack is (`write_behind`): a gigabyte left
            // dirty would hold up the next fsync of Raft's log.
            if bytes - window_start >= flotilla_providers::write_behind::WINDOW_BYTES {
                file.flush().await?;
                let fd = RawFile(std::os::fd::AsRawFd::as_raw_fd(&file));
                let (start, len) = (window_start, bytes - window_start);
                // `file` outlives the call: it is held across the await.
                let _ = tokio::task::spawn_blocking(move || {
                    flotilla_providers::write_behind::write_out(&fd, start, len, start)
                })
                .await;
                window_start = bytes;
            }
        }
        file.flush().await?;
        check.finish()
    }
    .await;
    if let Err(e) = received {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let store = store.clone();
    let digest = digest.to_string();
    tokio::task::spawn_blocking(move || store.adopt(&tmp, &digest))
        .await
        .map_err(|e| BlobError::Io(io::Error::other(e.to_string())))?
}

/// A descriptor of a file held open elsewhere, for a call that only reads its number.
struct RawFile(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for RawFile {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// The SHA-256 of bytes as they are read, compared with the blob's name at the end.
pub struct DigestCheck {
    expected: String,
    hasher: Sha256,
}

impl DigestCheck {
    pub fn new(expected: &str) -> Self {
        DigestCheck {
            expected: expected.to_string(),
            hasher: Sha256::new(),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// Whether the bytes seen are the blob's.
    pub fn finish(self) -> Result<(), BlobError> {
        let actual = hex::encode(self.hasher.finalize());
        if actual == self.expected {
            Ok(())
        } else {
            Err(BlobError::DigestMismatch {
                expected: self.expected,
                actual,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn a_blob_is_kept_only_under_the_digest_of_its_bytes() {
        let root = tempfile::tempdir().unwrap();
        let store = BlobStore::open(root.path()).unwrap();
        let tmp = store.temp_path("t");
        std::fs::write(&tmp, b"hello").unwrap();
        let wrong = sha(b"other");
        assert!(matches!(
            store.adopt(&tmp, &wrong),
            Err(BlobError::DigestMismatch { .. })
        ));
        assert!(!tmp.exists() && !store.has(&wrong));
        let tmp = store.temp_path("t");
        std::fs::write(&tmp, b"hello").unwrap();
        let digest = sha(b"hello");
        store.adopt(&tmp, &digest).unwrap();
        assert!(store.has(&digest));
        assert_eq!(store.list().unwrap().len(), 1);
        store.verify(&digest).unwrap();
        assert!(matches!(store.path("../etc/passwd"), Err(BlobError::BadName(_))));
        // Damaged on disk: removed, and missing from then on.
        std::fs::write(store.path(&digest).unwrap(), b"hellp").unwrap();
        assert!(matches!(store.verify(&digest), Err(BlobError::Missing(_))));
        assert!(!store.has(&digest));
    }

    #[test]
    fn a_read_check_fails_on_other_bytes() {
        let mut check = DigestCheck::new(&sha(b"abc"));
        check.update(b"ab");
        check.update(b"c");
        check.finish().unwrap();
        let mut check = DigestCheck::new(&sha(b"abc"));
        check.update(b"abd");
        assert!(check.finish().is_err());
    }

    #[test]
    fn what_a_crash_left_incoming_is_removed_at_open() {
        let root = tempfile::tempdir().unwrap();
        let store = BlobStore::open(root.path()).unwrap();
        let tmp = store.temp_path("t");
        std::fs::write(&tmp, b"half").unwrap();
        drop(store);
        BlobStore::open(root.path()).unwrap();
        assert!(!tmp.exists());
    }
}
