//! Typed reasons a pipeline spec is refused. Each names the offending field as a path
//! (`jobs[build].resources.cpu_millis`) so the REST layer can report it as is.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SpecError {
    #[error("{field}: must not be empty")]
    Empty { field: String },
    #[error("{field}: {len} bytes is longer than the limit of {max}")]
    TooLong { field: String, len: usize, max: usize },
    #[error("{field}: the pipeline would take at least {bytes} bytes once expanded, more than the limit of {max}")]
    TooLarge { field: String, bytes: u64, max: u64 },
    #[error("{field}: {count} entries is more than the limit of {max}")]
    TooMany { field: String, count: usize, max: usize },
    #[error(
        "{field}: {value:?} may contain only ASCII letters, digits, '-', '_' and '.', and must start with a letter or digit"
    )]
    InvalidName { field: String, value: String },
    #[error("{field}: job name {name:?} is used twice")]
    DuplicateJob { field: String, name: String },
    #[error("{field}: needs unknown job {need:?}")]
    UnknownNeed { field: String, need: String },
    #[error("{field}: a job cannot need itself")]
    SelfNeed { field: String },
    #[error("jobs: the needs form a cycle: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
    #[error("{field}: must be greater than zero")]
    Zero { field: String },
    #[error("{field}: {value} is outside the allowed range {min}..={max}")]
    OutOfRange {
        field: String,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("{field}: no pool can ever run this job ({reason})")]
    NoPoolFits { field: String, reason: String },
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    #[error("{field}: priority {priority} is above tenant {tenant:?}'s ceiling of {ceiling}")]
    AboveCeiling {
        field: String,
        priority: i32,
        tenant: String,
        ceiling: i32,
    },
    #[error("{field}: tenant {tenant:?} has no secret {name:?}")]
    UnknownSecret {
        field: String,
        tenant: String,
        name: String,
    },
}

impl SpecError {
    /// The path of the offending field, e.g. `jobs[build].resources.cpu_millis`.
    pub fn field(&self) -> &str {
        match self {
            SpecError::Empty { field }
            | SpecError::TooLong { field, .. }
            | SpecError::TooMany { field, .. }
            | SpecError::TooLarge { field, .. }
            | SpecError::InvalidName { field, .. }
            | SpecError::DuplicateJob { field, .. }
            | SpecError::UnknownNeed { field, .. }
            | SpecError::SelfNeed { field }
            | SpecError::Zero { field }
            | SpecError::OutOfRange { field, .. }
            | SpecError::Conflict { field, .. }
            | SpecError::NoPoolFits { field, .. }
            | SpecError::AboveCeiling { field, .. }
            | SpecError::UnknownSecret { field, .. } => field,
            SpecError::Cycle { .. } => "jobs",
        }
    }
}
