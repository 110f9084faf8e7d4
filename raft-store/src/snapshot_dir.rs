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
        Ok(SnapshotDir { dir: dir.to_path_buf(), tmp, keep: keep.max(1), next_tmp: AtomicU64::new(0) })
    }

    /// A fresh path under `tmp/` for a snapshot being written or received.
    pub fn tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("incoming-{}-{n}.snap", std::process::id()))
    }

    fn name_for(header: &SnapshotHeader) -> String {
        let (index, term) = header.last_log_id.as_ref().map_or((0, 0), |id| (id.index, id.leader_id.term));
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

    /// The newest published snapshot, if any.
    pub fn latest(&self) -> io::Result<Option<PathBuf>> {
        Ok(self.published()?.pop())
    }

    fn published(&self) -> io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".snap")))
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
