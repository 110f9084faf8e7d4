//! What `apply` keeps on disk rather than in memory: job output and the history of settled
//! pipelines, as writes it hands to a store.
//!
//! The in-memory state keeps what scheduling and driving need: live pipelines and jobs, each
//! job's count of stored output (`Job::log_bytes`), and for a settled pipeline a compact
//! record (`archive.rs`). The bytes of output and the full records of settled pipelines and
//! their jobs go to a `DiskSink` the caller of `State::apply_with_disk` provides. `apply`
//! stays pure: it only describes the writes (`DiskWrite`), each a deterministic function of
//! the state and the entry, and hands them over once the entry is accepted. The node's store
//! puts them in RocksDB in the same step as the entry; tests and the property checks use
//! `MemoryDisk`.
//!
//! Every write is idempotent where it lands: an append names the offset it starts at, an
//! archive puts the same record under the same id, a removal removes again. So a store that
//! sees an entry again (a replay after a restart from an older snapshot) converges on the same
//! contents.

use crate::{Job, JobId, Pipeline, PipelineId};
use std::collections::BTreeMap;

/// One change to what is kept on disk, in the order `apply` made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskWrite {
    /// `data` belongs at `offset` of `job`'s log (always the log's length before it).
    Append { job: JobId, offset: u64, data: Vec<u8> },
    /// `job`'s whole log is gone (retention).
    RemoveOutput { job: JobId },
    /// `pipeline` settled (finished, no worker left): its record and its jobs', final, leave
    /// the in-memory state for the store.
    Archive { pipeline: Box<Pipeline>, jobs: Vec<Job> },
    /// The archived `pipeline` and its jobs are gone (retention).
    Forget { pipeline: PipelineId },
    /// The output of the archived `pipeline`'s jobs was removed at `at_ms` (the records stay,
    /// saying so: the pipeline's `output_removed_at_ms`, each job's `log_bytes` of 0).
    MarkOutputRemoved { pipeline: PipelineId, at_ms: u64 },
}

/// Where `apply` sends the disk writes of an accepted entry.
pub trait DiskSink {
    fn write(&mut self, write: DiskWrite);
}

/// A sink for callers that keep nothing on disk (benchmarks of scheduling, tests of other
/// commands).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardDisk;

impl DiskSink for DiscardDisk {
    fn write(&mut self, _write: DiskWrite) {}
}

/// What a store keeps, in memory: the model store of the tests and the property checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryDisk {
    logs: BTreeMap<JobId, Vec<u8>>,
    /// Appends that did not start at the end of their log: always a bug in `apply`.
    misplaced: u64,
    pipelines: BTreeMap<PipelineId, Pipeline>,
    jobs: BTreeMap<JobId, Job>,
}

impl MemoryDisk {
    pub fn log(&self, job: JobId) -> &[u8] {
        self.logs.get(&job).map(Vec::as_slice).unwrap_or_default()
    }

    /// Jobs holding output, with their lengths.
    pub fn lengths(&self) -> impl Iterator<Item = (JobId, u64)> + '_ {
        self.logs.iter().map(|(j, l)| (*j, l.len() as u64))
    }

    pub fn misplaced(&self) -> u64 {
        self.misplaced
    }

    /// Total bytes of output held.
    pub fn bytes(&self) -> u64 {
        self.logs.values().map(|l| l.len() as u64).sum()
    }

    /// An archived pipeline's record.
    pub fn pipeline(&self, id: PipelineId) -> Option<&Pipeline> {
        self.pipelines.get(&id)
    }

    /// An archived job's record.
    pub fn job(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Every archived pipeline, by id.
    pub fn pipelines(&self) -> impl Iterator<Item = &Pipeline> {
        self.pipelines.values()
    }

    /// Every archived job, by id.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }
}

impl DiskSink for MemoryDisk {
    fn write(&mut self, write: DiskWrite) {
        match write {
            DiskWrite::Append { job, offset, data } => {
                let log = self.logs.entry(job).or_default();
                if offset != log.len() as u64 {
                    self.misplaced += 1;
                }
                log.truncate(offset.min(log.len() as u64) as usize);
                log.extend_from_slice(&data);
            }
            DiskWrite::RemoveOutput { job } => {
                self.logs.remove(&job);
            }
            DiskWrite::Archive { pipeline, jobs } => {
                for job in jobs {
                    self.jobs.insert(job.id, job);
                }
                self.pipelines.insert(pipeline.id, *pipeline);
            }
            DiskWrite::Forget { pipeline } => {
                if let Some(p) = self.pipelines.remove(&pipeline) {
                    for job in &p.jobs {
                        self.jobs.remove(job);
                    }
                }
            }
            DiskWrite::MarkOutputRemoved { pipeline, at_ms } => {
                if let Some(p) = self.pipelines.get_mut(&pipeline) {
                    p.output_removed_at_ms = Some(at_ms);
                    for job in &p.jobs {
                        if let Some(j) = self.jobs.get_mut(job) {
                            j.log_bytes = 0;
                        }
                    }
                }
            }
        }
    }
}

/// Read access to archived records, for completing answers `apply` gave without them. A store
/// on disk can fail to read; its error is handed back to the caller (the node answers 503), never
/// taken for "no record", which would turn a repeated key into a refusal or a cancel into
/// "unknown job".
pub trait ArchivedRecords {
    /// What a failed read says (`Infallible` for a store in memory).
    type Error;

    fn archived_pipeline(&self, id: PipelineId) -> Result<Option<Pipeline>, Self::Error>;
    fn archived_job(&self, id: JobId) -> Result<Option<Job>, Self::Error>;

    /// The archived jobs of `p`, in its order. A store that can read them together (their
    /// ids are consecutive) does so.
    fn archived_jobs(&self, p: &Pipeline) -> Result<Vec<Job>, Self::Error> {
        let mut jobs = Vec::with_capacity(p.jobs.len());
        for id in &p.jobs {
            if let Some(j) = self.archived_job(*id)? {
                jobs.push(j);
            }
        }
        Ok(jobs)
    }
}

impl ArchivedRecords for MemoryDisk {
    type Error = std::convert::Infallible;

    fn archived_pipeline(&self, id: PipelineId) -> Result<Option<Pipeline>, Self::Error> {
        Ok(self.pipeline(id).cloned())
    }

    fn archived_job(&self, id: JobId) -> Result<Option<Job>, Self::Error> {
        Ok(self.job(id).cloned())
    }
}

/// Fills in the jobs of a submission's answer given again (a session's retry, a repeated
/// idempotency key) after its pipeline was archived: `apply` cannot read the disk, so it
/// answers with the pipeline alone, and the reader completes the answer from the records, as
/// the first answer had it. A pipeline removed by retention stays without jobs.
/// On a failed read the answer is left as it was and the error returned.
pub fn complete_submission<R: ArchivedRecords>(response: &mut crate::Response, records: &R) -> Result<(), R::Error> {
    complete_repeat(response, records, None)
}

/// As `complete_submission`, and first refuses, as `apply` refuses it for a live pipeline, a
/// repeated idempotency key whose pipeline was archived and whose spec differs from the one
/// submitted now. `apply` cannot read the archived specs, so it answers a repeat of an
/// archived pipeline with the pipeline alone; the node, holding the records and the request,
/// compares them here. `spec` is the submitted spec after matrix expansion
/// (`PipelineSpec::expand_matrix`), as the jobs were stored. Nothing in the state depends on
/// the outcome (a repeat changes nothing), so every node answers alike from the same records.
/// A pipeline removed by retention is answered as before: its spec is gone.
pub fn refuse_reused_key<R: ArchivedRecords>(
    response: &mut crate::Response,
    records: &R,
    key: &str,
    spec: &crate::PipelineSpec,
) -> Result<(), R::Error> {
    complete_repeat(response, records, Some((key, spec)))
}

/// The records are read once for both the comparison and the answer.
fn complete_repeat<R: ArchivedRecords>(
    response: &mut crate::Response,
    records: &R,
    submitted: Option<(&str, &crate::PipelineSpec)>,
) -> Result<(), R::Error> {
    let crate::Response::Submitted {
        pipeline,
        jobs,
        duplicate,
    } = response
    else {
        return Ok(());
    };
    if !jobs.is_empty() {
        return Ok(());
    }
    let Some(p) = records.archived_pipeline(*pipeline)? else {
        return Ok(());
    };
    let archived = records.archived_jobs(&p)?;
    // Only a repeated key is compared; a session's retry is the same request.
    if let Some((key, spec)) = submitted.filter(|_| *duplicate)
        && (archived.len() != p.jobs.len() || !spec.is_submitted_as(&p.name, archived.iter().map(|j| &j.spec)))
    {
        *response = crate::Response::Rejected(crate::Rejection::IdempotencyKeyReused {
            key: key.to_string(),
            pipeline: p.id,
        });
        return Ok(());
    }
    *jobs = archived
        .into_iter()
        .map(|j| crate::JobRef {
            name: j.spec.name.into(),
            id: j.id,
        })
        .collect();
    Ok(())
}

/// Completes the answer to approving `job` when `apply` did not find it live: a job archived
/// with its settled pipeline is answered from its record (approved: the first approval,
/// repeated; otherwise already finished). On a failed read the answer is left as it was.
pub fn complete_approval<R: ArchivedRecords>(
    response: &mut crate::Response,
    job: JobId,
    records: &R,
) -> Result<(), R::Error> {
    if let Some(j) = archived_instead(response, job, records)? {
        *response = match j.gate.as_deref() {
            Some(crate::Gate::Approved { by, .. }) => crate::Response::Approved { job, by: by.clone() },
            _ => crate::Response::Rejected(crate::Rejection::AlreadyFinished { job, state: j.state }),
        };
    }
    Ok(())
}

/// Completes the answer to cancelling `job` when `apply` did not find it live: a job archived
/// with its settled pipeline is answered from its record as a live one would have been
/// (cancelled: the cancel that did it, repeated; succeeded or failed: already finished).
/// On a failed read the answer is left as it was and the error returned.
pub fn complete_cancel<R: ArchivedRecords>(
    response: &mut crate::Response,
    job: JobId,
    records: &R,
) -> Result<(), R::Error> {
    if let Some(j) = archived_instead(response, job, records)? {
        *response = match j.state {
            crate::JobState::Cancelled => crate::Response::Cancelled { jobs: vec![job] },
            state => crate::Response::Rejected(crate::Rejection::AlreadyFinished { job, state }),
        };
    }
    Ok(())
}

/// The archived record of `job` when `response` refused it as unknown (it left the live
/// state with its settled pipeline), so that the answer may be given from it.
fn archived_instead<R: ArchivedRecords>(
    response: &crate::Response,
    job: JobId,
    records: &R,
) -> Result<Option<crate::Job>, R::Error> {
    match response {
        crate::Response::Rejected(crate::Rejection::UnknownJob(unknown)) if *unknown == job => {
            records.archived_job(job)
        }
        _ => Ok(None),
    }
}
