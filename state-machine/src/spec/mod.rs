//! What users submit: a pipeline is a DAG of jobs. Validation lives beside the types so that
//! nothing malformed ever reaches the replicated state.

mod artifacts_spec;
mod cache_spec;
mod condition;
pub(crate) mod duration_ms;
mod error;
mod job_spec;
mod matrix;
mod pipeline_spec;
mod retry_policy;
mod string_map;
mod validate;

pub use artifacts_spec::{
    ArtifactsSpec, ArtifactsWhen, MAX_ARTIFACT_EXPIRY_MS, MAX_ARTIFACT_PATH_BYTES, MAX_ARTIFACT_PATHS,
};
pub use cache_spec::{
    CachePolicy, CacheSpec, MAX_CACHE_KEY_BYTES, MAX_CACHE_KEY_FILES, MAX_CACHE_PATHS, key_problem as cache_key_problem,
};
pub use condition::{
    CONDITION_FUEL_PER_PIPELINE, Condition, Fuel, MAX_CONDITION_BYTES, MAX_CONDITION_DEPTH, OutOfFuel,
};
pub use error::SpecError;
pub use job_spec::JobSpec;
pub use matrix::Expanded;
pub use pipeline_spec::PipelineSpec;
pub use retry_policy::RetryPolicy;
pub use string_map::StringMap;
pub(crate) use validate::{validate_label_key, validate_name};
