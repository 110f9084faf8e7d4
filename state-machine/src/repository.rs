//! A tenant's source repository: where its pipelines come from when code changes.
//!
//! The record names the forge that sends its webhooks (which decides how a delivery is
//! signed and how its events read), the pipeline file to run at each commit, and the tenant
//! secrets that hold the webhook's shared secret and, for a private repository, the token to
//! fetch it with: the values stay sealed in the secrets table, the record holds their names.
//! The last deliveries are kept with what came of each, so a push that ran nothing says why.

use crate::spec::validate_name;
use crate::{Limits, PipelineId, SpecError};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Most repositories one tenant may have.
pub const MAX_REPOSITORIES_PER_TENANT: usize = 100;
/// Most repositories in the whole state.
pub const MAX_REPOSITORIES: usize = 10_000;
/// Deliveries remembered per repository (the oldest are forgotten first).
pub const MAX_DELIVERIES_KEPT: usize = 20;
/// Longest repository URL.
pub const MAX_URL_BYTES: usize = 1024;
/// Longest pipeline file path, delivery id, reason or event name kept.
pub const MAX_PATH_BYTES: usize = 256;
pub const MAX_DELIVERY_ID_BYTES: usize = 128;
pub const MAX_REASON_BYTES: usize = 512;
/// The pipeline file read at each commit unless the repository names another.
pub const DEFAULT_PIPELINE_PATH: &str = ".flotilla.yml";

/// Who sends the repository's webhooks, which decides how deliveries are signed and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    /// GitHub: `X-Hub-Signature-256` (HMAC-SHA256), `X-GitHub-Event`, `X-GitHub-Delivery`.
    Github,
    /// GitLab: `X-Gitlab-Token` (the shared secret itself), `X-Gitlab-Event`.
    Gitlab,
    /// Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature` (HMAC-SHA256, hex).
    Gitea,
    /// A plain git server whose post-receive hook posts GitHub-style signed push events.
    Git,
}

impl Forge {
    pub const ALL: [Forge; 4] = [Forge::Github, Forge::Gitlab, Forge::Gitea, Forge::Git];

    pub fn as_str(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Gitea => "gitea",
            Forge::Git => "git",
        }
    }
}

impl std::fmt::Display for Forge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A repository as its owner registers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySpec {
    pub name: String,
    /// Where it is fetched from: `https://`, `http://` or `git://`, no credentials inside.
    pub url: String,
    pub forge: Forge,
    /// The pipeline file, relative to the repository's root.
    #[serde(default = "default_pipeline_path")]
    pub pipeline_path: String,
    /// The tenant secret holding the webhook's shared secret.
    pub webhook_secret: String,
    /// The tenant secret holding a token to fetch over HTTPS (sent as the password of
    /// HTTP basic authentication, which GitHub, GitLab and Gitea all accept); `None`: public.
    #[serde(default)]
    pub credentials: Option<String>,
    /// The forge's API root to report commit statuses to (`https://api.github.com`,
    /// `https://gitlab.example/api/v4`, `https://gitea.example/api/v1`); `None`: derived from
    /// `url` where it can be (`status_api_root`). Statuses are posted with `credentials`.
    #[serde(default)]
    pub status_api: Option<String>,
}

fn default_pipeline_path() -> String {
    DEFAULT_PIPELINE_PATH.to_string()
}

impl RepositorySpec {
    /// Checks everything but whether the named secrets exist (the state knows that).
    pub fn validate(&self, limits: &Limits) -> Result<(), SpecError> {
        validate_name("name", &self.name, limits)?;
        validate_url(&self.url)?;
        validate_path("pipeline_path", &self.pipeline_path)?;
        validate_name("webhook_secret", &self.webhook_secret, limits)?;
        if let Some(c) = &self.credentials {
            validate_name("credentials", c, limits)?;
        }
        if let Some(api) = &self.status_api {
            validate_http_url("status_api", api)?;
        }
        Ok(())
    }

    /// Whether pipelines of it report commit statuses: a forge with a status API, an API
    /// root to post to, and a token to post with.
    pub fn reports_statuses(&self) -> bool {
        self.forge != Forge::Git && self.credentials.is_some() && self.status_api_root().is_some()
    }

    /// The API root statuses go to: `status_api`, else what the forge's own hosting uses for
    /// an `https://` or `http://` URL (GitHub's API host for github.com, `<host>/api/v3` for
    /// GitHub Enterprise, `<host>/api/v4` for GitLab, `<host>/api/v1` for Gitea).
    pub fn status_api_root(&self) -> Option<String> {
        if let Some(api) = &self.status_api {
            return Some(api.trim_end_matches('/').to_string());
        }
        let (scheme, rest) = self.url.split_once("://")?;
        if !matches!(scheme, "https" | "http") {
            return None;
        }
        let host = rest.split('/').next()?;
        Some(match (self.forge, host) {
            (Forge::Github, "github.com") => "https://api.github.com".to_string(),
            (Forge::Github, _) => format!("{scheme}://{host}/api/v3"),
            (Forge::Gitlab, _) => format!("{scheme}://{host}/api/v4"),
            (Forge::Gitea, _) => format!("{scheme}://{host}/api/v1"),
            (Forge::Git, _) => return None,
        })
    }

    /// The repository's path on its forge (`acme/app` of `https://host/acme/app.git`).
    pub fn project_path(&self) -> Option<&str> {
        let (_, rest) = self.url.split_once("://")?;
        let path = rest.split_once('/')?.1.trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        (!path.is_empty()).then_some(path)
    }

    /// The secrets it names, as `(field, secret name)`.
    pub fn secret_uses(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once(("webhook_secret", self.webhook_secret.as_str()))
            .chain(self.credentials.as_deref().map(|c| ("credentials", c)))
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> SpecError {
    SpecError::Conflict {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A fetchable URL: a scheme git speaks over the network, a host, no credentials, nothing a
/// command line could take for an option, no control characters.
fn validate_url(url: &str) -> Result<(), SpecError> {
    if url.len() > MAX_URL_BYTES {
        return Err(SpecError::TooLong {
            field: "url".into(),
            len: url.len(),
            max: MAX_URL_BYTES,
        });
    }
    let Some(rest) = ["https://", "http://", "git://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
    else {
        return Err(invalid("url", "must start with https://, http:// or git://"));
    };
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'\\') {
        return Err(invalid(
            "url",
            "must not contain spaces, backslashes or control characters",
        ));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(invalid("url", "names no host"));
    }
    if authority.contains('@') {
        return Err(invalid(
            "url",
            "must not carry credentials: put the token in a tenant secret and name it in `credentials`",
        ));
    }
    Ok(())
}

/// An `https://` or `http://` URL with a host and no credentials (a notifier's, a status
/// API's), named as `field` in errors.
pub(crate) fn validate_http_url(field: &str, url: &str) -> Result<(), SpecError> {
    validate_url(url).map_err(|e| match e {
        SpecError::Conflict { reason, .. } => invalid(field, reason),
        SpecError::TooLong { len, max, .. } => SpecError::TooLong {
            field: field.into(),
            len,
            max,
        },
        other => other,
    })?;
    if url.starts_with("git://") {
        return Err(invalid(field, "must start with https:// or http://"));
    }
    Ok(())
}

/// A path inside the repository: relative, without `..`, `.` or empty components.
fn validate_path(field: &str, path: &str) -> Result<(), SpecError> {
    if path.is_empty() {
        return Err(SpecError::Empty { field: field.into() });
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(SpecError::TooLong {
            field: field.into(),
            len: path.len(),
            max: MAX_PATH_BYTES,
        });
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b'\\' || b == b':') {
        return Err(invalid(
            field,
            "must not contain ':', backslashes or control characters",
        ));
    }
    if path.starts_with('-') || path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(invalid(
            field,
            "must be a relative path inside the repository (no leading '/' or '-', no '.' or '..')",
        ));
    }
    Ok(())
}

/// What came of one webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// It started this pipeline.
    Started { pipeline: PipelineId },
    /// It asks for nothing to run (an event not acted on, a deleted branch).
    Ignored { reason: String },
    /// It should have run something but could not (no pipeline file, an invalid one, the
    /// repository could not be fetched).
    Failed { reason: String },
}

/// One webhook delivery, as the repository remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The forge's delivery id (the same across its retries).
    pub id: String,
    /// The forge's event name (`push`, `Push Hook`, `pull_request`...).
    pub event: String,
    pub at_ms: u64,
    pub outcome: DeliveryOutcome,
}

impl Delivery {
    /// The same delivery with its texts cut to their limits (on a character boundary), so a
    /// forge's long header cannot grow the state.
    pub fn bounded(mut self) -> Delivery {
        cut(&mut self.id, MAX_DELIVERY_ID_BYTES);
        cut(&mut self.event, MAX_PATH_BYTES);
        if let DeliveryOutcome::Ignored { reason } | DeliveryOutcome::Failed { reason } = &mut self.outcome {
            cut(reason, MAX_REASON_BYTES);
        }
        self
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub(crate) fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The replicated record of a repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub tenant: String,
    pub spec: RepositorySpec,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The last `MAX_DELIVERIES_KEPT` deliveries, oldest first.
    pub deliveries: VecDeque<Delivery>,
}

impl Repository {
    /// Remembers `delivery`, once per delivery id: a forge's retry of one already recorded
    /// changes nothing. Returns whether it changed anything.
    /// A delivery recorded as failed (the forge retries those) takes its new outcome.
    pub(crate) fn record(&mut self, delivery: Delivery) -> bool {
        if let Some(known) = self.deliveries.iter_mut().find(|d| d.id == delivery.id) {
            let retried = matches!(known.outcome, DeliveryOutcome::Failed { .. });
            let delivery = delivery.bounded();
            if !retried || known.outcome == delivery.outcome {
                return false;
            }
            *known = delivery;
            return true;
        }
        if self.deliveries.len() >= MAX_DELIVERIES_KEPT {
            self.deliveries.pop_front();
        }
        self.deliveries.push_back(delivery.bounded());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, path: &str) -> RepositorySpec {
        RepositorySpec {
            name: "app".into(),
            url: url.into(),
            forge: Forge::Github,
            pipeline_path: path.into(),
            webhook_secret: "hook".into(),
            credentials: None,
            status_api: None,
        }
    }

    #[test]
    fn urls_git_fetches_over_the_network_are_taken_and_others_named_as_the_field() {
        let limits = Limits::DEFAULT;
        for ok in [
            "https://git.example/a/b.git",
            "http://127.0.0.1:8080/r",
            "git://127.0.0.1/r.git",
        ] {
            assert_eq!(spec(ok, ".flotilla.yml").validate(&limits), Ok(()), "{ok}");
        }
        for bad in [
            "file:///etc",
            "ext::sh -c touch% /tmp/x",
            "-uhttps://x",
            "ssh://host/r",
            "https://user:token@host/r",
            "https://",
            "https://host/a b",
            "https://host/\n",
        ] {
            let e = spec(bad, ".flotilla.yml").validate(&limits).unwrap_err();
            assert_eq!(e.field(), "url", "{bad}: {e}");
        }
        let long = format!("https://h/{}", "a".repeat(MAX_URL_BYTES));
        assert!(matches!(
            spec(&long, ".flotilla.yml").validate(&limits),
            Err(SpecError::TooLong { .. })
        ));
    }

    #[test]
    fn pipeline_paths_stay_inside_the_repository() {
        let limits = Limits::DEFAULT;
        for ok in [".flotilla.yml", "ci/pipeline.yaml", "a.b/c"] {
            assert_eq!(spec("https://h/r", ok).validate(&limits), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "-x",
            "a:b",
            "a\\b",
            "a\0",
        ] {
            let e = spec("https://h/r", bad).validate(&limits).unwrap_err();
            assert_eq!(e.field(), "pipeline_path", "{bad:?}: {e}");
        }
    }

    #[test]
    fn deliveries_are_kept_once_each_and_bounded() {
        let mut repo = Repository {
            tenant: "t".into(),
            spec: spec("https://h/r", ".flotilla.yml"),
            created_at_ms: 0,
            updated_at_ms: 0,
            deliveries: VecDeque::new(),
        };
        let d = |id: usize| Delivery {
            id: format!("d{id}"),
            event: "push".into(),
            at_ms: id as u64,
            outcome: DeliveryOutcome::Ignored {
                reason: "é".repeat(MAX_REASON_BYTES),
            },
        };
        assert!(repo.record(d(0)));
        assert!(!repo.record(d(0)), "a retried delivery is recorded once");
        for i in 1..=MAX_DELIVERIES_KEPT {
            assert!(repo.record(d(i)));
        }
        assert_eq!(repo.deliveries.len(), MAX_DELIVERIES_KEPT);
        assert_eq!(repo.deliveries[0].id, "d1", "the oldest is forgotten first");
        let DeliveryOutcome::Ignored { reason } = &repo.deliveries[0].outcome else {
            panic!("outcome changed")
        };
        assert!(reason.len() <= MAX_REASON_BYTES && reason.chars().all(|c| c == 'é'));
    }
}
