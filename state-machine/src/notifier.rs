//! Outgoing notifications: a tenant's notifiers are URLs that hear about its pipelines
//! (started, and how they settled), each delivery signed with a tenant secret. As for commit
//! statuses, `apply` records what is owed, the leader posts it and commits what the receiver
//! took; every delivery has an id (`p<pipeline>-<state>-<notifier>`) the receiver can
//! deduplicate on, since a leader change may post one twice.

use crate::spec::validate_name;
use crate::{Limits, PipelineId, PipelineState, SpecError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most notifiers one tenant may have.
pub const MAX_NOTIFIERS_PER_TENANT: usize = 20;
/// Most notifications owed at once (the oldest given up past it).
pub const MAX_NOTIFICATIONS_DUE: usize = 10_000;

/// A notifier as its owner sets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierSpec {
    pub name: String,
    /// Where deliveries are posted: `https://` or `http://`, no credentials inside.
    pub url: String,
    /// The tenant secret that signs each delivery (HMAC-SHA256 of the body).
    pub secret: String,
    /// The pipeline states it hears about; empty: every one.
    #[serde(default)]
    pub on: Vec<PipelineState>,
}

impl NotifierSpec {
    pub fn validate(&self, limits: &Limits) -> Result<(), SpecError> {
        validate_name("name", &self.name, limits)?;
        validate_name("secret", &self.secret, limits)?;
        crate::repository::validate_http_url("url", &self.url)?;
        if self.on.len() > PipelineState::ALL.len() {
            return Err(SpecError::TooMany {
                field: "on".into(),
                count: self.on.len(),
                max: PipelineState::ALL.len(),
            });
        }
        Ok(())
    }

    /// Whether it hears about a pipeline reaching `state`.
    pub fn hears(&self, state: PipelineState) -> bool {
        self.on.is_empty() || self.on.contains(&state)
    }
}

/// One notification owed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationDue {
    pub tenant: String,
    pub notifier: String,
    pub pipeline_name: String,
    pub at_ms: u64,
    /// The pipeline's source, if it came from a repository (for the receiver).
    pub source: Option<crate::Source>,
}

/// `(pipeline, state, notifier)`: one delivery.
pub type NotificationKey = (PipelineId, PipelineState, String);

/// The delivery id a receiver deduplicates on.
pub fn delivery_id(key: &NotificationKey) -> String {
    format!("p{}-{}-{}", key.0.0, key.1.as_str().to_lowercase(), key.2)
}

/// The notifications owed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationOutbox {
    due: BTreeMap<NotificationKey, NotificationDue>,
    /// Notifications given up because the outbox was full.
    pub dropped: u64,
}

impl NotificationOutbox {
    pub(crate) fn owe(&mut self, key: NotificationKey, due: NotificationDue) {
        if !self.due.contains_key(&key) && self.due.len() >= MAX_NOTIFICATIONS_DUE && self.due.pop_first().is_some() {
            self.dropped += 1;
        }
        self.due.insert(key, due);
    }

    /// Clears `key`; returns whether it was owed.
    pub(crate) fn sent(&mut self, key: &NotificationKey) -> bool {
        self.due.remove(key).is_some()
    }

    /// Up to `max` owed notifications, oldest pipeline first.
    pub fn due(&self, max: usize) -> impl Iterator<Item = (&NotificationKey, &NotificationDue)> {
        self.due.iter().take(max)
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}
