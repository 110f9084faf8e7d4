//! Secret files of process jobs (`secret_files` in a job): each value in a file of its own,
//! its path in the job's variable. The files live on a tmpfs (memory, never a disk, as a
//! Kubernetes Secret volume does), in a directory per worker that only the job's user may
//! read, written after the worker's directory is claimed and before its process starts, and
//! deleted with the worker. A directory not on a tmpfs is refused rather than used.

use super::run_as::{RunAs, set_mode};
use crate::SecretValue;
use crate::provider::ProviderError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the secret files of the workers in `work_dir` go unless the node says otherwise:
/// under the shared memory tmpfs, one directory per work directory (two clusters on one host
/// have two), named after it.
pub fn default_secrets_dir(work_dir: &Path) -> PathBuf {
    let name: String = work_dir
        .to_string_lossy()
        .chars()
        .flat_map(|c| match c {
            '/' => vec!['~'],
            '~' => vec!['~', '~'],
            c => vec![c],
        })
        .collect();
    Path::new("/dev/shm/flotilla-secrets").join(name)
}

/// The secret files of one provider's workers.
#[derive(Clone, Debug)]
pub struct SecretFiles {
    root: PathBuf,
}

impl SecretFiles {
    pub fn new(root: PathBuf) -> SecretFiles {
        SecretFiles { root }
    }

    fn dir(&self, worker: &str) -> PathBuf {
        self.root.join(worker)
    }

    /// Writes `files` (variable to value) for `worker` and answers each variable's path.
    pub fn write(
        &self,
        worker: &str,
        files: &BTreeMap<String, SecretValue>,
        run_as: Option<&RunAs>,
    ) -> Result<BTreeMap<String, PathBuf>, ProviderError> {
        if files.is_empty() {
            return Ok(BTreeMap::new());
        }
        std::fs::create_dir_all(&self.root)?;
        set_mode(&self.root, if run_as.is_some() { 0o711 } else { 0o700 })?;
        if !on_tmpfs(&self.root)? {
            return Err(ProviderError::Rejected(format!(
                "the job has secret files, and the process provider's secrets directory {} is not on a tmpfs: give --process-secrets-dir a directory on one (such as /dev/shm)",
                self.root.display()
            )));
        }
        let dir = self.dir(worker);
        // Left by a create that stopped before starting its process: nothing runs with it.
        self.remove(worker)?;
        std::fs::create_dir(&dir)?;
        set_mode(&dir, 0o700)?;
        let mut paths = BTreeMap::new();
        for (var, value) in files {
            let path = dir.join(var);
            write_private(&path, value.expose().as_bytes())?;
            if let Some(user) = run_as {
                user.give(&path, 0o400)?;
            }
            paths.insert(var.clone(), path);
        }
        if let Some(user) = run_as {
            user.give(&dir, 0o500)?;
        }
        Ok(paths)
    }

    /// Deletes `worker`'s secret files, if it has any.
    pub fn remove(&self, worker: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir(worker)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Creates `path` (never through an existing file or link) readable by its owner alone.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)?;
    f.write_all(bytes)
}

/// Whether `path` lies on a memory file system, from the mount table.
pub fn on_tmpfs(path: &Path) -> std::io::Result<bool> {
    let path = std::fs::canonicalize(path)?;
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(fs_type_of(&path, &table).is_some_and(|t| t == "tmpfs" || t == "ramfs"))
}

/// The file system type of the mount that holds `path`, from a `mountinfo` table: the mount
/// with the longest mount point above `path`; the last one listed wins among equals (it is
/// mounted over the others).
fn fs_type_of<'a>(path: &Path, mountinfo: &'a str) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fs_type)) = (fields.get(4), fields.get(dash + 1)) else {
            continue;
        };
        let point = point.replace("\\040", " ");
        if path.starts_with(&point) && best.is_none_or(|(len, _)| point.len() >= len) {
            best = Some((point.len(), fs_type));
        }
    }
    best.map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw
24 23 0:20 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
25 22 0:30 / /srv/my\\040disk rw shared:4 - xfs /dev/sdb1 rw
26 22 0:31 / /dev/shm rw shared:5 - ext4 /dev/sdc1 rw
";

    #[test]
    fn the_mount_holding_a_path_decides_and_the_last_mount_over_a_point_wins() {
        assert_eq!(fs_type_of(Path::new("/var/lib"), TABLE), Some("ext4"));
        assert_eq!(fs_type_of(Path::new("/dev/null"), TABLE), Some("devtmpfs"));
        assert_eq!(fs_type_of(Path::new("/srv/my disk/x"), TABLE), Some("xfs"));
        // /dev/shm has a disk mounted over its tmpfs.
        assert_eq!(fs_type_of(Path::new("/dev/shm/flotilla"), TABLE), Some("ext4"));
        let only_tmpfs: String = TABLE.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(fs_type_of(Path::new("/dev/shm/flotilla"), &only_tmpfs), Some("tmpfs"));
        // A component boundary: /devices is not under /dev.
        assert_eq!(fs_type_of(Path::new("/devices"), TABLE), Some("ext4"));
    }

    #[test]
    fn default_directories_differ_per_work_directory() {
        let a = default_secrets_dir(Path::new("/tmp/flotilla-workers"));
        let b = default_secrets_dir(Path::new("/tmp/flotilla~workers"));
        assert_eq!(a, Path::new("/dev/shm/flotilla-secrets/~tmp~flotilla-workers"));
        assert_ne!(a, b);
    }

    #[test]
    fn a_disk_directory_is_refused_and_files_on_tmpfs_are_private_and_removed() {
        // The source tree is on a disk.
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let files = BTreeMap::from([("TOKEN".to_string(), SecretValue::new("s3cr3t-value".into()))]);
        let err = SecretFiles::new(disk.path().join("s"))
            .write("w", &files, None)
            .unwrap_err();
        assert!(err.to_string().contains("not on a tmpfs"), "{err}");
        let shm = tempfile::tempdir_in("/dev/shm").expect("/dev/shm (a tmpfs) is needed");
        assert!(on_tmpfs(shm.path()).unwrap(), "/dev/shm is not a tmpfs on this host");
        let store = SecretFiles::new(shm.path().join("s"));
        let paths = store.write("j1-a1", &files, None).unwrap();
        let path = &paths["TOKEN"];
        assert_eq!(std::fs::read_to_string(path).unwrap(), "s3cr3t-value");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o400);
        // Written again (a create that stopped before starting): the old files go first.
        store.write("j1-a1", &files, None).unwrap();
        store.remove("j1-a1").unwrap();
        assert!(!path.exists());
        store.remove("j1-a1").unwrap();
    }
}
