//! A job's source, unpacked into its work directory before the worker starts: the tar
//! archive the leader made of its pipeline's commit (`WorkerSpec::checkout`). Entries that
//! would land outside the directory are refused by the unpacker; with `--process-run-as-user`
//! every file is handed to the job's user (lchown: a link is never followed).

use super::RunAs;
use crate::provider::ProviderError;
use std::path::Path;

/// Unpacks `archive` into `work`, then gives everything under `work` to `run_as`.
pub(super) fn unpack(archive: &Path, work: &Path, run_as: Option<&RunAs>) -> Result<(), ProviderError> {
    if let Err(e) = std::fs::metadata(archive) {
        // Removed by the leader's pruning meanwhile: it is made again on the next try.
        return Err(ProviderError::Unavailable(format!(
            "the checkout {} cannot be read: {e}",
            archive.display()
        )));
    }
    crate::source_archive::unpack(archive, work)
        .map_err(|e| ProviderError::Rejected(format!("the checkout could not be unpacked: {e}")))?;
    if let Some(user) = run_as {
        give_all(work, user)?;
    }
    Ok(())
}

/// Unpacks the artifacts of the jobs this one needs (`WorkerSpec::inputs`) into `work`, in
/// order, then gives everything under `work` to `run_as`.
pub(super) fn unpack_inputs(
    blobs: &[std::path::PathBuf],
    work: &Path,
    run_as: Option<&RunAs>,
) -> Result<(), ProviderError> {
    for blob in blobs {
        if let Err(e) = std::fs::metadata(blob) {
            return Err(ProviderError::Unavailable(format!(
                "the artifact {} cannot be read: {e}",
                blob.display()
            )));
        }
        crate::artifact_archive::unpack(blob, work)
            .map_err(|e| ProviderError::Rejected(format!("an artifact could not be unpacked: {e}")))?;
    }
    if let (Some(user), false) = (run_as, blobs.is_empty()) {
        give_all(work, user)?;
    }
    Ok(())
}

/// Gives `dir` and everything under it to `user`, without following links.
fn give_all(dir: &Path, user: &RunAs) -> std::io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))?;
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(dir: &Path, entries: &[(&str, &[u8])]) -> std::path::PathBuf {
        let path = dir.join("src.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Written raw, so a hostile name reaches the unpacker as it would from a repository.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.finish().unwrap();
        path
    }

    #[test]
    fn files_land_in_the_work_directory_and_nothing_escapes_it() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let good = archive(dir.path(), &[("src/main.rs", b"fn main() {}"), ("README", b"hi")]);
        unpack(&good, &work, None).unwrap();
        assert_eq!(std::fs::read(work.join("src/main.rs")).unwrap(), b"fn main() {}");
        assert_eq!(std::fs::read(work.join("README")).unwrap(), b"hi");

        let evil = archive(dir.path(), &[("../escaped", b"x")]);
        let _ = unpack(&evil, &work, None);
        assert!(!dir.path().join("escaped").exists(), "an entry left the work directory");
    }

    #[test]
    fn a_missing_archive_is_worth_another_try() {
        let dir = tempfile::tempdir().unwrap();
        let e = unpack(&dir.path().join("gone.tar"), dir.path(), None).unwrap_err();
        assert!(e.is_transient(), "{e}");
    }
}
