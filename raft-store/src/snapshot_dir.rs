//! The directory of snapshot files: naming, atomic publication, pruning.
//!
//! Files are `snapshot-<index>-<term>.snap` with zero-padded numbers, so the last in name
//! order is the newest. New files are written in `tmp/` and renamed in; `tmp/` is emptied at
//! open, which discards snapshots a crash left half-written.

use crate::snapshot_file::SnapshotHeader;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct SnapshotDir {
    dir: PathBuf,
    tmp: PathBuf,
    keep: usize,
    next_tmp: AtomicU64,
}

impl SnapshotDir {
    pub fn open(dir: &Path, keep: usize) -> io::Result<Self> {
        let tmp = dir.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        Ok(SnapshotDir {
            dir: dir.to_path_buf(),
            tmp,
            keep: keep.max(1),
            next_tmp: AtomicU64::new(0),
        })
    }

    /// A fresh path under `tmp/` for a snapshot being written or received.
    pub fn tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("incoming-{}-{n}.snap", std::process::id()))
    }

    pub fn name_for(header: &SnapshotHeader) -> String {
        let (index, term) = header
            .last_log_id
            .as_ref()
            .map_or((0, 0), |id| (id.index, id.leader_id.term));
        format!("snapshot-{index:020}-{term:020}.snap")
    }

    /// Moves a complete, fsynced file from `tmp/` into place and prunes old snapshots.
    pub fn publish(&self, tmp_file: &Path, header: &SnapshotHeader) -> io::Result<PathBuf> {
        let target = self.dir.join(Self::name_for(header));
        fs::rename(tmp_file, &target)?;
        fs::File::open(&self.dir)?.sync_all()?;
        self.prune()?;
        Ok(target)
    }

    /// Reads the newest snapshot that verifies and that the log can continue from (its index
    /// at or above `purged_index`). A snapshot that fails to read (checksum, layout) is renamed
    /// to `*.snap.corrupt`, kept for inspection, and the next older one is tried. With no
    /// usable snapshot the state starts empty if the log still holds every entry (nothing was
    /// purged); otherwise the node cannot rebuild its state alone, and the error says how to
    /// recover it (the procedure is in `docs/operations.md`).
    pub fn restore(
        &self,
        purged_index: Option<u64>,
    ) -> io::Result<Option<(PathBuf, SnapshotHeader, flotilla_state_machine::State)>> {
        let mut refused = Vec::new();
        for path in self.published()?.into_iter().rev() {
            match crate::SnapshotFile::open(&path).and_then(|mut f| f.read_all()) {
                Ok((header, state)) => {
                    let index = header.last_log_id.as_ref().map_or(0, |id| id.index);
                    if purged_index.is_none_or(|purged| index >= purged) {
                        return Ok(Some((path, header, state)));
                    }
                    refused.push(format!(
                        "{} ends at index {index}, before the log's start",
                        path.display()
                    ));
                }
                Err(e) => {
                    let mut corrupt = path.clone().into_os_string();
                    corrupt.push(".corrupt");
                    tracing::error!(snapshot = %path.display(), error = %e, "snapshot unreadable; kept as .corrupt, trying an older one");
                    fs::rename(&path, &corrupt)?;
                    refused.push(format!("{}: {e}", path.display()));
                }
            }
        }
        match purged_index {
            None => Ok(None),
            Some(purged) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "no usable snapshot, and the log was purged through index {purged} ({}); this node cannot rebuild its state \
                     alone: remove it from the cluster, delete its data directory and add it back, and it receives a snapshot \
                     from the leader (docs/operations.md)",
                    if refused.is_empty() {
                        "no snapshot files".to_string()
                    } else {
                        refused.join("; ")
                    }
                ),
            )),
        }
    }

    /// Whether a published snapshot has the file name `name`.
    pub fn contains(&self, name: &str) -> io::Result<bool> {
        Ok(self
            .published()?
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == name)))
    }

    /// The newest published snapshot, if any.
    pub fn latest(&self) -> io::Result<Option<PathBuf>> {
        Ok(self.published()?.pop())
    }

    fn published(&self) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".snap"))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    fn prune(&self) -> io::Result<()> {
        let files = self.published()?;
        let excess = files.len().saturating_sub(self.keep);
        for old in &files[..excess] {
            fs::remove_file(old)?;
        }
        Ok(())
    }
}
