//! Job output as writes `apply` hands to a store, so output costs disk rather than memory.
//!
//! The state keeps what scheduling and the API need about a job's output (`Job::log_bytes`,
//! `log_truncated`, the stream offset); the bytes themselves go to an `OutputSink` the caller
//! of `State::apply_with_output` provides. `apply` stays pure: it only describes the writes
//! (`OutputWrite`), each a deterministic function of the state and the entry, and hands them
//! over once the entry is accepted. The node's store puts them in RocksDB in the same step as
//! the entry; tests and the property checks use `MemoryOutput`.
//!
//! Every write is idempotent where it lands: an append names the offset it starts at, so a
//! store keyed by `(job, offset)` that sees an entry again (a replay after a restart from an
//! older snapshot) writes the same bytes under the same key, and a removal removes again.

use crate::JobId;
use std::collections::BTreeMap;

/// One change to the stored output, in the order `apply` made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputWrite {
    /// `data` belongs at `offset` of `job`'s log (always the log's length before it).
    Append { job: JobId, offset: u64, data: Vec<u8> },
    /// `job`'s whole log is gone (retention).
    Remove { job: JobId },
}

/// Where `apply` sends the output writes of an accepted entry.
pub trait OutputSink {
    fn write(&mut self, write: OutputWrite);
}

/// A sink for callers that keep no output (benchmarks of scheduling, tests of other commands).
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardOutput;

impl OutputSink for DiscardOutput {
    fn write(&mut self, _write: OutputWrite) {}
}

/// Output kept in memory, by job: the model store of the tests and the property checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryOutput {
    logs: BTreeMap<JobId, Vec<u8>>,
    /// Appends that did not start at the end of their log: always a bug in `apply`.
    misplaced: u64,
}

impl MemoryOutput {
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

    /// Total bytes held.
    pub fn bytes(&self) -> u64 {
        self.logs.values().map(|l| l.len() as u64).sum()
    }
}

impl OutputSink for MemoryOutput {
    fn write(&mut self, write: OutputWrite) {
        match write {
            OutputWrite::Append { job, offset, data } => {
                let log = self.logs.entry(job).or_default();
                if offset != log.len() as u64 {
                    self.misplaced += 1;
                }
                log.truncate(offset.min(log.len() as u64) as usize);
                log.extend_from_slice(&data);
            }
            OutputWrite::Remove { job } => {
                self.logs.remove(&job);
            }
        }
    }
}
