//! `AppendLog`: job output committed through Raft so any node can serve it after failover.
//!
//! Offsets make appends idempotent: a chunk resent by a new leader overlaps what is stored and
//! only its new tail is kept. Each job keeps at most `State::log_cap_bytes` (its tenant's
//! retention policy's `output_max_bytes_per_job`, else `limits.max_log_bytes_per_job`); past that
//! the output is dropped and one truncation marker is written, and the leader sends no more
//! of it: `SkipLog` moves the stream offset over what it did not send. The bytes kept leave
//! `apply` as one `DiskWrite::Append` per chunk (`output.rs`); the state keeps their count.

use super::{EntryContext, Handled};
use crate::{Event, FencingToken, Job, JobId, Rejection, Response, SpecError, State};

impl State {
    /// The job whose current, live attempt holds `fencing`: the only one whose output stream
    /// a report may move.
    fn streaming(&self, job: JobId, fencing: FencingToken) -> Result<&Job, Rejection> {
        let j = self.jobs.get(&job).ok_or(Rejection::UnknownJob(job))?;
        let current = j.fencing() == Some(fencing) && self.assignments.contains_key(&(job, j.attempt));
        if !current {
            return Err(Rejection::StaleFencing { job, got: fencing });
        }
        Ok(j)
    }

    pub(crate) fn skip_log(&mut self, job: JobId, fencing: FencingToken, offset: u64, to: u64) -> Handled {
        let j = self.streaming(job, fencing)?;
        if !j.log_truncated {
            return Err(Rejection::LogNotFull { job });
        }
        if offset > j.stream_offset || to < offset {
            return Err(Rejection::LogGap {
                job,
                offset,
                expected: j.stream_offset,
            });
        }
        if to <= j.stream_offset {
            return Ok(Response::Done { changed: false });
        }
        if let Some(j) = self.jobs.get_mut(&job) {
            j.stream_offset = to;
        }
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn append_log(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        offset: u64,
        data: &[u8],
    ) -> Handled {
        let j = self.streaming(job, fencing)?;
        if data.len() > self.limits.max_log_chunk_bytes {
            let max = self.limits.max_log_chunk_bytes;
            return Err(SpecError::TooLong {
                field: "data".into(),
                len: data.len(),
                max,
            }
            .into());
        }
        if offset > j.stream_offset {
            return Err(Rejection::LogGap {
                job,
                offset,
                expected: j.stream_offset,
            });
        }
        // `offset <= stream_offset`, itself a sum of accepted chunk lengths, so this cannot
        // overflow; checked all the same, as `offset` comes from the command.
        let end = offset.checked_add(data.len() as u64).ok_or(Rejection::LogGap {
            job,
            offset,
            expected: j.stream_offset,
        })?;
        if end <= j.stream_offset {
            return Ok(Response::Done { changed: false });
        }
        let fresh = &data[(j.stream_offset - offset) as usize..];
        let cap = self.log_cap_bytes(&j.tenant);
        let attempt = j.attempt;
        let already_truncated = j.log_truncated;
        let first_output = j.stream_offset == 0;

        let stored_from = j.log_bytes;
        let mut written = Vec::new();
        if attempt > 1 && first_output && !already_truncated {
            // First output of a retry: mark where the new attempt begins (unless the log is
            // full already: its output is dropped, and so would the mark's be).
            written.extend_from_slice(format!("\n[flotilla] attempt {attempt}\n").as_bytes());
        }
        let held = stored_from.saturating_add(written.len() as u64);
        let room = usize::try_from(cap.saturating_sub(held)).unwrap_or(usize::MAX);
        let kept = fresh.len().min(room);
        written.extend_from_slice(&fresh[..kept]);
        let truncated = kept < fresh.len();
        if truncated && !already_truncated {
            written.extend_from_slice(format!("\n[flotilla] log truncated at {cap} bytes\n").as_bytes());
        }
        let stored_to = stored_from.saturating_add(written.len() as u64);
        if !written.is_empty() {
            cx.write_disk(crate::DiskWrite::Append {
                job,
                offset: stored_from,
                data: written,
            });
        }
        let mut log_truncated = truncated;
        if let Some(j) = self.jobs.get_mut(&job) {
            j.stream_offset = end;
            j.log_bytes = stored_to;
            j.log_truncated |= truncated;
            log_truncated = j.log_truncated;
        }
        cx.emit(Event::LogAppended {
            job,
            attempt,
            offset: stored_from,
            len: stored_to - stored_from,
            truncated: log_truncated,
        });
        Ok(Response::Done { changed: true })
    }
}
