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
    #[error("more than {max_bytes} bytes arrived")]
    TooLarge { max_bytes: u64 },
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

    /// Keeps the complete file at `tmp` as blob `digest`, a digest this process computed over
    /// the bytes as it wrote them (a pack): reading a gigabyte back only to hash it again
    /// would cost what the pack's own hashing did, and every read of a blob checks it anyway
    /// (`open_checked`, `verify`). The file at `tmp` is gone afterwards either way.
    pub fn adopt(&self, tmp: &Path, digest: &str) -> Result<PathBuf, BlobError> {
        let result = std::fs::File::open(tmp)
            .map_err(BlobError::from)
            .and_then(|file| self.keep(tmp, digest, file));
        let _ = std::fs::remove_file(tmp);
        result
    }

    /// Keeps the complete file at `tmp` (open as `file`), whose bytes were already checked
    /// against `digest` as they were written, as blob `digest`: synced, renamed into place,
    /// the rename synced.
    pub fn keep(&self, tmp: &Path, digest: &str, file: std::fs::File) -> Result<PathBuf, BlobError> {
        let dest = self.path(digest)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(tmp, &dest)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(dest)
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
    fn a_blob_is_kept_under_its_digest_and_refused_when_read_under_another() {
        let root = tempfile::tempdir().unwrap();
        let store = BlobStore::open(root.path()).unwrap();
        let tmp = store.temp_path("t");
        std::fs::write(&tmp, b"hello").unwrap();
        // A pack that named its bytes wrongly: kept, but no read ever serves it.
        let wrong = sha(b"other");
        store.adopt(&tmp, &wrong).unwrap();
        assert!(!tmp.exists());
        assert!(matches!(store.verify(&wrong), Err(BlobError::Missing(_))));
        assert!(!store.has(&wrong));
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
