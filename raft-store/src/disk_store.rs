//! What `apply` keeps on disk: job output (column family `output`) and the records of archived
//! pipelines and jobs with their indexes (column family `history`, `history_keys.rs`), both
//! written by `apply` through `DiskSink`.
//!
//! Output: key = big-endian job id then big-endian offset, so one job's chunks are adjacent and in
//! order; value = the chunk's bytes as `apply` wrote them (`DiskWrite::Append`). The same
//! entry applied again writes the same bytes under the same key, so replaying the log from an
//! older snapshot converges on the same store. History: an archived record is final once
//! written (only `MarkOutputRemoved` patches it, the same way every time), so the same holds.
//!
//! Writes to both skip the WAL: the Raft log already holds every chunk, and a write lost in a crash is
//! written again when the log is replayed from the snapshot the node restarts from. That holds
//! only for entries after that snapshot, so a snapshot is published only once the column
//! family is flushed to its files (`flush`); the node's own snapshot files hold no output.
//! A snapshot sent to a follower carries the output (`snapshot_wire.rs`); the follower
//! replaces the column family with it; a marker in `meta` says a replacement is under way,
//! and a node that finds it at start rebuilds the output from the snapshot it restores (the
//! received file, which holds the output).

use crate::history_keys::{self as hk, Kind};
use flotilla_state_machine::{DiskSink, DiskWrite, Job, JobId, Pipeline, PipelineId};
use rocksdb::{ColumnFamily, DB, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

pub(crate) const CF_OUTPUT: &str = "output";
pub(crate) const CF_HISTORY: &str = "history";
const KEY_OUTPUT_REBUILD: &[u8] = b"output_rebuild";
/// Chunks put in one write batch while a snapshot's output is loaded.
const LOAD_BATCH_BYTES: usize = 8 * 1024 * 1024;

fn key(job: JobId, offset: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&job.0.to_be_bytes());
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The first key past every chunk of `job`.
fn job_end(job: JobId) -> Vec<u8> {
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
type StoredPair = (Box<[u8]>, Box<[u8]>);

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

fn unlogged() -> WriteOptions {
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

/// The output column family; clones share the database.
#[derive(Clone)]
pub struct DiskStore {
    db: Arc<DB>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskStore")
    }
}

/// A fixed view of the output (a RocksDB snapshot), for digests.
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
            .map(record_of)
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

/// One archived record as stored: its key (`P` or `J` and the id) and its encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

fn record_of(item: Result<StoredPair, rocksdb::Error>) -> io::Result<HistoryRecord> {
    let (k, v) = item.map_err(io::Error::other)?;
    if !hk::is_record(&k) {
        return Err(crate::codec::invalid_data("a history key that is not a record"));
    }
    Ok(HistoryRecord {
        key: k.into_vec(),
        value: v.into_vec(),
    })
}

/// The writes of one applied entry, gathered for one RocksDB write. Archived records are
/// kept decoded until the commit, so a later write of the same entry (a batch that archives a
/// pipeline, then removes it or its output) sees them.
pub(crate) struct DiskBatch<'a> {
    store: &'a DiskStore,
    batch: WriteBatch,
    archived: BTreeMap<PipelineId, (Pipeline, Vec<Job>)>,
    /// The first failure to read a record back, reported by `commit`.
    error: Option<io::Error>,
}

impl DiskSink for DiskBatch<'_> {
    fn write(&mut self, write: DiskWrite) {
        let (output, history) = (self.store.cf(), self.store.history());
        match write {
            DiskWrite::Append { job, offset, data } => self.batch.put_cf(output, key(job, offset), data),
            DiskWrite::RemoveOutput { job } => {
                self.batch
                    .delete_range_cf(output, key(job, 0).as_slice(), job_end(job).as_slice())
            }
            DiskWrite::Archive { pipeline, jobs } => {
                self.archived.insert(pipeline.id, (*pipeline, jobs));
            }
            DiskWrite::Forget { pipeline } => {
                // Archived by this entry (never written), or patched by it (written before).
                self.archived.remove(&pipeline);
                match self.store.archived(pipeline) {
                    Ok(Some((p, jobs))) => {
                        for j in &jobs {
                            self.batch.delete_cf(history, hk::job(j.id));
                            for k in hk::job_index(j) {
                                self.batch.delete_cf(history, k);
                            }
                        }
                        self.batch.delete_cf(history, hk::pipeline(p.id));
                        for k in hk::pipeline_index(&p) {
                            self.batch.delete_cf(history, k);
                        }
                    }
                    // Gone already: a replay of a removal.
                    Ok(None) => {}
                    Err(e) => {
                        self.error.get_or_insert(e);
                    }
                }
            }
            DiskWrite::MarkOutputRemoved { pipeline, at_ms } => {
                let mark = |(p, jobs): &mut (Pipeline, Vec<Job>)| {
                    p.output_removed_at_ms = Some(at_ms);
                    for j in jobs.iter_mut() {
                        j.log_bytes = 0;
                    }
                };
                if let Some(record) = self.archived.get_mut(&pipeline) {
                    mark(record);
                    return;
                }
                match self.store.archived(pipeline) {
                    Ok(Some(mut record)) => {
                        mark(&mut record);
                        // Written back whole; its index keys do not change (state, tenant).
                        self.archived.insert(pipeline, record);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.error.get_or_insert(e);
                    }
                }
            }
        }
    }
}

impl DiskBatch<'_> {
    /// Puts the archived records gathered and their index keys into the write batch.
    fn put_archived(&mut self) -> io::Result<()> {
        let history = self.store.history();
        for (p, jobs) in std::mem::take(&mut self.archived).into_values() {
            for j in &jobs {
                self.batch.put_cf(history, hk::job(j.id), crate::codec::encode(j)?);
                for k in hk::job_index(j) {
                    self.batch.put_cf(history, k, []);
                }
            }
            self.batch
                .put_cf(history, hk::pipeline(p.id), crate::codec::encode(&p)?);
            for k in hk::pipeline_index(&p) {
                self.batch.put_cf(history, k, []);
            }
        }
        Ok(())
    }
}

impl DiskStore {
    pub(crate) fn new(db: Arc<DB>) -> io::Result<Self> {
        for cf in [CF_OUTPUT, CF_HISTORY, crate::log_store::CF_META] {
            if db.cf_handle(cf).is_none() {
                return Err(io::Error::other(format!("column family {cf} is missing")));
            }
        }
        Ok(DiskStore { db })
    }

    fn cf(&self) -> &ColumnFamily {
        self.db.cf_handle(CF_OUTPUT).expect("checked at open")
    }

    fn history(&self) -> &ColumnFamily {
        self.db.cf_handle(CF_HISTORY).expect("checked at open")
    }

    fn meta(&self) -> &ColumnFamily {
        self.db.cf_handle(crate::log_store::CF_META).expect("checked at open")
    }

    pub(crate) fn batch(&self) -> DiskBatch<'_> {
        DiskBatch {
            store: self,
            batch: WriteBatch::default(),
            archived: BTreeMap::new(),
            error: None,
        }
    }

    /// Writes what a batch gathered (without the WAL, see the module docs).
    pub(crate) fn commit(&self, mut batch: DiskBatch<'_>) -> io::Result<()> {
        if let Some(e) = batch.error.take() {
            return Err(e);
        }
        batch.put_archived()?;
        if batch.batch.is_empty() {
            return Ok(());
        }
        self.db.write_opt(batch.batch, &unlogged()).map_err(io::Error::other)
    }

    /// Makes everything written so far durable: flushes both column families to their files.
    pub(crate) fn flush(&self) -> io::Result<()> {
        self.db.flush_cf(self.cf()).map_err(io::Error::other)?;
        self.db.flush_cf(self.history()).map_err(io::Error::other)
    }

    fn get_record<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        self.db
            .get_pinned_cf(self.history(), key)
            .map_err(io::Error::other)?
            .map(|v| crate::codec::decode(&v))
            .transpose()
    }

    /// The archived record of pipeline `id`, if it is archived. A blocking read.
    pub fn pipeline(&self, id: PipelineId) -> io::Result<Option<Pipeline>> {
        self.get_record(&hk::pipeline(id))
    }

    /// The archived record of job `id`, if its pipeline is archived. A blocking read.
    pub fn job(&self, id: JobId) -> io::Result<Option<Job>> {
        self.get_record(&hk::job(id))
    }

    /// The archived records of the jobs `first ..= last`, in id order (one range read: a
    /// pipeline's jobs have consecutive ids). A blocking read.
    pub fn jobs_between(&self, first: JobId, last: JobId) -> io::Result<Vec<Job>> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(hk::record(hk::JOB, last.0.saturating_add(1)).to_vec());
        let start = hk::job(first);
        let iter = self
            .db
            .iterator_cf_opt(self.history(), opts, IteratorMode::From(&start, Direction::Forward));
        let mut out = Vec::new();
        for item in iter {
            let (k, v) = item.map_err(io::Error::other)?;
            if k.first() != Some(&hk::JOB) || k.len() != 9 {
                break;
            }
            out.push(crate::codec::decode(&v)?);
        }
        Ok(out)
    }

    /// An archived pipeline with its jobs' records.
    fn archived(&self, id: PipelineId) -> io::Result<Option<(Pipeline, Vec<Job>)>> {
        let Some(p) = self.pipeline(id)? else {
            return Ok(None);
        };
        let mut jobs = Vec::with_capacity(p.jobs.len());
        for j in &p.jobs {
            if let Some(job) = self.job(*j)? {
                jobs.push(job);
            }
        }
        Ok(Some((p, jobs)))
    }

    /// Up to `limit` ids of archived `kind` records with an id above `after`, in id order:
    /// in one of `states` (codes, `history_keys`), and of one of `tenants` if given. One
    /// range per tenant and state, each of at most `limit`, merged.
    fn page_ids(
        &self,
        kind: Kind,
        states: &[u8],
        tenants: Option<&[&str]>,
        after: u64,
        limit: usize,
    ) -> io::Result<Vec<u64>> {
        let mut prefixes = Vec::new();
        for &state in states {
            match tenants {
                None => prefixes.push(hk::by_state_prefix(kind.code(), state)),
                Some(ts) => prefixes.extend(ts.iter().map(|t| hk::by_tenant_prefix(kind.code(), t, state))),
            }
        }
        let mut ids = Vec::new();
        for prefix in prefixes {
            let mut start = prefix.clone();
            start.extend_from_slice(&after.saturating_add(1).to_be_bytes());
            if after == u64::MAX {
                continue;
            }
            let mut upper = prefix.clone();
            upper.extend_from_slice(&[0xff; 9]);
            let mut opts = ReadOptions::default();
            opts.set_iterate_upper_bound(upper);
            let iter = self
                .db
                .iterator_cf_opt(self.history(), opts, IteratorMode::From(&start, Direction::Forward));
            for item in iter.take(limit) {
                let (k, _) = item.map_err(io::Error::other)?;
                if k.len() == prefix.len() + 8 && k.starts_with(&prefix) {
                    ids.extend(hk::id_of(&k));
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(limit);
        Ok(ids)
    }

    /// Up to `limit` archived pipelines with an id above `after`, in id order, in `state` (or
    /// any) and of `tenants` (or any). A blocking read of the page.
    pub fn pipelines_page(
        &self,
        state: Option<flotilla_state_machine::PipelineState>,
        tenants: Option<&[&str]>,
        after: PipelineId,
        limit: usize,
    ) -> io::Result<Vec<Pipeline>> {
        let states: Vec<u8> = match state {
            Some(s) => vec![hk::pipeline_state_code(s)],
            None => flotilla_state_machine::PipelineState::ALL
                .iter()
                .map(|s| hk::pipeline_state_code(*s))
                .collect(),
        };
        let ids = self.page_ids(Kind::Pipeline, &states, tenants, after.0, limit)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.pipeline(PipelineId(id))?);
        }
        Ok(out)
    }

    /// Up to `limit` archived jobs with an id above `after`, in id order, in `state` (or any)
    /// and of `tenants` (or any). A blocking read of the page.
    pub fn jobs_page(
        &self,
        state: Option<flotilla_state_machine::JobState>,
        tenants: Option<&[&str]>,
        after: JobId,
        limit: usize,
    ) -> io::Result<Vec<Job>> {
        let states: Vec<u8> = match state {
            Some(s) => vec![hk::job_state_code(s)],
            None => flotilla_state_machine::JobState::ALL
                .iter()
                .map(|s| hk::job_state_code(*s))
                .collect(),
        };
        let ids = self.page_ids(Kind::Job, &states, tenants, after.0, limit)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.job(JobId(id))?);
        }
        Ok(out)
    }

    /// The archived records after key `after` (`None`: from the first), about `max_bytes` of
    /// them (at least one if any remain): one page of a snapshot's transfer.
    pub(crate) fn records_after(&self, after: Option<&[u8]>, max_bytes: usize) -> io::Result<Vec<HistoryRecord>> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(hk::RECORDS_END);
        let mode = match after {
            Some(k) => IteratorMode::From(k, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.db.iterator_cf_opt(self.history(), opts, mode) {
            let record = record_of(item)?;
            if after == Some(record.key.as_slice()) {
                continue;
            }
            bytes += record.value.len();
            out.push(record);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
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
