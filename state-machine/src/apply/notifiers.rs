//! `PutNotifier`, `RemoveNotifier`, `NotificationsSent`, and what a pipeline owes its tenant's
//! notifiers when it starts and when it settles.

use super::Handled;
use crate::notifier::{MAX_NOTIFIERS_PER_TENANT, NotificationDue, NotificationKey, NotifierSpec};
use crate::spec::validate_name;
use crate::{Pipeline, Rejection, Response, SpecError, State};

/// Most keys one `NotificationsSent` clears.
pub const MAX_SENT_PER_COMMAND: usize = 1024;

impl State {
    pub(crate) fn put_notifier(&mut self, tenant: &str, spec: &NotifierSpec) -> Handled {
        validate_name("tenant", tenant, &self.limits)?;
        spec.validate(&self.limits)?;
        if self.secret(tenant, &spec.secret).is_none() {
            return Err(SpecError::UnknownSecret {
                field: "secret".into(),
                tenant: tenant.to_string(),
                name: spec.secret.clone(),
            }
            .into());
        }
        let key = (tenant.to_string(), spec.name.clone());
        if let Some(known) = self.notifiers.get_mut(&key) {
            let changed = known != spec;
            *known = spec.clone();
            return Ok(Response::Done { changed });
        }
        let count = self.notifiers_of(tenant).count();
        if count >= MAX_NOTIFIERS_PER_TENANT {
            return Err(Rejection::TooManyNotifiers {
                count,
                max: MAX_NOTIFIERS_PER_TENANT,
            });
        }
        self.notifiers.insert(key, spec.clone());
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn remove_notifier(&mut self, tenant: &str, name: &str) -> Handled {
        match self.notifiers.remove(&(tenant.to_string(), name.to_string())) {
            Some(_) => Ok(Response::Done { changed: true }),
            None => Err(Rejection::UnknownNotifier {
                tenant: tenant.to_string(),
                name: name.to_string(),
            }),
        }
    }

    pub(crate) fn notifications_sent(&mut self, keys: &[NotificationKey]) -> Handled {
        if keys.len() > MAX_SENT_PER_COMMAND {
            return Err(SpecError::TooMany {
                field: "keys".into(),
                count: keys.len(),
                max: MAX_SENT_PER_COMMAND,
            }
            .into());
        }
        let mut changed = false;
        for key in keys {
            changed |= self.notifications.sent(key);
        }
        Ok(Response::Done { changed })
    }

    /// Owes every notifier of `p`'s tenant that hears about its current state a delivery.
    pub(crate) fn notify(&mut self, p: &Pipeline, now_ms: u64) {
        let hearing: Vec<String> = self
            .notifiers_of(&p.tenant)
            .filter(|n| n.hears(p.state))
            .map(|n| n.name.clone())
            .collect();
        for notifier in hearing {
            self.notifications.owe(
                (p.id, p.state, notifier.clone()),
                NotificationDue {
                    tenant: p.tenant.clone(),
                    notifier,
                    pipeline_name: p.name.clone(),
                    at_ms: now_ms,
                    source: p.source.clone(),
                },
            );
        }
    }

    /// The notifiers of `tenant`, by name.
    pub fn notifiers_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a NotifierSpec> + 'a {
        self.notifiers
            .range((tenant.to_string(), String::new())..)
            .take_while(move |((t, _), _)| t == tenant)
            .map(|(_, n)| n)
    }

    /// Every notifier, as `(tenant, spec)`.
    pub fn notifiers(&self) -> impl Iterator<Item = (&str, &NotifierSpec)> {
        self.notifiers.iter().map(|((t, _), n)| (t.as_str(), n))
    }

    pub fn notifier(&self, tenant: &str, name: &str) -> Option<&NotifierSpec> {
        self.notifiers.get(&(tenant.to_string(), name.to_string()))
    }

    /// The notifications owed.
    pub fn notifications(&self) -> &crate::notifier::NotificationOutbox {
        &self.notifications
    }
}
