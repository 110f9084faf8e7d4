//! Where a pipeline's code comes from: a repository of its tenant at one commit, and the
//! event that asked for it. A pipeline with a source starts every job with that commit's
//! files in its work directory, and gives each job the variables that describe it.

use crate::repository::{MAX_DELIVERY_ID_BYTES, MAX_PATH_BYTES};
use crate::{Limits, SpecError};
use serde::{Deserialize, Serialize};

/// What made a pipeline run from source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceEvent {
    /// Commits pushed to a branch.
    Push,
    /// A tag pushed.
    Tag,
    /// A pull (merge) request opened, reopened or updated.
    PullRequest,
    /// Asked for by hand (`flotilla repo run`).
    Manual,
    /// A schedule's due time came.
    Schedule,
}

impl SourceEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceEvent::Push => "push",
            SourceEvent::Tag => "tag",
            SourceEvent::PullRequest => "pull_request",
            SourceEvent::Manual => "manual",
            SourceEvent::Schedule => "schedule",
        }
    }
}

/// The repository and commit a pipeline runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The name of a repository of the pipeline's tenant.
    pub repository: String,
    /// The commit, as a full hexadecimal object name (40 digits, or 64 for SHA-256 repositories).
    pub commit: String,
    /// The ref it was pushed to (`refs/heads/main`, `refs/tags/v1`, `refs/pull/7/head`).
    #[serde(default)]
    pub reference: Option<String>,
    pub event: SourceEvent,
    /// Who pushed or opened it, as the forge names them.
    #[serde(default)]
    pub author: Option<String>,
    /// The pull or merge request's number.
    #[serde(default)]
    pub pull_request: Option<u64>,
    /// The webhook delivery that asked for it.
    #[serde(default)]
    pub delivery: Option<String>,
}

impl Source {
    pub fn validate(&self, limits: &Limits) -> Result<(), SpecError> {
        crate::spec::validate_name("source.repository", &self.repository, limits)?;
        if !is_object_name(&self.commit) {
            return Err(SpecError::Conflict {
                field: "source.commit".into(),
                reason: "must be a full commit id: 40 or 64 lowercase hexadecimal digits".into(),
            });
        }
        if let Some(r) = &self.reference {
            text("source.reference", r, MAX_PATH_BYTES)?;
            if !r.starts_with("refs/") {
                return Err(SpecError::Conflict {
                    field: "source.reference".into(),
                    reason: "must be a full ref name starting with refs/".into(),
                });
            }
        }
        if let Some(a) = &self.author {
            text("source.author", a, MAX_PATH_BYTES)?;
        }
        if let Some(d) = &self.delivery {
            text("source.delivery", d, MAX_DELIVERY_ID_BYTES)?;
        }
        Ok(())
    }

    /// The branch it was pushed to, if the ref is one.
    pub fn branch(&self) -> Option<&str> {
        self.reference.as_deref()?.strip_prefix("refs/heads/")
    }

    /// The tag it was pushed as, if the ref is one.
    pub fn tag(&self) -> Option<&str> {
        self.reference.as_deref()?.strip_prefix("refs/tags/")
    }

    /// The variables every job of the pipeline sees, as CI systems name them for scripts:
    /// `CI`, and `FLOTILLA_*` for the repository, commit, ref, branch or tag, event, author
    /// and pull request. `url` is the repository's URL (never with credentials).
    pub fn variables(&self, url: &str) -> Vec<(String, String)> {
        let mut vars = vec![
            ("CI".to_string(), "true".to_string()),
            ("FLOTILLA_REPO".to_string(), self.repository.clone()),
            ("FLOTILLA_REPO_URL".to_string(), url.to_string()),
            ("FLOTILLA_COMMIT".to_string(), self.commit.clone()),
            ("FLOTILLA_EVENT".to_string(), self.event.as_str().to_string()),
        ];
        let mut put = |name: &str, value: Option<&str>| {
            if let Some(v) = value {
                vars.push((name.to_string(), v.to_string()));
            }
        };
        put("FLOTILLA_REF", self.reference.as_deref());
        put("FLOTILLA_BRANCH", self.branch());
        put("FLOTILLA_TAG", self.tag());
        put("FLOTILLA_AUTHOR", self.author.as_deref());
        let number = self.pull_request.map(|n| n.to_string());
        put("FLOTILLA_PULL_REQUEST", number.as_deref());
        vars
    }
}

/// Whether `s` is a full object name: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_object_name(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn text(field: &str, value: &str, max: usize) -> Result<(), SpecError> {
    if value.is_empty() {
        return Err(SpecError::Empty { field: field.into() });
    }
    if value.len() > max {
        return Err(SpecError::TooLong {
            field: field.into(),
            len: value.len(),
            max,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(SpecError::Conflict {
            field: field.into(),
            reason: "must not contain control characters".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(reference: Option<&str>) -> Source {
        Source {
            repository: "app".into(),
            commit: "a".repeat(40),
            reference: reference.map(str::to_string),
            event: SourceEvent::Push,
            author: Some("ada".into()),
            pull_request: None,
            delivery: Some("d-1".into()),
        }
    }

    #[test]
    fn only_full_commit_ids_and_ref_names_are_taken() {
        let limits = Limits::DEFAULT;
        assert_eq!(source(Some("refs/heads/main")).validate(&limits), Ok(()));
        for commit in [
            "",
            "abc",
            &"A".repeat(40),
            &"g".repeat(40),
            &"a".repeat(41),
            "--upload-pack=x",
        ] {
            let mut s = source(None);
            s.commit = commit.to_string();
            assert_eq!(s.validate(&limits).unwrap_err().field(), "source.commit", "{commit}");
        }
        assert!(is_object_name(&"0".repeat(64)));
        for reference in ["main", "refs/heads/a\nb", ""] {
            let e = source(Some(reference)).validate(&limits).unwrap_err();
            assert_eq!(e.field(), "source.reference", "{reference:?}");
        }
    }

    #[test]
    fn jobs_see_the_branch_or_the_tag_it_was_pushed_to() {
        let vars = |r| source(Some(r)).variables("https://h/app");
        let main = vars("refs/heads/main");
        assert!(main.contains(&("FLOTILLA_BRANCH".into(), "main".into())));
        assert!(main.contains(&("FLOTILLA_COMMIT".into(), "a".repeat(40))));
        assert!(main.contains(&("CI".into(), "true".into())));
        assert!(!main.iter().any(|(k, _)| k == "FLOTILLA_TAG"));
        let tag = vars("refs/tags/v1.2");
        assert!(tag.contains(&("FLOTILLA_TAG".into(), "v1.2".into())));
        assert!(!tag.iter().any(|(k, _)| k == "FLOTILLA_BRANCH"));
    }
}
