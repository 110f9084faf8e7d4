//! `matrix` expansion: one job written once runs once per combination of its matrix values.
//!
//! ```yaml
//! - name: test
//!   matrix: { os: [linux, bsd], rust: ["1.80", stable] }
//! ```
//! becomes four jobs, `test-linux-1.80`, `test-linux-stable`, `test-bsd-1.80` and
//! `test-bsd-stable`, each with the combination in its environment (`os=linux`, `rust=1.80`).
//! Keys vary in alphabetical order, values in the order written. A job that `needs: [test]`
//! needs every expansion. Expansion runs inside `apply` before validation, so the replicated
//! log keeps what the user submitted and every replica expands it the same way.

use super::{JobSpec, PipelineSpec, SpecError, StringMap};
use crate::Limits;
use std::collections::BTreeMap;

/// A pipeline after expansion, with where each job came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expanded {
    pub spec: PipelineSpec,
    /// Expanded job name → the name of the job written in the spec (itself when no matrix).
    pub origin: BTreeMap<String, String>,
}

impl PipelineSpec {
    /// Expands every job's `matrix`. The result has no matrix left; it still needs `validate`.
    pub fn expand_matrix(&self, limits: &Limits) -> Result<Expanded, SpecError> {
        let mut jobs = Vec::with_capacity(self.jobs.len());
        let mut origin = BTreeMap::new();
        let mut expansions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        // What the expanded jobs may still take, counted before each job is cloned.
        let mut budget = Budget {
            left_bytes: limits.max_pipeline_bytes,
            max_bytes: limits.max_pipeline_bytes,
            used_bytes: 0,
        };
        for job in &self.jobs {
            let expanded = job.expand(limits, &mut budget)?;
            if jobs.len() + expanded.len() > limits.max_jobs_per_pipeline {
                let count = jobs.len() + expanded.len();
                return Err(SpecError::TooMany {
                    field: "jobs".into(),
                    count,
                    max: limits.max_jobs_per_pipeline,
                });
            }
            let names: Vec<String> = expanded.iter().map(|j| j.name.to_string()).collect();
            for name in &names {
                origin.entry(name.clone()).or_insert_with(|| job.name.to_string());
            }
            // A name used twice keeps its first expansion; `validate` reports the duplicate.
            expansions.entry(job.name.as_str()).or_insert(names);
            jobs.extend(expanded);
        }
        for job in &mut jobs {
            let mut needs: Vec<String> = Vec::with_capacity(job.needs.len());
            for need in &job.needs {
                let targets = expansions
                    .get(need.as_str())
                    .map_or_else(|| vec![need.clone()], Clone::clone);
                for t in targets {
                    if !needs.contains(&t) {
                        needs.push(t);
                    }
                }
            }
            job.needs = needs;
        }
        Ok(Expanded {
            spec: PipelineSpec {
                name: self.name.clone(),
                jobs,
            },
            origin,
        })
    }
}

impl JobSpec {
    fn expand(&self, limits: &Limits, budget: &mut Budget) -> Result<Vec<JobSpec>, SpecError> {
        if self.matrix.is_empty() {
            budget.take(format!("jobs[{}]", self.name), self.size_bytes(), 1)?;
            return Ok(vec![self.clone()]);
        }
        let at = |field: &str| format!("jobs[{}].matrix{field}", self.name);
        let mut combinations: usize = 1;
        for (key, values) in &self.matrix {
            super::validate::validate_env_key(&at(&format!(".{key}")), key, limits)?;
            if self.env.contains_key(key) {
                return Err(SpecError::Conflict {
                    field: at(&format!(".{key}")),
                    reason: format!("env also sets {key}"),
                });
            }
            if values.is_empty() {
                return Err(SpecError::Empty {
                    field: at(&format!(".{key}")),
                });
            }
            for (i, value) in values.iter().enumerate() {
                let field = at(&format!(".{key}[{i}]"));
                if value.is_empty() {
                    return Err(SpecError::Empty { field });
                }
                if value.len() > limits.max_value_bytes {
                    return Err(SpecError::TooLong {
                        field,
                        len: value.len(),
                        max: limits.max_value_bytes,
                    });
                }
            }
            combinations = combinations.saturating_mul(values.len());
        }
        if combinations > limits.max_jobs_per_pipeline {
            return Err(SpecError::TooMany {
                field: at(""),
                count: combinations,
                max: limits.max_jobs_per_pipeline,
            });
        }
        // Each expansion is the job without its matrix, plus one env entry and one name
        // suffix per axis.
        let per_axis: u64 = self
            .matrix
            .iter()
            .map(|(key, values)| {
                let longest = values.iter().map(String::len).max().unwrap_or(0) as u64;
                2 * ITEM_OVERHEAD_BYTES + key.len() as u64 + 2 * longest
            })
            .sum();
        let matrix_bytes: u64 = self
            .matrix
            .iter()
            .map(|(k, vs)| size_of_str(k) + vs.iter().map(|v| size_of_str(v)).sum::<u64>())
            .sum();
        let per_job = self.size_bytes().saturating_sub(matrix_bytes).saturating_add(per_axis);
        budget.take(at(""), per_job, combinations as u64)?;
        let axes: Vec<(&String, &Vec<String>)> = self.matrix.iter().collect();
        let mut jobs = Vec::with_capacity(combinations);
        // An odometer over the axes: the last key varies fastest.
        let mut digits = vec![0usize; axes.len()];
        for _ in 0..combinations {
            let mut job = JobSpec {
                matrix: BTreeMap::new(),
                ..self.clone()
            };
            for (axis, (key, values)) in axes.iter().enumerate() {
                let value = &values[digits[axis]];
                job.name.push('-');
                job.name.extend(value.chars().map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                }));
                job.env.insert((*key).clone(), value.clone());
            }
            jobs.push(job);
            for axis in (0..axes.len()).rev() {
                digits[axis] += 1;
                if digits[axis] < axes[axis].1.len() {
                    break;
                }
                digits[axis] = 0;
            }
        }
        Ok(jobs)
    }
}

/// Per-item overhead `JobSpec::size_bytes` adds to each string (its header and allocation).
const ITEM_OVERHEAD_BYTES: u64 = 32;

fn size_of_str(s: &str) -> u64 {
    ITEM_OVERHEAD_BYTES + s.len() as u64
}

impl JobSpec {
    /// The size of this job in memory, approximately: every string's length plus a fixed
    /// overhead per string and per job. What `Limits::max_pipeline_bytes` bounds.
    pub fn size_bytes(&self) -> u64 {
        let map = |m: &StringMap| m.iter().map(|(k, v)| size_of_str(k) + size_of_str(v)).sum::<u64>();
        let fixed = 256;
        fixed
            + size_of_str(&self.name)
            + self.image.as_deref().map_or(0, size_of_str)
            + self.steps.iter().map(|s| size_of_str(s)).sum::<u64>()
            + map(&self.env)
            + map(&self.secrets)
            + map(&self.secret_files)
            + self.needs.iter().map(|n| size_of_str(n)).sum::<u64>()
            + map(&self.constraints)
            + self.condition.as_deref().map_or(0, size_of_str)
            + self.artifacts.as_deref().map_or(0, super::ArtifactsSpec::size_bytes)
            + self.cache.as_deref().map_or(0, super::CacheSpec::size_bytes)
            + self
                .matrix
                .iter()
                .map(|(k, vs)| size_of_str(k) + vs.iter().map(|v| size_of_str(v)).sum::<u64>())
                .sum::<u64>()
    }
}

/// The bytes a pipeline's expansion may still take.
struct Budget {
    left_bytes: u64,
    max_bytes: u64,
    used_bytes: u64,
}

impl Budget {
    /// Takes `count` jobs of `each_bytes` from the budget, or refuses naming `field`.
    fn take(&mut self, field: String, each_bytes: u64, count: u64) -> Result<(), SpecError> {
        let bytes = each_bytes.saturating_mul(count);
        self.used_bytes = self.used_bytes.saturating_add(bytes);
        if bytes > self.left_bytes {
            return Err(SpecError::TooLarge {
                field,
                bytes: self.used_bytes,
                max: self.max_bytes,
            });
        }
        self.left_bytes -= bytes;
        Ok(())
    }
}
