//! openraft's state machine for Flotilla: the pure `State` in memory, job output in RocksDB,
//! snapshots on disk.
//!
//! The state is not written per entry. On restart it is loaded from the newest snapshot and
//! openraft re-applies the committed log after it (the log store saves the committed id), so
//! the state never goes back behind what was applied before a crash. Job output is written
//! as each entry is applied, under the same write lock, so a reader holding the read lock
//! sees the state and the output of the same entry (`disk_store.rs`).

use crate::event_journal::{AppliedEntry, EventJournal};
use crate::snapshot_dir::SnapshotDir;
use crate::snapshot_file::{SnapshotFile, SnapshotHeader, encode_state, write_snapshot};
use crate::{DiskStore, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use flotilla_state_machine::{ApplyContext, Response, State};
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

pub type FlotillaSnapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// The applied state with the Raft bookkeeping that must travel with it.
#[derive(Debug, Default)]
pub struct StateMachineData {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub state: State,
}

/// Shared between the Raft state machine task and the node's readers.
#[derive(Debug)]
pub struct Shared {
    data: RwLock<StateMachineData>,
    journal: Arc<EventJournal>,
    stats: Arc<crate::StoreStats>,
    snapshots: SnapshotDir,
    current_snapshot: Mutex<Option<SnapshotHeader>>,
    output: DiskStore,
}

/// Read access to the applied state and its event stream, for APIs and leader loops.
#[derive(Clone, Debug)]
pub struct StateHandle {
    shared: Arc<Shared>,
}

impl StateHandle {
    /// A read lock on the applied state; hold it briefly, apply waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachineData> {
        self.shared.data.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The journal of recently applied events (bounded), for streams and the publisher.
    pub fn journal(&self) -> &Arc<EventJournal> {
        &self.shared.journal
    }

    /// Counters of the log and snapshot storage.
    pub fn store_stats(&self) -> crate::StoreStatsReading {
        self.shared.stats.read()
    }

    /// What `apply` keeps on disk: job output, read by key range (`DiskStore::read`), and
    /// the archived pipelines and jobs. Blocking reads; under `read()`'s lock they match the
    /// state.
    pub fn disk(&self) -> &DiskStore {
        &self.shared.output
    }
}

pub struct StateMachineStore {
    shared: Arc<Shared>,
}

impl StateMachineStore {
    /// Opens the snapshot directory and restores the newest usable snapshot (see
    /// `SnapshotDir::restore`). `purged_index` is the log's last purged index: the log can
    /// replay only what follows it.
    pub(crate) fn open(
        dir: &Path,
        snapshots_to_keep: usize,
        journal_capacity_events: usize,
        stats: Arc<crate::StoreStats>,
        output: DiskStore,
        purged_index: Option<u64>,
    ) -> io::Result<Self> {
        let snapshots = SnapshotDir::open(dir, snapshots_to_keep)?;
        let restored = snapshots.restore(purged_index)?;
        if let Some(name) = output.rebuild_pending()? {
            // An install stopped between its marker and its end. If it published the received
            // snapshot (the one restored now), its output was being loaded: load it again
            // from that file, which holds it. If not, the output was not touched yet: the
            // state and the output are the older snapshot's and the log's, as they were.
            let restored_name = restored
                .as_ref()
                .and_then(|(path, _, _)| path.file_name())
                .map(|n| n.to_string_lossy().into_owned());
            if restored_name.as_deref() == Some(name.as_str()) {
                let (path, _, _) = restored.as_ref().expect("named just above");
                // `restore` verified the file and decoded its state: read only its output.
                let mut loader = output.replace();
                SnapshotFile::open(path)?.read_disk_items(|item| loader.put_item(item))?;
                loader.finish()?;
                tracing::warn!(snapshot = %name, "job output reloaded from the snapshot after an interrupted install");
            } else if snapshots.contains(&name)? {
                return Err(io::Error::other(format!(
                    "an interrupted install of snapshot {name} left the job output incomplete, and that snapshot \
                     cannot be restored; remove this node from the cluster, delete its data directory and add it \
                     back (docs/operations.md)"
                )));
            } else {
                output.clear_rebuild()?;
            }
        }
        let (data, current) = match restored {
            None => (StateMachineData::default(), None),
            Some((_, header, state)) => {
                let data = StateMachineData {
                    last_applied: header.last_log_id,
                    last_membership: header.last_membership.clone(),
                    state,
                };
                (data, Some(header))
            }
        };
        let restored_through = data.last_applied.as_ref().map(|id| id.index);
        let journal = Arc::new(EventJournal::new(journal_capacity_events, restored_through));
        let shared = Shared {
            data: RwLock::new(data),
            journal,
            stats,
            snapshots,
            current_snapshot: Mutex::new(current),
            output,
        };
        Ok(StateMachineStore {
            shared: Arc::new(shared),
        })
    }

    pub fn handle(&self) -> StateHandle {
        StateHandle {
            shared: self.shared.clone(),
        }
    }
}

impl Shared {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StateMachineData> {
        self.data.write().unwrap_or_else(|p| p.into_inner())
    }

    fn set_current(&self, header: SnapshotHeader) {
        *self.current_snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(header);
    }

    fn current(&self) -> Option<SnapshotHeader> {
        self.current_snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes the current state to a new snapshot file (blocking; run off the async threads).
    /// The read lock is held only while the state is cloned: its collections are persistent
    /// maps, so the clone shares every node and takes microseconds whatever the state's size;
    /// applies go on meanwhile, copying only the nodes they change. The encoding, the output's
    /// flush, the write and the fsync all happen after the lock is released, so applies and
    /// readers never wait on them. The file holds no output: it stays in RocksDB
    /// (`snapshot_file.rs`).
    fn build_snapshot_blocking(&self) -> io::Result<(SnapshotHeader, SnapshotFile)> {
        let tmp = self.snapshots.tmp_path();
        let (header, state) = {
            let data = self.data.read().unwrap_or_else(|p| p.into_inner());
            let locked_at = std::time::Instant::now();
            let header = SnapshotHeader {
                last_log_id: data.last_applied,
                last_membership: data.last_membership.clone(),
            };
            let state = data.state.clone();
            drop(data);
            self.stats.snapshot_locked(locked_at.elapsed());
            (header, state)
        };
        let encoded = encode_state(&state)?;
        drop(state);
        // The log may be purged up to this snapshot once it is published, and output writes
        // skip the WAL: everything the snapshot covers must be in the output's files first.
        self.output.flush()?;
        write_snapshot(&tmp, &header, &encoded)?;
        drop(encoded);
        let path = self.snapshots.publish(&tmp, &header)?;
        self.set_current(header.clone());
        self.stats.snapshot_built();
        let mut file = SnapshotFile::open(&path)?;
        file.output = Some(self.output.clone());
        Ok((header, file))
    }

    /// Verifies a received snapshot, keeps a copy of it, and replaces the state and the job
    /// output with its own. The output is replaced under a durable marker, set before the
    /// snapshot is published: a crash midway is finished at the next start.
    fn install_blocking(&self, meta: &SnapshotMeta, mut snapshot: SnapshotFile) -> io::Result<()> {
        let (header, state) = snapshot.read_all()?;
        if header.meta() != *meta {
            return Err(crate::codec::invalid_data(format!(
                "snapshot file holds {:?}, expected {meta}",
                header.last_log_id
            )));
        }
        let tmp = self.snapshots.tmp_path();
        {
            use std::io::{Seek, SeekFrom};
            snapshot.file.seek(SeekFrom::Start(0))?;
            let mut out = std::fs::File::create_new(&tmp)?;
            io::copy(&mut snapshot.file, &mut out)?;
            out.sync_all()?;
        }
        self.output.mark_rebuild(&SnapshotDir::name_for(&header))?;
        self.snapshots.publish(&tmp, &header)?;
        // Readers go on with the old state while the output is loaded: a chunk is the same
        // bytes at the same offset in every state of one history, and a reader reads no
        // further than its state counts, so it sees what it saw or, where retention removed
        // a job's output since, less.
        // The file was verified and its state decoded above: read only its output.
        let mut loader = self.output.replace();
        snapshot.read_disk_items(|item| loader.put_item(item))?;
        loader.finish()?;
        *self.write() = StateMachineData {
            last_applied: header.last_log_id,
            last_membership: header.last_membership.clone(),
            state,
        };
        self.journal
            .reset_to_snapshot(header.last_log_id.as_ref().map_or(0, |id| id.index));
        self.stats.snapshot_installed();
        self.set_current(header);
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let data = self.shared.data.read().unwrap_or_else(|p| p.into_inner());
        Ok((data.last_applied, data.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id;
            let ctx = ApplyContext {
                log_index: log_id.index,
                term: log_id.leader_id.term,
            };
            let (response, events) = {
                let mut data = self.shared.write();
                data.last_applied = Some(log_id);
                match entry.payload {
                    EntryPayload::Blank => (Response::Done { changed: false }, Vec::new()),
                    EntryPayload::Normal(proposal) => {
                        let mut output = self.shared.output.batch();
                        let applied = data.state.apply_with_disk(ctx, &proposal, &mut output);
                        self.shared.output.commit(output)?;
                        applied
                    }
                    EntryPayload::Membership(membership) => {
                        data.last_membership = StoredMembership::new(Some(log_id), membership);
                        (Response::Done { changed: true }, Vec::new())
                    }
                }
            };
            self.shared.journal.append(AppliedEntry {
                log_index: ctx.log_index,
                term: ctx.term,
                events,
            });
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotFile) -> Result<(), io::Error> {
        let shared = self.shared.clone();
        let meta = meta.clone();
        blocking(move || shared.install_blocking(&meta, snapshot)).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<FlotillaSnapshot>, io::Error> {
        if self.shared.current().is_none() {
            return Ok(None);
        }
        let path = self
            .shared
            .snapshots
            .latest()?
            .ok_or_else(|| io::Error::other("current snapshot file is missing"))?;
        let mut file = SnapshotFile::open(&path)?;
        // The metadata comes from the opened file itself: a newer snapshot may replace the file
        // between reading the in-memory header and opening the path, and a snapshot sent with
        // another snapshot's metadata is refused by the receiver (whose Raft then stops).
        let header = file.read_header()?;
        // Sent with the output as the store holds it (`SnapshotWire`).
        file.output = Some(self.shared.output.clone());
        Ok(Some(Snapshot {
            meta: header.meta(),
            snapshot: file,
        }))
    }
}

/// Builds a snapshot of the state as applied when `build_snapshot` runs.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<FlotillaSnapshot, io::Error> {
        let shared = self.shared.clone();
        let (header, file) = blocking(move || shared.build_snapshot_blocking()).await?;
        Ok(Snapshot {
            meta: header.meta(),
            snapshot: file,
        })
    }
}
