//! The notification tick: posts what the state owes the tenants' notifiers
//! (`notifier.rs`), each delivery signed with the notifier's secret
//! (`X-Flotilla-Signature-256: sha256=<hex HMAC-SHA256 of the body>`) and named by an id the
//! receiver deduplicates on (`X-Flotilla-Delivery`), then commits `NotificationsSent` for
//! what was taken. A receiver that fails rests as a forge does (`outgoing.rs`).

use super::outgoing::{ForgePauses, Outgoing, Owed, post_each};
use super::{LeaderContext, LeaderError};
use flotilla_state_machine::notifier::{NotificationDue, NotificationKey, delivery_id};
use flotilla_state_machine::{Command, Proposal};
use serde_json::json;

/// Notifications posted per tick.
const POST_PER_TICK: usize = 64;

/// The delivery of `key`, signed with `secret` (its receiver's URL is its breaker). Pure.
pub fn notification(url: &str, key: &NotificationKey, due: &NotificationDue, secret: &[u8]) -> Outgoing {
    let id = delivery_id(key);
    let event = format!("pipeline.{}", key.1.as_str().to_lowercase());
    let body = json!({
        "delivery": id, "event": event, "tenant": due.tenant, "pipeline": key.0,
        "name": due.pipeline_name, "state": key.1, "at_ms": due.at_ms, "source": due.source,
    })
    .to_string();
    let signing_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let signature = hex::encode(ring::hmac::sign(&signing_key, body.as_bytes()).as_ref());
    Outgoing {
        breaker: url.to_string(),
        url: url.to_string(),
        headers: vec![
            ("Content-Type", "application/json".into()),
            ("User-Agent", "flotilla".into()),
            ("X-Flotilla-Event", event),
            ("X-Flotilla-Delivery", id),
            ("X-Flotilla-Signature-256", format!("sha256={signature}")),
        ],
        body,
    }
}

impl LeaderContext<'_> {
    /// Posts what is owed, in `term`. Returns how many were delivered.
    pub(super) async fn send_notifications(&self, term: u64, pauses: &ForgePauses) -> Result<usize, LeaderError> {
        let mut cleared: Vec<NotificationKey> = Vec::new();
        let mut posts: Vec<Owed<NotificationKey>> = Vec::new();
        {
            let data = self.machine.read();
            let state = &data.state;
            for (key, due) in state.notifications().due(POST_PER_TICK * 4) {
                if posts.len() >= POST_PER_TICK {
                    break;
                }
                let Some(notifier) = state.notifier(&due.tenant, &due.notifier) else {
                    cleared.push(key.clone()); // removed: nobody to tell
                    continue;
                };
                if pauses.resting(&notifier.url) {
                    continue;
                }
                match crate::secrets::open_one(self.keyring, state, &due.tenant, &notifier.secret) {
                    Ok(secret) => {
                        let n = notification(&notifier.url, key, due, secret.expose().as_bytes());
                        posts.push((key.clone(), Some(n)));
                    }
                    Err(e) => {
                        tracing::warn!(notifier = %due.notifier, error = %e, "a notifier's secret cannot be opened here")
                    }
                }
            }
        }
        let delivered = post_each(pauses, posts, "notification").await?;
        let count = delivered.len();
        cleared.extend(delivered);
        if cleared.is_empty() {
            return Ok(0);
        }
        if !self.leadership.holds(term) {
            return Err(LeaderError::Deposed { term });
        }
        let command = Command::NotificationsSent { keys: cleared };
        self.proposer
            .commit_here(Proposal::new(self.proposer.now_ms(), command))
            .await
            .map_err(|source| LeaderError::Propose {
                command: "notifications_sent",
                source,
            })?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_state_machine::{PipelineId, PipelineState};

    #[test]
    fn a_delivery_is_signed_over_its_body_and_named_for_deduplication() {
        let key = (PipelineId(7), PipelineState::Failed, "chat".to_string());
        let due = NotificationDue {
            tenant: "acme".into(),
            notifier: "chat".into(),
            pipeline_name: "ci".into(),
            at_ms: 5,
            source: None,
        };
        let n = notification("https://chat.example/hook", &key, &due, b"secret-value");
        let header = |name: &str| n.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        assert_eq!(header("X-Flotilla-Delivery").as_deref(), Some("p7-failed-chat"));
        assert_eq!(header("X-Flotilla-Event").as_deref(), Some("pipeline.failed"));
        let signature = header("X-Flotilla-Signature-256").unwrap();
        let digest = hex::decode(signature.strip_prefix("sha256=").unwrap()).unwrap();
        let signing_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret-value");
        assert!(ring::hmac::verify(&signing_key, n.body.as_bytes(), &digest).is_ok());
        let body: serde_json::Value = serde_json::from_str(&n.body).unwrap();
        assert_eq!(
            (body["pipeline"].as_u64(), body["state"].as_str()),
            (Some(7), Some("FAILED"))
        );
    }
}
