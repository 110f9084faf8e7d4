//! One job of a pipeline as the user wrote it.

use super::{ArtifactsSpec, CacheSpec, RetryPolicy, StringMap};
use crate::{Resources, Role};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: CompactString,
    /// Container image; `None` runs the steps directly on the worker host (process provider).
    #[serde(default)]
    pub image: Option<String>,
    /// Shell steps run in order; the first failing step fails the attempt. `script` in files.
    #[serde(alias = "script")]
    pub steps: Vec<CompactString>,
    #[serde(default)]
    pub env: StringMap,
    /// Environment variables set from the tenant's secrets: variable name to secret name. The
    /// value reaches the worker alone; the output is masked before it is committed.
    #[serde(default)]
    pub secrets: StringMap,
    /// Secrets as files: variable name to secret name. The provider puts the value in a file
    /// (on a tmpfs, or a Kubernetes Secret volume) and the variable holds its path, for tools
    /// that read keys and configurations from files.
    #[serde(default)]
    pub secret_files: StringMap,
    /// Names of jobs of the same pipeline that must finish first.
    #[serde(default)]
    pub needs: Vec<String>,
    pub resources: Resources,
    /// Pool labels the job requires (`key = value`, all must match). `labels` in files.
    #[serde(default, alias = "labels")]
    pub constraints: StringMap,
    /// Higher runs first; FIFO among equals.
    #[serde(default)]
    pub priority: i32,
    /// Milliseconds, or a duration such as `"30m"` (`timeout` in files).
    #[serde(
        default = "JobSpec::default_timeout_ms",
        alias = "timeout",
        deserialize_with = "super::duration_ms::deserialize"
    )]
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// When set, a failure of this job does not fail its dependants or its pipeline.
    #[serde(default)]
    pub allow_failure: bool,
    /// Runs the job once per combination of these values (see `matrix.rs`); empty after
    /// expansion.
    #[serde(default)]
    pub matrix: BTreeMap<String, Vec<String>>,
    /// Runs the job only when this condition holds (`condition.rs`), decided at submission
    /// from the pipeline's source and the job's `env`; otherwise the job is SKIPPED, with
    /// the reason, and so is every job that needs it.
    #[serde(default, rename = "if", deserialize_with = "super::condition::deserialize_text")]
    pub condition: Option<String>,
    /// Waits in AWAITING_APPROVAL until someone approves it (once its needs succeeded).
    #[serde(default)]
    pub manual: bool,
    /// The least role that may approve a manual job; a submitter of its tenant by default.
    #[serde(default)]
    pub approval_role: Option<Role>,
    /// Files of the workspace kept when the job ends, for the jobs that need it and for
    /// download (boxed: most jobs keep none).
    #[serde(default)]
    pub artifacts: Option<Box<ArtifactsSpec>>,
    /// Files of the workspace restored from the tenant's cache before the first step and
    /// saved to it after success (boxed: most jobs have none).
    #[serde(default)]
    pub cache: Option<Box<CacheSpec>>,
}

impl JobSpec {
    pub const DEFAULT_TIMEOUT_MS: u64 = 3600 * 1000;

    /// The least role that may approve this job, if it is manual.
    pub fn approver(&self) -> Option<Role> {
        self.manual.then(|| self.approval_role.unwrap_or(Role::Submitter))
    }

    fn default_timeout_ms() -> u64 {
        Self::DEFAULT_TIMEOUT_MS
    }

    /// Every secret the job uses, as `(field, variable, secret name)`: those of `secrets`,
    /// then those of `secret_files`.
    pub fn secret_uses(&self) -> impl Iterator<Item = (&'static str, &str, &str)> {
        fn of<'a>(field: &'static str, m: &'a StringMap) -> impl Iterator<Item = (&'static str, &'a str, &'a str)> {
            m.iter().map(move |(var, name)| (field, var, name))
        }
        of("secrets", &self.secrets).chain(of("secret_files", &self.secret_files))
    }

    /// A minimal job: one step, small resources, defaults elsewhere. Handy for tests and examples.
    pub fn simple(name: &str, step: &str, resources: Resources) -> JobSpec {
        JobSpec {
            name: name.into(),
            image: None,
            steps: vec![step.into()],
            env: StringMap::new(),
            secrets: StringMap::new(),
            secret_files: StringMap::new(),
            needs: Vec::new(),
            resources,
            constraints: StringMap::new(),
            priority: 0,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            retry: RetryPolicy::NONE,
            allow_failure: false,
            matrix: BTreeMap::new(),
            condition: None,
            manual: false,
            approval_role: None,
            artifacts: None,
            cache: None,
        }
    }
}
