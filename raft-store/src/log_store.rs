//! The Raft log and its metadata (vote, committed, last purged) in RocksDB.
//!
//! Column family `logs`: key = big-endian log index (so byte order is index order), value =
//! versioned bincode of the entry. Column family `meta`: one key each for vote, committed and
//! last purged. Votes, committed ids and truncations are synced before returning; appends are
//! group-committed by the `WalSyncer`.

use crate::codec::{decode, encode};
use crate::wal_syncer::WalSyncer;
use crate::{Entry, LogId, TypeConfig, Vote};
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, entry::RaftEntry};
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

pub(crate) const CF_LOGS: &str = "logs";
pub(crate) const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// Handle to the log; clones share one database and one syncer (cheap, used as the reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    // Declared before `syncer`: dropped first, so the syncer's join releases the last handle.
    db: Arc<DB>,
    syncer: WalSyncer,
    stats: Arc<crate::StoreStats>,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_index(key: &[u8]) -> io::Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| crate::codec::invalid_data("log key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

impl LogStore {
    pub(crate) fn new(db: Arc<DB>, stats: Arc<crate::StoreStats>) -> io::Result<Self> {
        for cf in [CF_LOGS, CF_META] {
            if db.cf_handle(cf).is_none() {
                return Err(io::Error::other(format!("column family {cf} is missing")));
            }
        }
        let syncer = WalSyncer::start(db.clone(), stats.clone())?;
        Ok(LogStore {
            inner: Arc::new(Inner { db, syncer, stats }),
        })
    }

    fn db(&self) -> &DB {
        &self.inner.db
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.inner.db.cf_handle(name).expect("checked at open")
    }

    /// Index of the last purged entry: the log holds nothing at or below it.
    pub(crate) fn last_purged_index(&self) -> io::Result<Option<u64>> {
        Ok(self.get_meta::<LogId>(KEY_LAST_PURGED)?.map(|id| id.index))
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.db().get_cf(self.cf(CF_META), key).map_err(io::Error::other)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some),
        }
    }

    fn put_meta_synced<T: Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        let bytes = encode(value)?;
        self.db()
            .put_cf_opt(self.cf(CF_META), key, bytes, &synced())
            .map_err(io::Error::other)
    }

    /// Runs a synced write on the blocking pool: an fsync must not hold a thread of the async
    /// runtime, which serves heartbeats and client requests. openraft awaits each call before
    /// the next, so the writes keep their order.
    async fn synced_off_runtime(
        &self,
        write: impl FnOnce(&LogStore) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || write(&store))
            .await
            .map_err(io::Error::other)?
    }

    fn last_entry(&self) -> io::Result<Option<Entry>> {
        match self.db().iterator_cf(self.cf(CF_LOGS), IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(io::Error::other)?;
                decode(&value).map(Some)
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        let from = index_key(start);
        for item in self
            .db()
            .iterator_cf(self.cf(CF_LOGS), IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item.map_err(io::Error::other)?;
            let index = key_index(&key)?;
            if !range.contains(&index) {
                break;
            }
            let entry: Entry = decode(&value)?;
            if entry.index() != index {
                return Err(crate::codec::invalid_data(format!(
                    "entry at key {index} has index {}",
                    entry.index()
                )));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        // After a crash between recording a purge and deleting, entries at or below the purge
        // point may remain; the later of the two is the last log id.
        let last_log_id = match (self.last_entry()?.map(|e| e.log_id()), &last_purged_log_id) {
            (Some(last), Some(purged)) if purged.index() >= last.index() => Some(*purged),
            (Some(last), _) => Some(last),
            (None, purged) => *purged,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.synced_off_runtime(move |s| s.put_meta_synced(KEY_VOTE, &vote))
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.synced_off_runtime(move |s| s.put_meta_synced(KEY_COMMITTED, &committed))
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut bytes = 0u64;
        for entry in entries {
            let record = encode(&entry)?;
            bytes += record.len() as u64;
            batch.put_cf(self.cf(CF_LOGS), index_key(entry.index()), record);
        }
        self.inner.stats.log_bytes_appended(bytes);
        // Unsynced write: readable now; durable once the syncer's fsync completes the callback.
        self.db().write(batch).map_err(io::Error::other)?;
        self.inner.syncer.after_sync(callback).await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1);
        self.synced_off_runtime(move |s| {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(s.cf(CF_LOGS), index_key(from), index_key(u64::MAX));
            s.db().write_opt(batch, &synced()).map_err(io::Error::other)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: entries at or below it are ignored from then on, so a
        // crash between the two writes leaves no visible hole.
        self.synced_off_runtime(move |s| {
            s.put_meta_synced(KEY_LAST_PURGED, &log_id)?;
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(s.cf(CF_LOGS), index_key(0), index_key(log_id.index() + 1));
            s.db().write(batch).map_err(io::Error::other)
        })
        .await
    }
}
