//! Reads of archived pipelines and jobs (column family `history`, `history_keys.rs`): by key,
//! by page of an index, and as the records a snapshot carries.

use crate::DiskStore;
use crate::history_keys::{self as hk, Kind};
use flotilla_state_machine::{Job, JobId, Pipeline, PipelineId};
use rocksdb::{Direction, IteratorMode, ReadOptions};
use std::io;

/// One archived record as stored: its key (`P` or `J` and the id) and its encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

pub(crate) fn record_of(item: Result<crate::disk_store::StoredPair, rocksdb::Error>) -> io::Result<HistoryRecord> {
    let (k, v) = item.map_err(io::Error::other)?;
    if !hk::is_record(&k) {
        return Err(crate::codec::invalid_data("a history key that is not a record"));
    }
    Ok(HistoryRecord {
        key: k.into_vec(),
        value: v.into_vec(),
    })
}

impl DiskStore {
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
    pub(crate) fn archived(&self, id: PipelineId) -> io::Result<Option<(Pipeline, Vec<Job>)>> {
        let Some(p) = self.pipeline(id)? else {
            return Ok(None);
        };
        let jobs = self.jobs_of(&p)?;
        Ok(Some((p, jobs)))
    }

    /// The archived jobs of `p`, in id order (its order): its jobs' ids are consecutive, so
    /// one range read.
    pub fn jobs_of(&self, p: &Pipeline) -> io::Result<Vec<Job>> {
        let (Some(first), Some(last)) = (p.jobs.first(), p.jobs.last()) else {
            return Ok(Vec::new());
        };
        let mut jobs = self.jobs_between(*first, *last)?;
        jobs.retain(|j| j.pipeline == p.id);
        Ok(jobs)
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
}
