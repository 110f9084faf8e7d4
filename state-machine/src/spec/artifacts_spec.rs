//! A job's `artifacts`: which files of its workspace are kept when it ends, for how long, and
//! for whom (the jobs that `need` it receive them unpacked before their first step).

use super::SpecError;
use super::validate::{check_count, check_len, check_range};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Most paths one job may keep.
pub const MAX_ARTIFACT_PATHS: usize = 64;
/// Longest artifact path, in bytes.
pub const MAX_ARTIFACT_PATH_BYTES: usize = 1024;
/// Longest `expire_in`: a year.
pub const MAX_ARTIFACT_EXPIRY_MS: u64 = 365 * 24 * 3600 * 1000;

/// When a job's artifacts are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactsWhen {
    /// Only when every step succeeded (the default).
    #[default]
    OnSuccess,
    /// Also when a step failed (reports of failing tests). A job that timed out, was
    /// cancelled or lost its worker keeps nothing.
    Always,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsSpec {
    /// Files or directories, relative to the workspace.
    pub paths: Vec<CompactString>,
    /// How long they are kept after the job ends (`"7d"`, or milliseconds).
    #[serde(
        default = "ArtifactsSpec::default_expire_in_ms",
        alias = "expire_in",
        deserialize_with = "super::duration_ms::deserialize"
    )]
    pub expire_in_ms: u64,
    #[serde(default)]
    pub when: ArtifactsWhen,
}

impl ArtifactsSpec {
    pub const DEFAULT_EXPIRE_IN_MS: u64 = 30 * 24 * 3600 * 1000;

    fn default_expire_in_ms() -> u64 {
        Self::DEFAULT_EXPIRE_IN_MS
    }

    /// Whether an attempt whose steps ended with `exit_code` keeps its artifacts.
    pub fn kept_after(&self, exit_code: i32) -> bool {
        exit_code == 0 || self.when == ArtifactsWhen::Always
    }

    /// Checks the paths (relative, inside the workspace, no `..`) and the expiry; `at` names
    /// the job's field.
    pub(crate) fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), SpecError> {
        if self.paths.is_empty() {
            return Err(SpecError::Empty {
                field: at("artifacts.paths"),
            });
        }
        check_paths(at, "artifacts.paths", &self.paths, MAX_ARTIFACT_PATHS)?;
        check_range(
            at("artifacts.expire_in"),
            i64::try_from(self.expire_in_ms).unwrap_or(i64::MAX),
            1,
            MAX_ARTIFACT_EXPIRY_MS as i64,
        )
    }

    /// Approximate bytes in memory, for `JobSpec::size_bytes`.
    pub(crate) fn size_bytes(&self) -> u64 {
        64 + self.paths.iter().map(|p| 32 + p.len() as u64).sum::<u64>()
    }
}

/// Checks `paths` (the field `name` of the job `at` names): at most `max`, each a relative
/// path of at most `MAX_ARTIFACT_PATH_BYTES` that stays inside the workspace.
pub(super) fn check_paths(
    at: &dyn Fn(&str) -> String,
    name: &str,
    paths: &[CompactString],
    max: usize,
) -> Result<(), SpecError> {
    check_count(at(name), paths.len(), max)?;
    for (i, path) in paths.iter().enumerate() {
        let field = at(&format!("{name}[{i}]"));
        check_len(field.clone(), path.len(), MAX_ARTIFACT_PATH_BYTES)?;
        if let Some(reason) = path_problem(path) {
            return Err(SpecError::Conflict {
                field,
                reason: reason.to_string(),
            });
        }
    }
    Ok(())
}

/// Why `path` cannot name a file of the workspace, if it cannot (also `cache.paths`).
pub(super) fn path_problem(path: &str) -> Option<&'static str> {
    if path.trim().is_empty() {
        return Some("must not be empty");
    }
    if path.starts_with('/') {
        return Some("must be relative to the workspace");
    }
    if path.contains('\0') || path.contains('\\') {
        return Some("must not contain NUL or backslash");
    }
    if path.contains(['*', '?', '[']) {
        return Some("names a file or a directory; wildcards are not expanded");
    }
    if path.split('/').any(|part| part == "..") {
        return Some("must not leave the workspace ('..')");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(paths: &[&str]) -> ArtifactsSpec {
        ArtifactsSpec {
            paths: paths.iter().map(|p| (*p).into()).collect(),
            expire_in_ms: ArtifactsSpec::DEFAULT_EXPIRE_IN_MS,
            when: ArtifactsWhen::OnSuccess,
        }
    }

    fn check(s: &ArtifactsSpec) -> Result<(), SpecError> {
        s.validate(&|f| format!("jobs[build].{f}"))
    }

    #[test]
    fn paths_must_stay_inside_the_workspace() {
        assert!(check(&spec(&["out/bin", "reports/", "./a"])).is_ok());
        for bad in ["dir/*.txt", "/etc/passwd", "../x", "a/../../x", "", " ", "a\\b"] {
            let err = check(&spec(&[bad])).unwrap_err().to_string();
            assert!(err.starts_with("jobs[build].artifacts.paths[0]"), "{bad}: {err}");
        }
        assert!(check(&spec(&[])).unwrap_err().to_string().contains("artifacts.paths"));
        let many: Vec<String> = (0..=MAX_ARTIFACT_PATHS).map(|i| format!("f{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(check(&spec(&many)), Err(SpecError::TooMany { .. })));
    }

    #[test]
    fn expiry_is_bounded() {
        let mut s = spec(&["a"]);
        s.expire_in_ms = 0;
        assert!(check(&s).unwrap_err().to_string().contains("artifacts.expire_in"));
        s.expire_in_ms = MAX_ARTIFACT_EXPIRY_MS + 1;
        assert!(check(&s).is_err());
        s.expire_in_ms = MAX_ARTIFACT_EXPIRY_MS;
        assert!(check(&s).is_ok());
    }

    #[test]
    fn files_read_durations_and_the_condition() {
        let s: ArtifactsSpec = serde_json::from_str(r#"{"paths":["out"],"expire_in":"2d","when":"always"}"#).unwrap();
        assert_eq!(s.expire_in_ms, 2 * 24 * 3600 * 1000);
        assert!(s.kept_after(1));
        let s: ArtifactsSpec = serde_json::from_str(r#"{"paths":["out"]}"#).unwrap();
        assert_eq!(s.expire_in_ms, ArtifactsSpec::DEFAULT_EXPIRE_IN_MS);
        assert!(s.kept_after(0) && !s.kept_after(2));
        assert!(serde_json::from_str::<ArtifactsSpec>(r#"{"paths":["out"],"keep":1}"#).is_err());
    }
}
