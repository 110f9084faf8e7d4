//! A commit status as each forge's API takes it. Pure: what is owed and the repository in,
//! the request out, so each forge's documented format is tested as data.
//!
//! - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, JSON `state` (`pending`,
//!   `success`, `failure`, `error`), `description`, `context`; `Authorization: Bearer`.
//! - GitLab: `POST {api}/projects/{url-encoded path}/statuses/{sha}`, JSON `state`
//!   (`running`, `success`, `failed`, `canceled`), `name`, `description`; `PRIVATE-TOKEN`.
//! - Gitea / Forgejo: `POST {api}/repos/{owner}/{repo}/statuses/{sha}`, JSON `state`
//!   (`pending`, `success`, `failure`, `error`), `description`, `context`;
//!   `Authorization: token`.

use flotilla_state_machine::status_outbox::StatusDue;
use flotilla_state_machine::{Forge, PipelineState, RepositorySpec};
use serde_json::json;

/// An HTTP client for forges' APIs: the host's trusted roots (the system's certificate
/// store), ring as the TLS crypto (the build's one provider), no redirects followed (a token
/// is never sent on to another host), `timeout` per request.
pub fn forge_client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!("no trusted root certificates found on this host: HTTPS forges will be refused");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|e| e.to_string())
}

/// One HTTP request to a forge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRequest {
    pub url: String,
    /// `(name, value)`; the token's header among them.
    pub headers: Vec<(&'static str, String)>,
    pub body: serde_json::Value,
}

/// The request that reports `due` on `repo`'s forge with `token`; `None` when the repository
/// cannot report (no status API, no path).
pub fn request(repo: &RepositorySpec, due: &StatusDue, pipeline: u64, token: &str) -> Option<StatusRequest> {
    let api = repo.status_api_root()?;
    let path = repo.project_path()?;
    let context = format!("flotilla/{}", due.name);
    let description = format!("pipeline {pipeline}: {}", describe(due.state));
    let common = vec![
        ("Content-Type", "application/json".to_string()),
        ("User-Agent", "flotilla".to_string()),
    ];
    let (url, auth, body) = match repo.forge {
        Forge::Github => (
            format!("{api}/repos/{path}/statuses/{}", due.commit),
            ("Authorization", format!("Bearer {token}")),
            json!({ "state": github_state(due.state), "context": context, "description": description }),
        ),
        Forge::Gitea => (
            format!("{api}/repos/{path}/statuses/{}", due.commit),
            ("Authorization", format!("token {token}")),
            json!({ "state": github_state(due.state), "context": context, "description": description }),
        ),
        Forge::Gitlab => (
            format!("{api}/projects/{}/statuses/{}", encode_path(path), due.commit),
            ("PRIVATE-TOKEN", token.to_string()),
            json!({ "state": gitlab_state(due.state), "name": context, "description": description }),
        ),
        Forge::Git => return None,
    };
    let mut headers = common;
    headers.push(auth);
    Some(StatusRequest { url, headers, body })
}

fn describe(state: PipelineState) -> &'static str {
    match state {
        PipelineState::Running => "running",
        PipelineState::Succeeded => "succeeded",
        PipelineState::Failed => "failed",
        PipelineState::Cancelled => "cancelled",
    }
}

fn github_state(state: PipelineState) -> &'static str {
    match state {
        PipelineState::Running => "pending",
        PipelineState::Succeeded => "success",
        PipelineState::Failed => "failure",
        // GitHub has no "cancelled": an error, described as cancelled.
        PipelineState::Cancelled => "error",
    }
}

fn gitlab_state(state: PipelineState) -> &'static str {
    match state {
        PipelineState::Running => "running",
        PipelineState::Succeeded => "success",
        PipelineState::Failed => "failed",
        PipelineState::Cancelled => "canceled",
    }
}

/// GitLab names a project by its path with every `/` (and anything unsafe) percent-encoded.
fn encode_path(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(forge: Forge, url: &str) -> RepositorySpec {
        RepositorySpec {
            name: "app".into(),
            url: url.into(),
            forge,
            pipeline_path: ".flotilla.yml".into(),
            webhook_secret: "hook".into(),
            credentials: Some("token".into()),
            status_api: None,
        }
    }

    fn due(state: PipelineState) -> StatusDue {
        StatusDue {
            tenant: "t".into(),
            repository: "app".into(),
            commit: "c".repeat(40),
            name: "ci".into(),
            state,
        }
    }

    #[test]
    fn each_forge_gets_its_documented_request() {
        let sha = "c".repeat(40);
        let gh = request(
            &repo(Forge::Github, "https://github.com/acme/app.git"),
            &due(PipelineState::Failed),
            7,
            "tok",
        )
        .unwrap();
        assert_eq!(gh.url, format!("https://api.github.com/repos/acme/app/statuses/{sha}"));
        assert!(gh.headers.contains(&("Authorization", "Bearer tok".into())));
        assert_eq!(
            gh.body,
            json!({ "state": "failure", "context": "flotilla/ci", "description": "pipeline 7: failed" })
        );

        let gl = request(
            &repo(Forge::Gitlab, "https://gitlab.example/group/sub/app.git"),
            &due(PipelineState::Running),
            7,
            "tok",
        )
        .unwrap();
        assert_eq!(
            gl.url,
            format!("https://gitlab.example/api/v4/projects/group%2Fsub%2Fapp/statuses/{sha}")
        );
        assert!(gl.headers.contains(&("PRIVATE-TOKEN", "tok".into())));
        assert_eq!(gl.body["state"], "running");
        assert_eq!(gl.body["name"], "flotilla/ci");

        let mut gitea = repo(Forge::Gitea, "git://127.0.0.1/acme/app");
        assert_eq!(
            request(&gitea, &due(PipelineState::Succeeded), 7, "tok"),
            None,
            "no API for a git:// URL"
        );
        gitea.status_api = Some("http://127.0.0.1:3000/api/v1/".into());
        let gt = request(&gitea, &due(PipelineState::Cancelled), 7, "tok").unwrap();
        assert_eq!(
            gt.url,
            format!("http://127.0.0.1:3000/api/v1/repos/acme/app/statuses/{sha}")
        );
        assert!(gt.headers.contains(&("Authorization", "token tok".into())));
        assert_eq!(gt.body["state"], "error");
        assert_eq!(
            request(
                &repo(Forge::Git, "https://h/a/b"),
                &due(PipelineState::Failed),
                7,
                "tok"
            ),
            None
        );
    }
}
