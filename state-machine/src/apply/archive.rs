//! Archiving: a settled pipeline and its jobs leave the in-memory state for the disk.
//!
//! Runs after each accepted command (not inside the handlers, which may still read the
//! pipeline after settling it), so the next command of a batch sees the compact record.

use super::EntryContext;
use crate::archive::NewArchived;
use crate::{DiskWrite, JobId, State};

impl State {
    /// Moves every pipeline that settled during the command to the archive: its record and
    /// its jobs' go to disk (`DiskWrite::Archive`), a compact record stays.
    pub(crate) fn archive_settled(&mut self, cx: &mut EntryContext) {
        for id in std::mem::take(&mut cx.settled) {
            // Settled twice in one command (two workers gone): archived the first time.
            let Some(p) = self.pipelines.remove(&id) else {
                continue;
            };
            self.index.pipeline_removed(&p.tenant, p.state, id);
            self.notify(&p, cx.now_ms);
            if let Some(source) = &p.source {
                let repo = self.repositories.get(&(p.tenant.clone(), source.repository.clone()));
                self.statuses.owe(id, &p.name, &p.tenant, source, repo, p.state);
            }
            let mut jobs = Vec::with_capacity(p.jobs.len());
            let (mut output_bytes, mut succeeded, mut failed, mut skipped) = (0u64, 0u32, 0u32, 0u32);
            for job in &p.jobs {
                if let Some(j) = self.jobs.remove(job) {
                    self.index.job_removed(&j.tenant, j.state, *job);
                    output_bytes = output_bytes.saturating_add(j.log_bytes);
                    match j.state {
                        crate::JobState::Succeeded => succeeded += 1,
                        crate::JobState::Failed => failed += 1,
                        crate::JobState::Skipped => skipped += 1,
                        _ => {}
                    }
                    jobs.push(*j);
                }
            }
            let record = NewArchived {
                finished_at_ms: p.finished_at_ms.unwrap_or_default(),
                first_job: p.jobs.first().copied().unwrap_or(JobId(0)),
                jobs: u32::try_from(p.jobs.len()).unwrap_or(u32::MAX),
                succeeded,
                failed,
                skipped,
                output_bytes,
            };
            self.archive.insert(id, &p.tenant, record);
            cx.write_disk(DiskWrite::Archive {
                pipeline: Box::new(p),
                jobs,
            });
        }
    }
}
