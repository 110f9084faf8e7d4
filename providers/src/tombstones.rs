//! Names of removed workers, remembered so a worker name is never used twice.
//!
//! A worker's name is unique per job attempt, and once its worker has been removed (its exit
//! committed, or its assignment released) no current leader will ask for it again. A deposed
//! leader that does not know it yet may: it acts on a state from before the release. Without a
//! record of the removal, its create would start the attempt a second time. Creates check the
//! tombstone (after putting the worker in place, so a removal racing with the create is seen
//! by one side or the other) and refuse.
//!
//! Tombstones are empty files in a directory shared by the nodes of one host, pruned after
//! `keep_ms` (far longer than any leader pause).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug)]
pub struct Tombstones {
    dir: PathBuf,
    keep: Duration,
}

impl Tombstones {
    pub fn new(dir: PathBuf, keep_ms: u64) -> std::io::Result<Tombstones> {
        std::fs::create_dir_all(&dir)?;
        Ok(Tombstones {
            dir,
            keep: Duration::from_millis(keep_ms),
        })
    }

    /// Records that `name` is removed for good. Called before the worker is deleted.
    pub fn bury(&self, name: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(name), b"")
    }

    pub fn is_buried(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    /// Forgets tombstones older than `keep_ms`.
    pub fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.keep);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buried_names_stay_buried_until_pruned() {
        let dir = std::env::temp_dir().join(format!("flotilla-tombstones-{}", std::process::id()));
        let t = Tombstones::new(dir.clone(), 0).unwrap();
        assert!(!t.is_buried("j1-a1"));
        t.bury("j1-a1").unwrap();
        assert!(t.is_buried("j1-a1"));
        std::thread::sleep(Duration::from_millis(5));
        t.prune();
        assert!(!t.is_buried("j1-a1"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
