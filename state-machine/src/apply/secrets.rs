//! Secrets: set (a new value, or the same value sealed under another key), deleted, and the
//! data key new values are sealed under rotated. What a sealed secret is: `secret.rs`.
//!
//! A data key leaves the state once no secret is sealed under it and it is not the active
//! one, so re-sealing every secret under a new key (`flotilla secret rotate-keys`) retires
//! the old key, and with it the key-encryption key that wrapped it.

use super::{EntryContext, Handled};
use crate::secret::{
    DATA_KEY_BYTES, MAX_DATA_KEYS, MAX_SECRET_BYTES_TOTAL, MAX_SECRET_VALUE_BYTES, MAX_SECRETS, MIN_SECRET_VALUE_BYTES,
    SEAL_TAG_BYTES, is_key_id,
};
use crate::spec::validate_name;
use crate::{Event, Rejection, Response, SealedValue, SecretRecord, SpecError, State, WrappedDataKey};

impl State {
    pub(crate) fn set_secret(
        &mut self,
        cx: &mut EntryContext,
        tenant: &str,
        name: &str,
        sealed: &SealedValue,
        new_data_key: Option<&WrappedDataKey>,
        expected_version: Option<u64>,
    ) -> Handled {
        validate_name("tenant", tenant, &self.limits)?;
        validate_name("name", name, &self.limits)?;
        let len = sealed.ciphertext.len();
        let (min, max) = (
            MIN_SECRET_VALUE_BYTES + SEAL_TAG_BYTES,
            MAX_SECRET_VALUE_BYTES + SEAL_TAG_BYTES,
        );
        if len < min || len > max {
            return Err(SpecError::OutOfRange {
                field: "value".into(),
                value: len.saturating_sub(SEAL_TAG_BYTES) as i64,
                min: MIN_SECRET_VALUE_BYTES as i64,
                max: MAX_SECRET_VALUE_BYTES as i64,
            }
            .into());
        }
        let key = (tenant.to_string(), name.to_string());
        let existing = self.secrets.get(&key);
        if let Some(expected) = expected_version {
            let actual = existing.map_or(0, |s| s.version);
            if actual != expected {
                return Err(Rejection::SecretChanged {
                    tenant: tenant.to_string(),
                    name: name.to_string(),
                    expected,
                    actual,
                });
            }
        }
        // A new value while a worker runs with the old one would leave the old one unmasked
        // in its output; a re-seal (same value) is fine.
        if existing.is_some() && expected_version.is_none() {
            self.refuse_if_in_use(tenant, name)?;
        }
        if let Some(k) = new_data_key {
            self.check_new_data_key(k)?;
        }
        let known_key =
            self.data_keys.contains_key(&sealed.key_id) || new_data_key.is_some_and(|k| k.id == sealed.key_id);
        if !known_key {
            return Err(Rejection::UnknownDataKey(sealed.key_id.clone()));
        }
        if existing.is_none() && self.secrets.len() >= MAX_SECRETS {
            return Err(Rejection::TooManySecrets {
                count: self.secrets.len(),
            });
        }
        let bytes_after = self.secret_bytes - existing.map_or(0, |s| s.sealed.ciphertext.len()) + len;
        if bytes_after > MAX_SECRET_BYTES_TOTAL {
            return Err(Rejection::SecretsTooLarge {
                bytes: bytes_after,
                max: MAX_SECRET_BYTES_TOTAL,
            });
        }

        // Checked: from here on nothing is refused.
        if let Some(k) = new_data_key
            && !self.data_keys.contains_key(&k.id)
        {
            self.data_keys.insert(k.id.clone(), k.clone());
            if self.active_data_key.is_none() {
                self.active_data_key = Some(k.id.clone());
            }
        }
        let version = existing.map_or(1, |s| s.version + 1);
        let replaced = self.secrets.insert(
            key,
            SecretRecord {
                sealed: sealed.clone(),
                version,
                updated_at_ms: cx.now_ms,
            },
        );
        self.secret_bytes = bytes_after;
        if let Some(old) = replaced {
            self.retire_data_key_if_unused(&old.sealed.key_id);
        }
        cx.emit(Event::SecretSet {
            tenant: tenant.to_string(),
            name: name.to_string(),
            version,
        });
        Ok(Response::SecretSet { version })
    }

    pub(crate) fn delete_secret(&mut self, cx: &mut EntryContext, tenant: &str, name: &str) -> Handled {
        if self.secret(tenant, name).is_some() {
            self.refuse_if_in_use(tenant, name)?;
        }
        let Some(old) = self.secrets.remove(&(tenant.to_string(), name.to_string())) else {
            return Err(Rejection::UnknownSecret {
                tenant: tenant.to_string(),
                name: name.to_string(),
            });
        };
        self.secret_bytes -= old.sealed.ciphertext.len();
        self.retire_data_key_if_unused(&old.sealed.key_id);
        cx.emit(Event::SecretDeleted {
            tenant: tenant.to_string(),
            name: name.to_string(),
        });
        Ok(Response::Done { changed: true })
    }

    /// Refuses to change secret `name` of `tenant` while a live worker uses it: the leader
    /// masks its output with the value the state holds, which must stay the worker's.
    fn refuse_if_in_use(&self, tenant: &str, name: &str) -> Result<(), Rejection> {
        let user = self.assignments.values().find_map(|a| {
            let job = self.jobs.get(&a.job)?;
            (job.tenant == tenant && job.spec.secret_uses().any(|(_, _, n)| n == name)).then_some(a.job)
        });
        match user {
            Some(job) => Err(Rejection::SecretInUse {
                tenant: tenant.to_string(),
                name: name.to_string(),
                job,
            }),
            None => Ok(()),
        }
    }

    /// Makes `key` the key new values are sealed under. The one it replaces stays while
    /// secrets are sealed under it.
    pub(crate) fn rotate_data_key(&mut self, key: &WrappedDataKey) -> Handled {
        if self.active_data_key.as_deref() == Some(key.id.as_str()) {
            return Ok(Response::Done { changed: false });
        }
        self.check_new_data_key(key)?;
        self.data_keys.insert(key.id.clone(), key.clone());
        let previous = self.active_data_key.replace(key.id.clone());
        if let Some(previous) = previous {
            self.retire_data_key_if_unused(&previous);
        }
        Ok(Response::Done { changed: true })
    }

    /// Checks the shape of a data key to be added; one already held must be the same.
    fn check_new_data_key(&self, k: &WrappedDataKey) -> Result<(), Rejection> {
        for (field, id) in [("data_key.id", &k.id), ("data_key.kek_id", &k.kek_id)] {
            if !is_key_id(id) {
                return Err(SpecError::InvalidName {
                    field: field.into(),
                    value: id.clone(),
                }
                .into());
            }
        }
        if k.wrapped.len() != DATA_KEY_BYTES + SEAL_TAG_BYTES {
            return Err(SpecError::Conflict {
                field: "data_key.wrapped".into(),
                reason: format!("a wrapped data key is {} bytes", DATA_KEY_BYTES + SEAL_TAG_BYTES),
            }
            .into());
        }
        match self.data_keys.get(&k.id) {
            Some(held) if held != k => Err(SpecError::Conflict {
                field: "data_key.id".into(),
                reason: format!("data key {} exists with other contents", k.id),
            }
            .into()),
            Some(_) => Ok(()),
            None if self.data_keys.len() >= MAX_DATA_KEYS => Err(Rejection::TooManyDataKeys {
                count: self.data_keys.len(),
            }),
            None => Ok(()),
        }
    }

    /// Forgets data key `id` if it is not the active key and no secret is sealed under it.
    fn retire_data_key_if_unused(&mut self, id: &str) {
        let active = self.active_data_key.as_deref() == Some(id);
        if !active && !self.secrets.values().any(|s| s.sealed.key_id == id) {
            self.data_keys.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        ApplyContext, Command, Event, Limits, Proposal, Rejection, Response, SealedValue, State, WrappedDataKey,
    };

    fn key(id: &str) -> WrappedDataKey {
        WrappedDataKey {
            id: id.to_string(),
            kek_id: "00000000000000aa".into(),
            nonce: [1; 12],
            wrapped: vec![7; 48],
        }
    }

    fn sealed(key_id: &str, len: usize) -> SealedValue {
        SealedValue {
            key_id: key_id.to_string(),
            nonce: [2; 12],
            ciphertext: vec![9; len],
        }
    }

    fn set(name: &str, sealed: SealedValue, new_key: Option<WrappedDataKey>, expected: Option<u64>) -> Command {
        Command::SetSecret {
            tenant: "web".into(),
            name: name.into(),
            sealed,
            new_data_key: new_key,
            expected_version: expected,
        }
    }

    fn run(state: &mut State, index: u64, command: Command) -> (Response, Vec<Event>) {
        state.apply(
            ApplyContext {
                log_index: index,
                term: 1,
            },
            &Proposal::new(1_000, command),
        )
    }

    const K1: &str = "1111111111111111";
    const K2: &str = "2222222222222222";

    #[test]
    fn the_first_secret_brings_the_first_data_key_and_makes_it_active() {
        let mut s = State::new(Limits::DEFAULT);
        let (r, events) = run(&mut s, 1, set("db", sealed(K1, 40), Some(key(K1)), None));
        assert_eq!(r, Response::SecretSet { version: 1 });
        assert_eq!(s.active_data_key(), Some(&key(K1)));
        assert!(matches!(&events[..], [Event::SecretSet { version: 1, .. }]));
        let (r, _) = run(&mut s, 2, set("db", sealed(K1, 40), None, None));
        assert_eq!(r, Response::SecretSet { version: 2 });
        assert_eq!(s.secret("web", "db").map(|r| r.version), Some(2));
    }

    #[test]
    fn a_value_under_an_unknown_key_or_of_a_bad_size_is_refused_and_changes_nothing() {
        let mut s = State::new(Limits::DEFAULT);
        let before = s.clone();
        let (r, _) = run(&mut s, 1, set("db", sealed(K1, 40), None, None));
        assert_eq!(r, Response::Rejected(Rejection::UnknownDataKey(K1.into())));
        let (r, _) = run(&mut s, 2, set("db", sealed(K1, 23), Some(key(K1)), None));
        assert!(
            matches!(r.rejection(), Some(Rejection::Invalid(e)) if e.field() == "value"),
            "{r:?}"
        );
        let mut bad = key(K1);
        bad.wrapped.pop();
        let (r, _) = run(&mut s, 3, set("db", sealed(K1, 40), Some(bad), None));
        assert!(
            matches!(r.rejection(), Some(Rejection::Invalid(e)) if e.field() == "data_key.wrapped"),
            "{r:?}"
        );
        let (r, _) = run(&mut s, 4, set("db/x", sealed(K1, 40), Some(key(K1)), None));
        assert!(
            matches!(r.rejection(), Some(Rejection::Invalid(e)) if e.field() == "name"),
            "{r:?}"
        );
        assert_eq!(s, before);
    }

    #[test]
    fn an_expected_version_guards_a_reseal_against_a_newer_value() {
        let mut s = State::new(Limits::DEFAULT);
        run(&mut s, 1, set("db", sealed(K1, 40), Some(key(K1)), None));
        run(&mut s, 2, set("db", sealed(K1, 41), None, None));
        let (r, _) = run(&mut s, 3, set("db", sealed(K1, 42), None, Some(1)));
        assert!(matches!(
            r.rejection(),
            Some(Rejection::SecretChanged {
                expected: 1,
                actual: 2,
                ..
            })
        ));
        let (r, _) = run(&mut s, 4, set("db", sealed(K1, 42), None, Some(2)));
        assert_eq!(r, Response::SecretSet { version: 3 });
    }

    #[test]
    fn a_rotated_key_retires_the_old_one_once_nothing_is_sealed_under_it() {
        let mut s = State::new(Limits::DEFAULT);
        run(&mut s, 1, set("a", sealed(K1, 40), Some(key(K1)), None));
        run(&mut s, 2, set("b", sealed(K1, 40), None, None));
        run(&mut s, 3, Command::RotateDataKey { key: key(K2) });
        assert_eq!(s.active_data_key().map(|k| k.id.as_str()), Some(K2));
        assert!(s.data_key(K1).is_some(), "secrets still use the old key");
        run(&mut s, 4, set("a", sealed(K2, 40), None, Some(1)));
        assert!(s.data_key(K1).is_some());
        run(&mut s, 5, set("b", sealed(K2, 40), None, Some(1)));
        assert!(s.data_key(K1).is_none(), "the old key is retired with its last secret");
        let (r, _) = run(&mut s, 6, set("c", sealed(K1, 40), None, None));
        assert_eq!(r.rejection(), Some(&Rejection::UnknownDataKey(K1.into())));
    }

    #[test]
    fn deleting_forgets_the_secret_and_its_bytes() {
        let mut s = State::new(Limits::DEFAULT);
        run(&mut s, 1, set("a", sealed(K1, 40), Some(key(K1)), None));
        let (r, events) = run(
            &mut s,
            2,
            Command::DeleteSecret {
                tenant: "web".into(),
                name: "a".into(),
            },
        );
        assert_eq!(r, Response::Done { changed: true });
        assert!(matches!(&events[..], [Event::SecretDeleted { .. }]));
        assert!(s.secret("web", "a").is_none());
        assert_eq!(s.secret_bytes, 0);
        assert!(s.data_key(K1).is_some(), "the active key stays");
        let (r, _) = run(
            &mut s,
            3,
            Command::DeleteSecret {
                tenant: "web".into(),
                name: "a".into(),
            },
        );
        assert!(matches!(r.rejection(), Some(Rejection::UnknownSecret { .. })));
    }

    #[test]
    fn the_total_of_sealed_bytes_is_bounded() {
        let mut s = State::new(Limits::DEFAULT);
        let big = crate::secret::MAX_SECRET_VALUE_BYTES + crate::secret::SEAL_TAG_BYTES;
        run(&mut s, 1, set("s0", sealed(K1, big), Some(key(K1)), None));
        let fit = crate::secret::MAX_SECRET_BYTES_TOTAL / big;
        for i in 1..fit {
            let (r, _) = run(&mut s, 1 + i as u64, set(&format!("s{i}"), sealed(K1, big), None, None));
            assert!(r.rejection().is_none(), "{r:?}");
        }
        let (r, _) = run(&mut s, 10_000, set("one-more", sealed(K1, big), None, None));
        assert!(
            matches!(r.rejection(), Some(Rejection::SecretsTooLarge { .. })),
            "{r:?}"
        );
    }
}
