//! Keys of the column family `history`: archived pipelines and jobs, and their indexes.
//!
//! ```text
//! P <pipeline id>                                   -> the pipeline's record (codec)
//! J <job id>                                        -> the job's record (codec)
//! s <kind> <state> <id>                             -> ()   by state, every tenant
//! t <kind> <tenant length u16> <tenant> <state> <id> -> ()  by tenant and state
//! ```
//!
//! Ids are big-endian u64 and states one byte (their place in `ALL`), so a key range is one
//! kind (`p` or `j`) in one state (and tenant), in id order: a page of a list is a range read.
//! Only the records travel in snapshots; the index keys are derived from them where they are
//! written.

use flotilla_state_machine::{Job, JobId, JobState, Pipeline, PipelineId, PipelineState};

pub(crate) const PIPELINE: u8 = b'P';
pub(crate) const JOB: u8 = b'J';
const BY_STATE: u8 = b's';
const BY_TENANT: u8 = b't';
const KIND_PIPELINE: u8 = b'p';
const KIND_JOB: u8 = b'j';

pub(crate) fn record(prefix: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub(crate) fn pipeline(id: PipelineId) -> [u8; 9] {
    record(PIPELINE, id.0)
}

pub(crate) fn job(id: JobId) -> [u8; 9] {
    record(JOB, id.0)
}

/// Whether `key` is a record (not an index entry): the keys that snapshots carry.
pub(crate) fn is_record(key: &[u8]) -> bool {
    key.len() == 9 && (key[0] == PIPELINE || key[0] == JOB)
}

/// The first key past every record (`J…` and `P…` sort below it, the index keys above).
pub(crate) const RECORDS_END: &[u8] = b"Q";

pub(crate) fn pipeline_state_code(state: PipelineState) -> u8 {
    PipelineState::ALL.iter().position(|s| *s == state).unwrap_or(0) as u8
}

pub(crate) fn job_state_code(state: JobState) -> u8 {
    JobState::ALL.iter().position(|s| *s == state).unwrap_or(0) as u8
}

/// The prefix of one kind's entries in one state, every tenant.
pub(crate) fn by_state_prefix(kind: u8, state: u8) -> Vec<u8> {
    vec![BY_STATE, kind, state]
}

/// The prefix of one kind's entries of one tenant in one state. Tenant names are at most
/// `Limits::CEILING.max_name_bytes`, far below u16.
pub(crate) fn by_tenant_prefix(kind: u8, tenant: &str, state: u8) -> Vec<u8> {
    let len = u16::try_from(tenant.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(6 + tenant.len());
    k.extend_from_slice(&[BY_TENANT, kind]);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&tenant.as_bytes()[..usize::from(len)]);
    k.push(state);
    k
}

fn with_id(mut prefix: Vec<u8>, id: u64) -> Vec<u8> {
    prefix.extend_from_slice(&id.to_be_bytes());
    prefix
}

/// The index keys of a pipeline's record.
pub(crate) fn pipeline_index(p: &Pipeline) -> [Vec<u8>; 2] {
    let state = pipeline_state_code(p.state);
    [
        with_id(by_state_prefix(KIND_PIPELINE, state), p.id.0),
        with_id(by_tenant_prefix(KIND_PIPELINE, &p.tenant, state), p.id.0),
    ]
}

/// The index keys of a job's record.
pub(crate) fn job_index(j: &Job) -> [Vec<u8>; 2] {
    let state = job_state_code(j.state);
    [
        with_id(by_state_prefix(KIND_JOB, state), j.id.0),
        with_id(by_tenant_prefix(KIND_JOB, &j.tenant, state), j.id.0),
    ]
}

/// Which list a page is read from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Pipeline,
    Job,
}

impl Kind {
    pub(crate) fn code(self) -> u8 {
        match self {
            Kind::Pipeline => KIND_PIPELINE,
            Kind::Job => KIND_JOB,
        }
    }
}

/// The id at the end of an index key.
pub(crate) fn id_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}
