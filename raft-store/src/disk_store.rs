//! What `apply` keeps on disk: job output (column family `output`) and the records of archived
//! pipelines and jobs with their indexes (column family `history`, `history_keys.rs`), both
//! written by `apply` through `DiskSink`.
//!
//! Output: key = big-endian job id then big-endian offset, so one job's chunks are adjacent
//! and in order; value = the chunk's bytes as `apply` wrote them (`DiskWrite::Append`). The same
//! entry applied again writes the same bytes under the same key, so replaying the log from an
//! older snapshot converges on the same store. History: an archived record is final once
//! written (only `MarkOutputRemoved` patches it, the same way every time), so the same holds.
//!
//! Writes to both skip the WAL: the Raft log already holds every entry, and a write lost in a
//! crash is written again when the log is replayed from the snapshot the node restarts from.
//! That holds only for entries after that snapshot, so a snapshot is published only once both
//! column families are flushed to their files (`flush`); the node's own snapshot files hold
//! neither. A snapshot sent to a follower carries both (`snapshot_wire.rs`); the follower
//! replaces them with it; a marker in `meta` says a replacement is under way, and a node that
//! finds it at start rebuilds both from the snapshot it restores (the received file, which
//! holds them). Writes are gathered per entry in `disk_batch.rs`; records are read in
//! `history_reads.rs`.

use crate::disk_batch::DiskBatch;
use crate::history_keys as hk;
use crate::history_reads::HistoryRecord;
use flotilla_state_machine::{Job, JobId, Pipeline};
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};
use std::io;
use std::sync::Arc;

pub(crate) const CF_OUTPUT: &str = "output";
pub(crate) const CF_HISTORY: &str = "history";
const KEY_OUTPUT_REBUILD: &[u8] = b"output_rebuild";
/// Chunks put in one write batch while a snapshot's output is loaded.
const LOAD_BATCH_BYTES: usize = 8 * 1024 * 1024;

pub(crate) fn key(job: JobId, offset: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&job.0.to_be_bytes());
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The first key past every chunk of `job`.
pub(crate) fn job_end(job: JobId) -> Vec<u8> {
    match job.0.checked_add(1) {
        Some(next) => key(JobId(next), 0).to_vec(),
        None => vec![0xff; 17],
    }
}

fn parse_key(k: &[u8]) -> io::Result<(JobId, u64)> {
    let bytes: [u8; 16] = k
        .try_into()
        .map_err(|_| crate::codec::invalid_data("output key is not 16 bytes"))?;
    let (job, offset) = bytes.split_at(8);
    let job = u64::from_be_bytes(job.try_into().expect("8 bytes"));
    let offset = u64::from_be_bytes(offset.try_into().expect("8 bytes"));
    Ok((JobId(job), offset))
}

/// A key and its value, as RocksDB's iterators yield them.
pub(crate) type StoredPair = (Box<[u8]>, Box<[u8]>);

/// A stored key and value as the chunk they are.
fn chunk_of(item: Result<StoredPair, rocksdb::Error>) -> io::Result<OutputChunk> {
    let (k, v) = item.map_err(io::Error::other)?;
    let (job, offset) = parse_key(&k)?;
    Ok(OutputChunk {
        job,
        offset,
        data: v.into_vec(),
    })
}

pub(crate) fn unlogged() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.disable_wal(true);
    o
}

fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

/// One chunk of stored output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    pub job: JobId,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// The column families `output` and `history`; clones share the database.
#[derive(Clone)]
pub struct DiskStore {
    pub(crate) db: Arc<DB>,
    /// The block cache every column family shares, kept to read its use.
    cache: rocksdb::Cache,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskStore")
    }
}

/// A fixed view of the output and the archived records (a RocksDB snapshot), for digests.
pub struct DiskView<'a> {
    store: &'a DiskStore,
    snapshot: rocksdb::Snapshot<'a>,
}

impl DiskView<'_> {
    /// Every chunk in the view, by job and offset.
    pub fn chunks(&self) -> impl Iterator<Item = io::Result<OutputChunk>> + '_ {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&self.snapshot);
        self.store
            .db
            .iterator_cf_opt(self.store.cf(), opts, IteratorMode::Start)
            .map(chunk_of)
    }

    /// Every archived record in the view (`P`/`J` keys and their encoded values), by key.
    pub fn records(&self) -> impl Iterator<Item = io::Result<HistoryRecord>> + '_ {
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&self.snapshot);
        opts.set_iterate_upper_bound(hk::RECORDS_END);
        self.store
            .db
            .iterator_cf_opt(self.store.history(), opts, IteratorMode::Start)
            .map(crate::history_reads::record_of)
    }

    /// Writes every chunk and record in the view to `w` as a snapshot file holds them (for
    /// digests).
    pub fn write_chunks(&self, w: &mut impl std::io::Write) -> io::Result<()> {
        for chunk in self.chunks() {
            crate::snapshot_file::write_chunk(w, &chunk?)?;
        }
        for record in self.records() {
            crate::snapshot_file::write_record(w, &record?)?;
        }
        Ok(())
    }
}

impl DiskStore {
    pub(crate) fn new(db: Arc<DB>, cache: rocksdb::Cache) -> io::Result<Self> {
        for cf in [CF_OUTPUT, CF_HISTORY, crate::log_store::CF_META] {
            if db.cf_handle(cf).is_none() {
                return Err(io::Error::other(format!("column family {cf} is missing")));
            }
        }
        Ok(DiskStore { db, cache })
    }

    /// What RocksDB holds in memory now (memtables, block cache, table readers).
    pub fn memory(&self) -> io::Result<crate::StorageMemoryReading> {
        crate::storage_memory::read(&self.db, &self.cache).map_err(io::Error::other)
    }

    pub(crate) fn cf(&self) -> &ColumnFamily {
        self.db.cf_handle(CF_OUTPUT).expect("checked at open")
    }

    pub(crate) fn history(&self) -> &ColumnFamily {
        self.db.cf_handle(CF_HISTORY).expect("checked at open")
    }

    fn meta(&self) -> &ColumnFamily {
        self.db.cf_handle(crate::log_store::CF_META).expect("checked at open")
    }

    pub(crate) fn batch(&self) -> DiskBatch<'_> {
        DiskBatch::new(self)
    }

    /// Writes what a batch gathered (without the WAL, see the module docs).
    pub(crate) fn commit(&self, batch: DiskBatch<'_>) -> io::Result<()> {
        let batch = batch.finish()?;
        if batch.is_empty() {
            return Ok(());
        }
        self.db.write_opt(batch, &unlogged()).map_err(io::Error::other)
    }

    /// Makes everything written so far durable: flushes both column families to their files.
    pub(crate) fn flush(&self) -> io::Result<()> {
        self.db.flush_cf(self.cf()).map_err(io::Error::other)?;
        self.db.flush_cf(self.history()).map_err(io::Error::other)
    }

    /// Up to `max_bytes` of `job`'s output from `from`, and no further than `to` (the length
    /// the state counts; the store may briefly hold more while an entry is applied). Reads
    /// only the chunks it returns.
    pub fn read(&self, job: JobId, from: u64, to: u64, max_bytes: usize) -> io::Result<Vec<u8>> {
        let end = to.min(from.saturating_add(max_bytes as u64));
        let mut out = Vec::new();
        if from >= end {
            return Ok(out);
        }
        // The chunk holding `from` starts at or before it: the last key at or below it.
        let mut start = key(job, 0);
        let mut back = self.db.raw_iterator_cf(self.cf());
        back.seek_for_prev(key(job, from));
        if back.valid()
            && let Some(k) = back.key()
        {
            let (j, _) = parse_key(k)?;
            if j == job {
                start.copy_from_slice(k);
            }
        }
        back.status().map_err(io::Error::other)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(job_end(job));
        let iter = self
            .db
            .iterator_cf_opt(self.cf(), opts, IteratorMode::From(&start, Direction::Forward));
        let mut pos = from;
        for item in iter {
            let (k, v) = item.map_err(io::Error::other)?;
            let (_, offset) = parse_key(&k)?;
            let chunk_end = offset.saturating_add(v.len() as u64);
            if chunk_end <= pos {
                continue;
            }
            if offset > pos {
                // A hole: the state counts bytes the store no longer holds (removed meanwhile).
                break;
            }
            let upto = end.min(chunk_end);
            // Both within the chunk: offset <= pos < upto <= chunk_end.
            out.extend_from_slice(&v[(pos - offset) as usize..(upto - offset) as usize]);
            pos = upto;
            if pos >= end {
                break;
            }
        }
        Ok(out)
    }

    /// The chunks after `after` (job and offset; `None`: from the first) in key order, about
    /// `max_bytes` of them (at least one if any remain): one page of a snapshot's transfer.
    pub(crate) fn chunks_after(&self, after: Option<(JobId, u64)>, max_bytes: usize) -> io::Result<Vec<OutputChunk>> {
        let start = after.map_or([0u8; 16], |(job, offset)| key(job, offset));
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let iter = self
            .db
            .iterator_cf(self.cf(), IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let chunk = chunk_of(item)?;
            if after == Some((chunk.job, chunk.offset)) {
                continue;
            }
            bytes += chunk.data.len();
            out.push(chunk);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// The output as it stands now, unchanged by later writes while the view is held. Taken
    /// under the state's read lock, it matches that state.
    pub fn consistent_view(&self) -> DiskView<'_> {
        DiskView {
            store: self,
            snapshot: self.db.snapshot(),
        }
    }

    /// The snapshot file whose install was started and not finished, if one was.
    pub(crate) fn rebuild_pending(&self) -> io::Result<Option<String>> {
        Ok(self
            .db
            .get_cf(self.meta(), KEY_OUTPUT_REBUILD)
            .map_err(io::Error::other)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records, durably, that the output is about to be replaced by that of the snapshot
    /// published as `name`.
    pub(crate) fn mark_rebuild(&self, name: &str) -> io::Result<()> {
        self.db
            .put_cf_opt(self.meta(), KEY_OUTPUT_REBUILD, name.as_bytes(), &synced())
            .map_err(io::Error::other)
    }

    /// Forgets a marker whose install never reached the output.
    pub(crate) fn clear_rebuild(&self) -> io::Result<()> {
        self.db
            .delete_cf_opt(self.meta(), KEY_OUTPUT_REBUILD, &synced())
            .map_err(io::Error::other)
    }

    /// Starts replacing the whole output with a snapshot's: everything stored goes first.
    /// Call after `mark_rebuild`; `DiskLoader::finish` clears the marker.
    pub(crate) fn replace(&self) -> DiskLoader<'_> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.cf(), key(JobId(0), 0).as_slice(), [0xffu8; 17].as_slice());
        batch.delete_range_cf(self.history(), [0u8].as_slice(), [0xffu8; 2].as_slice());
        DiskLoader {
            store: self,
            batch,
            pending_bytes: 0,
        }
    }
}

/// Loads a snapshot's output into the store in batches of `LOAD_BATCH_BYTES`.
pub(crate) struct DiskLoader<'a> {
    store: &'a DiskStore,
    batch: WriteBatch,
    pending_bytes: usize,
}

impl DiskLoader<'_> {
    pub fn put(&mut self, chunk: &OutputChunk) -> io::Result<()> {
        self.pending_bytes += chunk.data.len();
        self.batch
            .put_cf(self.store.cf(), key(chunk.job, chunk.offset), &chunk.data);
        if self.pending_bytes >= LOAD_BATCH_BYTES {
            let batch = std::mem::take(&mut self.batch);
            self.store.db.write_opt(batch, &unlogged()).map_err(io::Error::other)?;
            self.pending_bytes = 0;
        }
        Ok(())
    }

    /// Puts one item of a snapshot's disk part.
    pub fn put_item(&mut self, item: crate::snapshot_file::DiskItem<'_>) -> io::Result<()> {
        match item {
            crate::snapshot_file::DiskItem::Chunk(chunk) => self.put(chunk),
            crate::snapshot_file::DiskItem::Record(record) => self.put_record(record),
        }
    }

    /// Puts an archived record and the index keys derived from it.
    pub fn put_record(&mut self, record: &HistoryRecord) -> io::Result<()> {
        let history = self.store.history();
        if !hk::is_record(&record.key) {
            return Err(crate::codec::invalid_data(
                "a snapshot's history record has a key that is not a record's",
            ));
        }
        let index = if record.key[0] == hk::PIPELINE {
            hk::pipeline_index(&crate::codec::decode::<Pipeline>(&record.value)?).to_vec()
        } else {
            hk::job_index(&crate::codec::decode::<Job>(&record.value)?).to_vec()
        };
        for k in index {
            self.batch.put_cf(history, k, []);
        }
        self.pending_bytes += record.value.len();
        self.batch.put_cf(history, &record.key, &record.value);
        if self.pending_bytes >= LOAD_BATCH_BYTES {
            let batch = std::mem::take(&mut self.batch);
            self.store.db.write_opt(batch, &unlogged()).map_err(io::Error::other)?;
            self.pending_bytes = 0;
        }
        Ok(())
    }

    /// Writes the rest, flushes the column families and clears the rebuild marker.
    pub fn finish(self) -> io::Result<()> {
        let store = self.store;
        store.db.write_opt(self.batch, &unlogged()).map_err(io::Error::other)?;
        store.flush()?;
        store.clear_rebuild()
    }
}
