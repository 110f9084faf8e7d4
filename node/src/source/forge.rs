//! Webhook deliveries as each forge sends them: checking their signature, and reading what
//! they ask to run. Pure: headers and body in, a verdict out, so every forge's format is
//! tested as data.
//!
//! - GitHub (and `git`, a plain server whose hook posts GitHub's format):
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, `X-GitHub-Event`,
//!   `X-GitHub-Delivery`.
//! - GitLab: `X-Gitlab-Token` carries the shared secret itself; `X-Gitlab-Event`; the delivery
//!   is `Idempotency-Key` (the same across GitLab's retries) or else `X-Gitlab-Event-UUID`.
//! - Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`,
//!   `X-Gitea-Event`, `X-Gitea-Delivery` (or their `X-Forgejo-*` twins).
//!
//! Signatures are compared in constant time, before the body is parsed at all.

use flotilla_state_machine::source::is_object_name;
use flotilla_state_machine::{Forge, SourceEvent};
use serde_json::Value;
use subtle::ConstantTimeEq;

/// A header's value, by its lowercase name.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for axum::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Why a delivery is refused before anything is recorded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("the signature does not match the repository's webhook secret")]
    BadSignature,
    #[error("{0}")]
    BadPayload(String),
}

impl HookError {
    /// The header or field it is about, for the error body.
    pub fn field(&self) -> &str {
        match self {
            HookError::MissingHeader(h) => h,
            HookError::BadSignature => "signature",
            HookError::BadPayload(_) => "body",
        }
    }
}

/// A delivery whose signature checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The forge's delivery id: the idempotency key of what it starts.
    pub id: String,
    /// The forge's event name, as sent.
    pub event: String,
    pub verdict: Verdict,
}

/// What a delivery asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Run(Trigger),
    /// Nothing to run, and why.
    Ignore(String),
}

/// The commit a delivery asks to run, and what about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub commit: String,
    pub reference: String,
    pub event: SourceEvent,
    pub author: Option<String>,
    pub pull_request: Option<u64>,
}

/// The headers a forge names its event and delivery with.
struct Names {
    event: &'static [&'static str],
    delivery: &'static [&'static str],
}

fn names(forge: Forge) -> Names {
    match forge {
        Forge::Github | Forge::Git => Names {
            event: &["x-github-event"],
            delivery: &["x-github-delivery"],
        },
        Forge::Gitlab => Names {
            event: &["x-gitlab-event"],
            delivery: &["idempotency-key", "x-gitlab-event-uuid"],
        },
        Forge::Gitea => Names {
            event: &["x-gitea-event", "x-forgejo-event"],
            delivery: &["x-gitea-delivery", "x-forgejo-delivery"],
        },
    }
}

fn first<'a, H: Headers + ?Sized>(headers: &'a H, names: &'static [&'static str]) -> Result<&'a str, HookError> {
    names
        .iter()
        .find_map(|n| headers.get(n).filter(|v| !v.is_empty()))
        .ok_or(HookError::MissingHeader(names[0]))
}

/// Checks `body`'s signature with `secret` as `forge` signs, then reads what it asks for.
pub fn receive<H: Headers + ?Sized>(
    forge: Forge,
    secret: &[u8],
    headers: &H,
    body: &[u8],
) -> Result<Delivered, HookError> {
    verify(forge, secret, headers, body)?;
    let names = names(forge);
    let event = first(headers, names.event)?.to_string();
    let id = first(headers, names.delivery)?.to_string();
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| HookError::BadPayload(format!("the body is not JSON: {e}")))?;
    let verdict = match forge {
        Forge::Github | Forge::Git | Forge::Gitea => github_like(&event, &payload)?,
        Forge::Gitlab => gitlab(&event, &payload)?,
    };
    Ok(Delivered { id, event, verdict })
}

fn verify<H: Headers + ?Sized>(forge: Forge, secret: &[u8], headers: &H, body: &[u8]) -> Result<(), HookError> {
    let hmac_matches = |hex_digest: &str| {
        let Ok(given) = hex::decode(hex_digest.trim()) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        ring::hmac::verify(&key, body, &given).is_ok()
    };
    let ok = match forge {
        Forge::Github | Forge::Git => {
            let header = first(headers, &["x-hub-signature-256"])?;
            header.strip_prefix("sha256=").is_some_and(hmac_matches)
        }
        Forge::Gitea => hmac_matches(first(headers, &["x-gitea-signature", "x-forgejo-signature"])?),
        Forge::Gitlab => bool::from(first(headers, &["x-gitlab-token"])?.as_bytes().ct_eq(secret)),
    };
    if ok { Ok(()) } else { Err(HookError::BadSignature) }
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))?
        .as_str()
        .filter(|s| !s.is_empty())
}

fn commit(v: &Value, path: &[&str]) -> Result<String, HookError> {
    match text(v, path) {
        Some(c) if is_object_name(c) => Ok(c.to_string()),
        other => Err(HookError::BadPayload(format!(
            "{}: {other:?} is not a full commit id",
            path.join(".")
        ))),
    }
}

fn reference(v: &Value) -> Result<String, HookError> {
    match text(v, &["ref"]) {
        Some(r) if r.starts_with("refs/") => Ok(r.to_string()),
        other => Err(HookError::BadPayload(format!("ref: {other:?} is not a full ref name"))),
    }
}

/// Whether `commit` is all zeros: the "after" of a deleted ref.
fn is_zero(commit: &str) -> bool {
    commit.bytes().all(|b| b == b'0')
}

/// GitHub's and Gitea's (which follows GitHub's) push and pull request events.
fn github_like(event: &str, p: &Value) -> Result<Verdict, HookError> {
    match event {
        "push" => {
            if p.get("deleted").and_then(Value::as_bool) == Some(true) || text(p, &["after"]).is_some_and(is_zero) {
                return Ok(Verdict::Ignore("the ref was deleted".into()));
            }
            let reference = reference(p)?;
            let author = text(p, &["pusher", "name"])
                .or_else(|| text(p, &["pusher", "login"]))
                .or_else(|| text(p, &["pusher", "username"]))
                .or_else(|| text(p, &["sender", "login"]));
            Ok(Verdict::Run(Trigger {
                event: push_event(&reference),
                commit: commit(p, &["after"])?,
                reference,
                author: author.map(str::to_string),
                pull_request: None,
            }))
        }
        "pull_request" => {
            let action = text(p, &["action"]).unwrap_or("");
            // Gitea says "synchronized" where GitHub says "synchronize".
            if !matches!(action, "opened" | "reopened" | "synchronize" | "synchronized") {
                return Ok(Verdict::Ignore(format!(
                    "pull_request action {action:?} starts nothing"
                )));
            }
            let number = p
                .get("number")
                .or_else(|| p.get("pull_request").and_then(|r| r.get("number")))
                .and_then(Value::as_u64)
                .ok_or_else(|| HookError::BadPayload("number: missing".into()))?;
            let author = text(p, &["sender", "login"]).or_else(|| text(p, &["pull_request", "user", "login"]));
            Ok(Verdict::Run(Trigger {
                commit: commit(p, &["pull_request", "head", "sha"])?,
                reference: format!("refs/pull/{number}/head"),
                event: SourceEvent::PullRequest,
                author: author.map(str::to_string),
                pull_request: Some(number),
            }))
        }
        "ping" => Ok(Verdict::Ignore("ping: the webhook reaches Flotilla".into())),
        other => Ok(Verdict::Ignore(format!("event {other:?} starts nothing"))),
    }
}

/// GitLab's push, tag push and merge request hooks.
fn gitlab(event: &str, p: &Value) -> Result<Verdict, HookError> {
    match event {
        "Push Hook" | "Tag Push Hook" => {
            let Some(sha) = text(p, &["checkout_sha"]) else {
                return Ok(Verdict::Ignore("the ref was deleted".into()));
            };
            if is_zero(sha) {
                return Ok(Verdict::Ignore("the ref was deleted".into()));
            }
            let reference = reference(p)?;
            Ok(Verdict::Run(Trigger {
                event: push_event(&reference),
                commit: commit(p, &["checkout_sha"])?,
                reference,
                author: text(p, &["user_username"]).map(str::to_string),
                pull_request: None,
            }))
        }
        "Merge Request Hook" => {
            let action = text(p, &["object_attributes", "action"]).unwrap_or("");
            if !matches!(action, "open" | "reopen" | "update") {
                return Ok(Verdict::Ignore(format!(
                    "merge request action {action:?} starts nothing"
                )));
            }
            let iid = p
                .get("object_attributes")
                .and_then(|a| a.get("iid"))
                .and_then(Value::as_u64)
                .ok_or_else(|| HookError::BadPayload("object_attributes.iid: missing".into()))?;
            Ok(Verdict::Run(Trigger {
                commit: commit(p, &["object_attributes", "last_commit", "id"])?,
                reference: format!("refs/merge-requests/{iid}/head"),
                event: SourceEvent::PullRequest,
                author: text(p, &["user", "username"]).map(str::to_string),
                pull_request: Some(iid),
            }))
        }
        other => Ok(Verdict::Ignore(format!("event {other:?} starts nothing"))),
    }
}

fn push_event(reference: &str) -> SourceEvent {
    if reference.starts_with("refs/tags/") {
        SourceEvent::Tag
    } else {
        SourceEvent::Push
    }
}

/// The signature header `forge` would send for `body` under `secret`: what a test or a
/// plain git server's hook (`Forge::Git`) puts on a delivery.
pub fn sign(forge: Forge, secret: &[u8], body: &[u8]) -> (&'static str, String) {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let digest = hex::encode(ring::hmac::sign(&key, body).as_ref());
    match forge {
        Forge::Github | Forge::Git => ("X-Hub-Signature-256", format!("sha256={digest}")),
        Forge::Gitea => ("X-Gitea-Signature", digest),
        Forge::Gitlab => ("X-Gitlab-Token", String::from_utf8_lossy(secret).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"it's a secret to everybody";
    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn deliver(forge: Forge, event: &str, body: &Value) -> Result<Delivered, HookError> {
        let body = serde_json::to_vec(body).unwrap();
        let (sig_name, sig) = sign(forge, SECRET, &body);
        let (event_name, delivery_name) = match forge {
            Forge::Github | Forge::Git => ("X-GitHub-Event", "X-GitHub-Delivery"),
            Forge::Gitlab => ("X-Gitlab-Event", "X-Gitlab-Event-UUID"),
            Forge::Gitea => ("X-Gitea-Event", "X-Gitea-Delivery"),
        };
        let headers = [(sig_name, sig.as_str()), (event_name, event), (delivery_name, "d-1")];
        receive(forge, SECRET, &headers[..], &body)
    }

    fn run(reference: &str, event: SourceEvent, author: &str, pull_request: Option<u64>) -> Verdict {
        Verdict::Run(Trigger {
            commit: SHA.into(),
            reference: reference.into(),
            event,
            author: Some(author.into()),
            pull_request,
        })
    }

    #[test]
    fn github_pushes_tags_and_pull_requests_are_read_as_github_documents_them() {
        let push = json!({"ref": "refs/heads/main", "after": SHA, "deleted": false, "pusher": {"name": "ada"}});
        let d = deliver(Forge::Github, "push", &push).unwrap();
        assert_eq!((d.id.as_str(), d.event.as_str()), ("d-1", "push"));
        assert_eq!(d.verdict, run("refs/heads/main", SourceEvent::Push, "ada", None));
        let tag = json!({"ref": "refs/tags/v1", "after": SHA, "pusher": {"name": "ada"}});
        assert_eq!(
            deliver(Forge::Git, "push", &tag).unwrap().verdict,
            run("refs/tags/v1", SourceEvent::Tag, "ada", None)
        );
        let pr = json!({"action": "synchronize", "number": 7, "pull_request": {"head": {"sha": SHA}}, "sender": {"login": "bob"}});
        assert_eq!(
            deliver(Forge::Github, "pull_request", &pr).unwrap().verdict,
            run("refs/pull/7/head", SourceEvent::PullRequest, "bob", Some(7))
        );
        let closed = json!({"action": "closed", "number": 7, "pull_request": {"head": {"sha": SHA}}});
        assert!(matches!(
            deliver(Forge::Github, "pull_request", &closed).unwrap().verdict,
            Verdict::Ignore(_)
        ));
        let deleted = json!({"ref": "refs/heads/x", "after": "0".repeat(40), "deleted": true});
        assert!(matches!(
            deliver(Forge::Github, "push", &deleted).unwrap().verdict,
            Verdict::Ignore(_)
        ));
        assert!(matches!(
            deliver(Forge::Github, "ping", &json!({})).unwrap().verdict,
            Verdict::Ignore(_)
        ));
        assert!(matches!(
            deliver(Forge::Github, "issues", &json!({})).unwrap().verdict,
            Verdict::Ignore(_)
        ));
    }

    #[test]
    fn gitlab_and_gitea_deliveries_are_read_as_they_document_them() {
        let push =
            json!({"object_kind": "push", "ref": "refs/heads/main", "checkout_sha": SHA, "user_username": "ada"});
        assert_eq!(
            deliver(Forge::Gitlab, "Push Hook", &push).unwrap().verdict,
            run("refs/heads/main", SourceEvent::Push, "ada", None)
        );
        let deleted = json!({"object_kind": "push", "ref": "refs/heads/x", "checkout_sha": null});
        assert!(matches!(
            deliver(Forge::Gitlab, "Push Hook", &deleted).unwrap().verdict,
            Verdict::Ignore(_)
        ));
        let mr = json!({"object_kind": "merge_request", "user": {"username": "bob"},
            "object_attributes": {"action": "open", "iid": 3, "last_commit": {"id": SHA}}});
        assert_eq!(
            deliver(Forge::Gitlab, "Merge Request Hook", &mr).unwrap().verdict,
            run("refs/merge-requests/3/head", SourceEvent::PullRequest, "bob", Some(3))
        );
        let push = json!({"ref": "refs/heads/main", "after": SHA, "pusher": {"login": "ada"}});
        assert_eq!(
            deliver(Forge::Gitea, "push", &push).unwrap().verdict,
            run("refs/heads/main", SourceEvent::Push, "ada", None)
        );
        let pr = json!({"action": "synchronized", "number": 4, "pull_request": {"head": {"sha": SHA}}, "sender": {"login": "bob"}});
        assert_eq!(
            deliver(Forge::Gitea, "pull_request", &pr).unwrap().verdict,
            run("refs/pull/4/head", SourceEvent::PullRequest, "bob", Some(4))
        );
    }

    #[test]
    fn a_wrong_or_missing_signature_is_refused_before_the_body_is_read() {
        let body = b"{not json";
        for forge in Forge::ALL {
            let (name, good) = sign(forge, SECRET, body);
            let (_, other) = sign(forge, b"another secret", body);
            let headers = [(name, other.as_str()), ("X-GitHub-Event", "push")];
            assert_eq!(
                receive(forge, SECRET, &headers[..], body),
                Err(HookError::BadSignature),
                "{forge}"
            );
            let none: [(&str, &str); 0] = [];
            assert!(matches!(
                receive(forge, SECRET, &none[..], body),
                Err(HookError::MissingHeader(_))
            ));
            // The right signature over another body is wrong too (GitLab's token signs nothing).
            if forge != Forge::Gitlab {
                let headers = [(name, good.as_str())];
                assert_eq!(
                    receive(forge, SECRET, &headers[..], b"{}"),
                    Err(HookError::BadSignature)
                );
            }
        }
        let headers = [("X-Hub-Signature-256", "sha256=zz")];
        assert_eq!(
            receive(Forge::Github, SECRET, &headers[..], body),
            Err(HookError::BadSignature)
        );
    }

    #[test]
    fn a_signed_delivery_without_its_ids_or_a_commit_is_a_bad_request() {
        let body = serde_json::to_vec(&json!({"ref": "refs/heads/main", "after": "HEAD"})).unwrap();
        let (name, sig) = sign(Forge::Github, SECRET, &body);
        let no_delivery = [(name, sig.as_str()), ("X-GitHub-Event", "push")];
        assert_eq!(
            receive(Forge::Github, SECRET, &no_delivery[..], &body),
            Err(HookError::MissingHeader("x-github-delivery"))
        );
        let full = [
            (name, sig.as_str()),
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d"),
        ];
        let e = receive(Forge::Github, SECRET, &full[..], &body).unwrap_err();
        assert!(matches!(&e, HookError::BadPayload(m) if m.contains("after")), "{e}");
    }
}
