//! A job's `cache`: files of its workspace (dependencies, build outputs) restored before its
//! first step from the last job of its tenant that saved the same key, and saved under that key
//! when it succeeds. Unlike artifacts, a cache is a speed-up, never an input a job relies on:
//! a missing cache is a cold start, a cache that cannot be saved is a note on the attempt, and
//! the least recently used caches of a tenant give way when its budget is full.

use super::SpecError;
use super::artifacts_spec::check_paths;
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Most paths one cache may hold.
pub const MAX_CACHE_PATHS: usize = 32;
/// Longest cache key, in bytes, once resolved (`files`' digest appended).
pub const MAX_CACHE_KEY_BYTES: usize = 160;
/// Most repository files one key may be derived from.
pub const MAX_CACHE_KEY_FILES: usize = 8;

/// Whether a job restores its cache, saves it, or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CachePolicy {
    /// Restore before the first step, save after success (the default).
    #[default]
    PullPush,
    /// Restore only (jobs that read a cache another job fills).
    Pull,
    /// Save only (a job that rebuilds the cache from nothing).
    Push,
}

impl CachePolicy {
    pub fn pulls(self) -> bool {
        self != CachePolicy::Push
    }

    pub fn pushes(self) -> bool {
        self != CachePolicy::Pull
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// The cache's name within the tenant: letters, digits, `.`, `_` and `-`. Jobs of any
    /// pipeline of the tenant that name the same key share the cache.
    pub key: CompactString,
    /// Files of the repository (lock files) whose contents the key depends on: a
    /// repository's pipeline file names them, and the node that reads the file at its commit
    /// appends their digest to `key` (`key-<16 hex digits>`) and empties this list before the
    /// pipeline is submitted. A pipeline submitted directly names its key in full.
    #[serde(default)]
    pub files: Vec<CompactString>,
    /// Files or directories of the workspace the cache holds.
    pub paths: Vec<CompactString>,
    #[serde(default)]
    pub policy: CachePolicy,
}

impl CacheSpec {
    /// Checks the key and the paths; `at` names the job's field.
    pub(crate) fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), SpecError> {
        if let Some(reason) = key_problem(&self.key) {
            return Err(SpecError::Conflict {
                field: at("cache.key"),
                reason: reason.to_string(),
            });
        }
        if !self.files.is_empty() {
            return Err(SpecError::Conflict {
                field: at("cache.files"),
                reason: "is read from a repository at the pipeline's commit: only a repository's pipeline file may \
                         name it; a pipeline submitted directly names its key in full"
                    .into(),
            });
        }
        if self.paths.is_empty() {
            return Err(SpecError::Empty {
                field: at("cache.paths"),
            });
        }
        check_paths(at, "cache.paths", &self.paths, MAX_CACHE_PATHS)
    }

    /// Checks `files` before they are read (a repository's pipeline file): each a path of the
    /// repository, at most `MAX_CACHE_KEY_FILES`. `at` names the job's field.
    pub fn validate_files(&self, at: &dyn Fn(&str) -> String) -> Result<(), SpecError> {
        check_paths(at, "cache.files", &self.files, MAX_CACHE_KEY_FILES)
    }

    /// Approximate bytes in memory, for `JobSpec::size_bytes`.
    pub(crate) fn size_bytes(&self) -> u64 {
        64 + self.key.len() as u64
            + self
                .paths
                .iter()
                .chain(&self.files)
                .map(|p| 32 + p.len() as u64)
                .sum::<u64>()
    }
}

/// Why `key` cannot name a cache, if it cannot.
pub fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        return Some("must not be empty");
    }
    if key.len() > MAX_CACHE_KEY_BYTES {
        return Some("is longer than 160 bytes");
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Some("may hold only letters, digits, '.', '_' and '-'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &str, paths: &[&str]) -> CacheSpec {
        CacheSpec {
            key: key.into(),
            files: Vec::new(),
            paths: paths.iter().map(|p| (*p).into()).collect(),
            policy: CachePolicy::PullPush,
        }
    }

    fn check(s: &CacheSpec) -> Result<(), SpecError> {
        s.validate(&|f| format!("jobs[build].{f}"))
    }

    #[test]
    fn keys_are_plain_names() {
        assert!(check(&spec("cargo-1.95_x86.64", &["target"])).is_ok());
        for bad in ["", "a b", "a/b", "é", &"k".repeat(MAX_CACHE_KEY_BYTES + 1)] {
            let err = check(&spec(bad, &["target"])).unwrap_err().to_string();
            assert!(err.starts_with("jobs[build].cache.key"), "{bad}: {err}");
        }
    }

    #[test]
    fn paths_stay_inside_the_workspace_and_files_need_a_repository() {
        for bad in ["/root", "../x", "a/*"] {
            let err = check(&spec("k", &[bad])).unwrap_err().to_string();
            assert!(err.starts_with("jobs[build].cache.paths[0]"), "{bad}: {err}");
        }
        assert!(check(&spec("k", &[])).unwrap_err().to_string().contains("cache.paths"));
        let mut s = spec("k", &["target"]);
        s.files = vec!["Cargo.lock".into()];
        assert!(check(&s).unwrap_err().to_string().contains("cache.files"));
        assert!(s.validate_files(&|f| f.to_string()).is_ok());
        s.files = vec!["../Cargo.lock".into()];
        assert!(
            s.validate_files(&|f| f.to_string())
                .unwrap_err()
                .to_string()
                .contains("cache.files[0]")
        );
    }

    #[test]
    fn files_read_the_policy() {
        let s: CacheSpec = serde_json::from_str(r#"{"key":"k","paths":["t"],"policy":"pull"}"#).unwrap();
        assert!(s.policy.pulls() && !s.policy.pushes());
        let s: CacheSpec = serde_json::from_str(r#"{"key":"k","paths":["t"]}"#).unwrap();
        assert_eq!(s.policy, CachePolicy::PullPush);
        assert!(CachePolicy::Push.pushes() && !CachePolicy::Push.pulls());
        assert!(serde_json::from_str::<CacheSpec>(r#"{"key":"k","paths":["t"],"policy":"always"}"#).is_err());
    }
}
