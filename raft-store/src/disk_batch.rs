//! The writes of one applied entry, as `apply` hands them to the node's store
//! (`DiskSink`), gathered for one RocksDB write.

use crate::DiskStore;
use crate::history_keys as hk;
use flotilla_state_machine::{DiskSink, DiskWrite, Job, Pipeline, PipelineId};
use rocksdb::WriteBatch;
use std::collections::BTreeMap;
use std::io;

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
            DiskWrite::Append { job, offset, data } => {
                self.batch.put_cf(output, crate::disk_store::key(job, offset), data)
            }
            DiskWrite::RemoveOutput { job } => self.batch.delete_range_cf(
                output,
                crate::disk_store::key(job, 0).as_slice(),
                crate::disk_store::job_end(job).as_slice(),
            ),
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

impl<'a> DiskBatch<'a> {
    pub(crate) fn new(store: &'a DiskStore) -> Self {
        DiskBatch {
            store,
            batch: WriteBatch::default(),
            archived: BTreeMap::new(),
            error: None,
        }
    }

    /// The RocksDB write of everything gathered, or the first failure to read a record back.
    pub(crate) fn finish(mut self) -> io::Result<WriteBatch> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.put_archived()?;
        Ok(self.batch)
    }

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
