//! Structural validation of a pipeline spec against the replicated `Limits`.
//!
//! Checks that need the cluster's state (does any pool fit?) are made in `apply`, not here.

use super::{JobSpec, PipelineSpec, SpecError};
use crate::Limits;
use std::collections::BTreeMap;

/// Names are ASCII letters, digits, `-`, `_`, `.`, start with a letter or digit, and are not
/// longer than `limits.max_name_bytes`.
pub(crate) fn validate_name(field: &str, value: &str, limits: &Limits) -> Result<(), SpecError> {
    if value.is_empty() {
        return Err(SpecError::Empty {
            field: field.to_string(),
        });
    }
    if value.len() > limits.max_name_bytes {
        return Err(SpecError::TooLong {
            field: field.to_string(),
            len: value.len(),
            max: limits.max_name_bytes,
        });
    }
    let first_ok = value.as_bytes()[0].is_ascii_alphanumeric();
    let rest_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !first_ok || !rest_ok {
        return Err(SpecError::InvalidName {
            field: field.to_string(),
            value: value.to_string(),
        });
    }
    Ok(())
}

/// A label key: a name, or `prefix/name` as Kubernetes writes them (`kubernetes.io/arch`).
pub(crate) fn validate_label_key(field: &str, key: &str, limits: &Limits) -> Result<(), SpecError> {
    if key.len() > limits.max_name_bytes {
        return Err(SpecError::TooLong {
            field: field.to_string(),
            len: key.len(),
            max: limits.max_name_bytes,
        });
    }
    let parts: Vec<&str> = key.split('/').collect();
    if parts.len() > 2 || parts.iter().any(|p| validate_name(field, p, limits).is_err()) {
        return Err(SpecError::InvalidName {
            field: field.to_string(),
            value: key.to_string(),
        });
    }
    Ok(())
}

pub(super) fn check_len(field: String, len: usize, max: usize) -> Result<(), SpecError> {
    if len > max {
        Err(SpecError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

pub(super) fn check_count(field: String, count: usize, max: usize) -> Result<(), SpecError> {
    if count > max {
        Err(SpecError::TooMany { field, count, max })
    } else {
        Ok(())
    }
}

pub(super) fn check_range(field: String, value: i64, min: i64, max: i64) -> Result<(), SpecError> {
    if value < min || value > max {
        Err(SpecError::OutOfRange { field, value, min, max })
    } else {
        Ok(())
    }
}

impl PipelineSpec {
    /// Checks names, sizes, ranges and the DAG. Returns the first problem found.
    pub fn validate(&self, limits: &Limits) -> Result<(), SpecError> {
        validate_name("name", &self.name, limits)?;
        if self.jobs.is_empty() {
            return Err(SpecError::Empty { field: "jobs".into() });
        }
        check_count("jobs".into(), self.jobs.len(), limits.max_jobs_per_pipeline)?;
        let mut index_by_name: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, job) in self.jobs.iter().enumerate() {
            validate_name(&format!("jobs[{i}].name"), &job.name, limits)?;
            if index_by_name.insert(job.name.as_str(), i).is_some() {
                return Err(SpecError::DuplicateJob {
                    field: format!("jobs[{i}].name"),
                    name: job.name.to_string(),
                });
            }
        }
        for job in &self.jobs {
            job.validate(limits, &index_by_name)?;
        }
        check_acyclic(&self.jobs, &index_by_name)
    }
}

impl JobSpec {
    fn validate(&self, limits: &Limits, jobs: &BTreeMap<&str, usize>) -> Result<(), SpecError> {
        let at = |field: &str| format!("jobs[{}].{field}", self.name);
        if let Some(image) = &self.image {
            if image.is_empty() {
                return Err(SpecError::Empty { field: at("image") });
            }
            check_len(at("image"), image.len(), limits.max_value_bytes)?;
        }
        if self.steps.is_empty() {
            return Err(SpecError::Empty { field: at("steps") });
        }
        check_count(at("steps"), self.steps.len(), limits.max_steps_per_job)?;
        for (i, step) in self.steps.iter().enumerate() {
            if step.trim().is_empty() {
                return Err(SpecError::Empty {
                    field: at(&format!("steps[{i}]")),
                });
            }
            check_len(at(&format!("steps[{i}]")), step.len(), limits.max_step_bytes)?;
        }
        check_count(at("env"), self.env.len(), limits.max_env_per_job)?;
        for (key, value) in &self.env {
            validate_env_key(&at(&format!("env.{key}")), key, limits)?;
            check_len(at(&format!("env.{key}")), value.len(), limits.max_value_bytes)?;
        }
        check_count(at("secrets"), self.secrets.len(), crate::secret::MAX_SECRETS_PER_JOB)?;
        check_count(
            at("secret_files"),
            self.secrets.len() + self.secret_files.len(),
            crate::secret::MAX_SECRETS_PER_JOB,
        )?;
        for (source, key, secret) in self.secret_uses() {
            let field = at(&format!("{source}.{key}"));
            validate_env_key(&field, key, limits)?;
            validate_name(&field, secret, limits)?;
            let also = if self.env.contains_key(key) {
                Some("env")
            } else if source == "secret_files" && self.secrets.contains_key(key) {
                Some("secrets")
            } else {
                None
            };
            if let Some(other) = also {
                return Err(SpecError::Conflict {
                    field,
                    reason: format!("{key} is set in {other} as well"),
                });
            }
        }
        check_count(at("constraints"), self.constraints.len(), limits.max_labels)?;
        for (key, value) in &self.constraints {
            validate_label_key(&at(&format!("constraints.{key}")), key, limits)?;
            check_len(at(&format!("constraints.{key}")), value.len(), limits.max_value_bytes)?;
        }
        check_count(at("needs"), self.needs.len(), limits.max_needs_per_job)?;
        for need in &self.needs {
            if need == self.name {
                return Err(SpecError::SelfNeed { field: at("needs") });
            }
            if !jobs.contains_key(need.as_str()) {
                return Err(SpecError::UnknownNeed {
                    field: at("needs"),
                    need: need.clone(),
                });
            }
        }
        if self.resources.cpu_millis == 0 {
            return Err(SpecError::Zero {
                field: at("resources.cpu_millis"),
            });
        }
        if self.resources.memory_mib == 0 {
            return Err(SpecError::Zero {
                field: at("resources.memory_mib"),
            });
        }
        limits.check_resources(&at("resources"), &self.resources)?;
        if let Some(condition) = &self.condition {
            super::Condition::parse(condition).map_err(|reason| SpecError::Conflict {
                field: at("if"),
                reason,
            })?;
        }
        if let Some(cache) = &self.cache {
            cache.validate(&at)?;
        }
        if let Some(artifacts) = &self.artifacts {
            artifacts.validate(&at)?;
        }
        if self.approval_role.is_some() && !self.manual {
            return Err(SpecError::Conflict {
                field: at("approval_role"),
                reason: "only a manual job is approved".into(),
            });
        }
        let p = i64::from(limits.max_priority_abs);
        check_range(at("priority"), i64::from(self.priority), -p, p)?;
        if self.timeout_ms == 0 {
            return Err(SpecError::Zero {
                field: at("timeout_ms"),
            });
        }
        check_range(
            at("timeout_ms"),
            clamp_i64(self.timeout_ms),
            1,
            clamp_i64(limits.max_timeout_ms),
        )?;
        check_range(
            at("retry.max_retries"),
            i64::from(self.retry.max_retries),
            0,
            i64::from(limits.max_retries),
        )?;
        let max_backoff = clamp_i64(limits.max_backoff_ms);
        check_range(
            at("retry.backoff_base_ms"),
            clamp_i64(self.retry.backoff_base_ms),
            0,
            max_backoff,
        )?;
        check_range(
            at("retry.backoff_max_ms"),
            clamp_i64(self.retry.backoff_max_ms),
            clamp_i64(self.retry.backoff_base_ms),
            max_backoff,
        )?;
        Ok(())
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Environment keys follow POSIX: letters, digits and `_`, not starting with a digit.
pub(super) fn validate_env_key(field: &str, key: &str, limits: &Limits) -> Result<(), SpecError> {
    if key.is_empty() {
        return Err(SpecError::Empty {
            field: field.to_string(),
        });
    }
    check_len(field.to_string(), key.len(), limits.max_name_bytes)?;
    let ok = !key.as_bytes()[0].is_ascii_digit() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(SpecError::InvalidName {
            field: field.to_string(),
            value: key.to_string(),
        });
    }
    Ok(())
}

/// Depth-first search with colours; on a back edge, reports the cycle as a list of names
/// that starts and ends with the same job.
fn check_acyclic(jobs: &[JobSpec], index: &BTreeMap<&str, usize>) -> Result<(), SpecError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour = vec![Colour::White; jobs.len()];
    for root in 0..jobs.len() {
        if colour[root] != Colour::White {
            continue;
        }
        // Explicit stack of (job, next need to visit) so deep DAGs cannot overflow the stack.
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = Colour::Grey;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(need) = jobs[node].needs.get(*next) {
                *next += 1;
                let child = index[need.as_str()];
                match colour[child] {
                    Colour::White => {
                        colour[child] = Colour::Grey;
                        stack.push((child, 0));
                    }
                    Colour::Grey => {
                        let start = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[start..].iter().map(|(n, _)| jobs[*n].name.to_string()).collect();
                        cycle.push(jobs[child].name.to_string());
                        return Err(SpecError::Cycle { cycle });
                    }
                    Colour::Black => {}
                }
            } else {
                colour[node] = Colour::Black;
                stack.pop();
            }
        }
    }
    Ok(())
}
