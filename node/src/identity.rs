//! Which cluster this node belongs to and which life of its data directory this is.
//!
//! Raft's safety rests on every voter remembering what it voted for and what it acknowledged.
//! A node whose data directory was lost remembers neither; if it came back as the voter it was,
//! it could vote twice in a term or help elect a leader that lacks committed entries. So every
//! data directory gets an **incarnation**, a random number drawn when the directory is first
//! used, and the cluster records each member's incarnation beside its addresses
//! (`NodeAddr::incarnation`). Peers send the incarnation they expect with every Raft message
//! and a node refuses a message meant for another incarnation: a wiped node stays out until it
//! is removed and added again.
//!
//! The **cluster id** is drawn when a node founds a cluster and learnt by every node added to
//! it (from the first message it accepts). A node that knows its cluster refuses messages from
//! any other, and never founds a cluster again.
//!
//! Both live in `identity.json` in the data directory, written atomically before anything else
//! is stored there, so a directory with a store but no identity is one that was tampered with
//! and the node refuses to start on it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file's name inside the data directory.
pub const IDENTITY_FILE: &str = "identity.json";

/// A data directory's random identity; shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incarnation(pub u64);

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What `identity.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityRecord {
    /// The node id the directory was created for: starting it under another id is refused.
    pub node_id: u64,
    pub incarnation: u64,
    /// Set when the node founds a cluster or accepts its first message from one.
    pub cluster_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid identity file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{dir} holds a store but no {IDENTITY_FILE}: this directory's history is unknown, so the node will not start on it. Restore the file, or empty the directory and add the node to its cluster again (flotilla cluster remove <id>, then start it with --join)"
    )]
    StoreWithoutIdentity { dir: PathBuf },
    #[error(
        "{path} belongs to node {recorded}, not node {asked}: start the node with --id {recorded} or give node {asked} a directory of its own"
    )]
    OtherNode { path: PathBuf, recorded: u64, asked: u64 },
    #[error("this node belongs to cluster {known}, not {offered}")]
    OtherCluster { known: String, offered: String },
}

/// The node's identity, shared by the Raft service (which learns the cluster id) and the API.
#[derive(Clone, Debug)]
pub struct Identity {
    path: PathBuf,
    record: Arc<Mutex<IdentityRecord>>,
}

impl Identity {
    /// Reads the identity of `data_dir`, or creates one for a directory with nothing in it yet.
    /// `store_dir` is where the Raft store lives: a store without an identity is refused.
    pub fn open(data_dir: &Path, store_dir: &Path, node_id: u64) -> Result<Identity, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let record = match std::fs::read(&path) {
            Ok(bytes) => {
                let record: IdentityRecord = serde_json::from_slice(&bytes).map_err(|e| IdentityError::Invalid {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                if record.node_id != node_id {
                    return Err(IdentityError::OtherNode {
                        path,
                        recorded: record.node_id,
                        asked: node_id,
                    });
                }
                if let Some(id) = &record.cluster_id {
                    check_cluster_id(id).map_err(|reason| IdentityError::Invalid {
                        path: path.clone(),
                        reason,
                    })?;
                }
                record
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let has_store = std::fs::read_dir(store_dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if has_store {
                    return Err(IdentityError::StoreWithoutIdentity {
                        dir: data_dir.to_path_buf(),
                    });
                }
                let record = IdentityRecord {
                    node_id,
                    incarnation: fresh_incarnation(),
                    cluster_id: None,
                };
                std::fs::create_dir_all(data_dir).map_err(io)?;
                write_atomically(&path, &record).map_err(io)?;
                record
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Identity {
            path,
            record: Arc::new(Mutex::new(record)),
        })
    }

    pub fn incarnation(&self) -> Incarnation {
        Incarnation(self.lock().incarnation)
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.lock().cluster_id.clone()
    }

    /// Records the cluster this node belongs to (durably, before returning). Recording the id
    /// already known is a no-op; another id is refused.
    pub fn join_cluster(&self, cluster_id: &str) -> Result<(), IdentityError> {
        let mut record = self.lock();
        match &record.cluster_id {
            Some(known) if known == cluster_id => return Ok(()),
            Some(known) => {
                return Err(IdentityError::OtherCluster {
                    known: known.clone(),
                    offered: cluster_id.to_string(),
                });
            }
            None => {}
        }
        check_cluster_id(cluster_id).map_err(|reason| IdentityError::Invalid {
            path: self.path.clone(),
            reason,
        })?;
        let mut next = record.clone();
        next.cluster_id = Some(cluster_id.to_string());
        write_atomically(&self.path, &next).map_err(|source| IdentityError::Io {
            path: self.path.clone(),
            source,
        })?;
        *record = next;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdentityRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new cluster's id: 32 random hex digits.
pub fn fresh_cluster_id() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

fn fresh_incarnation() -> u64 {
    // Never 0, so a zero read from anywhere can never match.
    rand::random::<u64>().max(1)
}

/// A cluster id as this node writes it: 32 lowercase hex digits.
pub fn check_cluster_id(id: &str) -> Result<(), String> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(format!("cluster id {id:?} is not 32 lowercase hex digits"))
    }
}

/// Writes `record` to a temporary file, syncs it, renames it over `path` and syncs the
/// directory: a crash leaves the old file or the new one, never a torn one.
fn write_atomically(path: &Path, record: &IdentityRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_an_identity_that_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::open(dir.path(), &dir.path().join("store"), 3).unwrap();
        assert_eq!(a.cluster_id(), None);
        let id = fresh_cluster_id();
        a.join_cluster(&id).unwrap();
        let b = Identity::open(dir.path(), &dir.path().join("store"), 3).unwrap();
        assert_eq!(b.incarnation(), a.incarnation());
        assert_eq!(b.cluster_id(), Some(id));
    }

    #[test]
    fn a_wiped_directory_is_another_incarnation() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::open(dir.path(), &dir.path().join("store"), 1).unwrap();
        std::fs::remove_file(dir.path().join(IDENTITY_FILE)).unwrap();
        let b = Identity::open(dir.path(), &dir.path().join("store"), 1).unwrap();
        assert_ne!(a.incarnation(), b.incarnation());
    }

    #[test]
    fn a_store_without_identity_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("CURRENT"), b"x").unwrap();
        let err = Identity::open(dir.path(), &store, 1).unwrap_err();
        assert!(matches!(err, IdentityError::StoreWithoutIdentity { .. }), "{err}");
    }

    #[test]
    fn another_cluster_and_another_node_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::open(dir.path(), &dir.path().join("store"), 1).unwrap();
        let first = fresh_cluster_id();
        a.join_cluster(&first).unwrap();
        a.join_cluster(&first).unwrap();
        let err = a.join_cluster(&fresh_cluster_id()).unwrap_err();
        assert!(matches!(err, IdentityError::OtherCluster { .. }), "{err}");
        assert!(a.join_cluster("../etc").is_err());
        let err = Identity::open(dir.path(), &dir.path().join("store"), 2).unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::OtherNode {
                    recorded: 1,
                    asked: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
}
