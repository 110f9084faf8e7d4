//! Durable storage for Flotilla's Raft: the log and the job output in RocksDB, the rest of the
//! state machine in memory with snapshots streamed to files.
//!
//! `open` returns the two halves openraft needs (`LogStore`, `StateMachineStore`) over one data
//! directory:
//!
//! ```text
//! <dir>/log/          RocksDB: column families `logs` (entries), `meta` (vote, committed, purged)
//!                     `output` (job output) and `history` (archived pipelines and jobs),
//!                     both written by apply: `disk_store.rs`
//! <dir>/snapshots/    snapshot-<index>-<term>.snap files; tmp/ holds ones being written
//! ```
//!
//! Applied events go into a bounded in-memory `EventJournal` that readers resume from by id.
//!
//! Durability: an append is acknowledged to openraft only after the WAL is fsynced (group
//! commit); votes, the committed id and truncations are written with sync. Every persisted
//! record starts with a format-version byte.

mod codec;
mod disk_batch;
mod disk_store;
mod event_journal;
mod history_keys;
mod history_reads;
mod journal_cursor;
mod log_store;
mod snapshot_dir;
mod snapshot_file;
mod snapshot_wire;
mod state_machine_store;
mod storage_memory;
mod store_stats;
mod type_config;
mod wal_syncer;

pub use codec::{FORMAT_VERSION, decode, encode, encode_into, encoded_len};
pub use disk_store::{DiskStore, DiskView, OutputChunk};
pub use event_journal::{AppliedEntry, EventJournal, Gap, JournaledEvent};
pub use history_reads::HistoryRecord;
pub use journal_cursor::JournalCursor;
pub use log_store::LogStore;
pub use snapshot_file::{EncodedState, SnapshotFile, SnapshotHeader, encode_state, write_snapshot};
pub use snapshot_wire::SnapshotWire;
pub use state_machine_store::{FlotillaSnapshot, SnapshotBuilder, StateHandle, StateMachineData, StateMachineStore};
pub use storage_memory::{
    DEFAULT_BLOCK_CACHE_BYTES, DEFAULT_MEMTABLES_BYTES, MIN_BLOCK_CACHE_BYTES, MIN_MEMTABLES_BYTES, StorageMemory,
    StorageMemoryReading,
};
pub use store_stats::{StoreStats, StoreStatsReading};
pub use type_config::{Entry, LogId, Membership, NodeAddr, SnapshotMeta, StoredMembership, TypeConfig, Vote};
pub use wal_syncer::SYNC_QUEUE_CAPACITY;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Where and how to open the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Published snapshot files kept on disk (the newest is current).
    pub snapshots_to_keep: usize,
    /// Most events the node's event journal holds (older ones are evicted).
    pub event_journal_capacity_events: usize,
    /// What RocksDB may hold in memory (`storage_memory.rs`).
    pub memory: StorageMemory,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            snapshots_to_keep: 2,
            event_journal_capacity_events: 100_000,
            memory: StorageMemory::default(),
        }
    }
}

/// Opens (creating if needed) the log and the state machine under `config.dir`.
pub fn open(config: &StoreConfig) -> io::Result<(LogStore, StateMachineStore)> {
    std::fs::create_dir_all(&config.dir)?;
    let options = config.memory.options();
    let families = [
        log_store::CF_LOGS,
        log_store::CF_META,
        disk_store::CF_OUTPUT,
        disk_store::CF_HISTORY,
    ]
    .map(|name| rocksdb::ColumnFamilyDescriptor::new(name, options.family.clone()));
    let db =
        rocksdb::DB::open_cf_descriptors(&options.db, config.dir.join("log"), families).map_err(io::Error::other)?;
    let db = Arc::new(db);
    let stats = Arc::new(StoreStats::default());
    let output = DiskStore::new(db.clone(), options.cache)?;
    let log = LogStore::new(db, stats.clone())?;
    let purged = log.last_purged_index()?;
    let sm = StateMachineStore::open(
        &config.dir.join("snapshots"),
        config.snapshots_to_keep,
        config.event_journal_capacity_events,
        stats,
        output,
        purged,
    )?;
    Ok((log, sm))
}
