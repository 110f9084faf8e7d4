//! Secrets on the node's side: the key file (`key_file.rs`), envelope encryption
//! (`keyring.rs`), the masking of job output (`masker.rs`), and `resolve`, which opens the
//! secrets one job uses for its worker. The replicated state holds secrets only sealed
//! (`flotilla_state_machine::secret`).

mod key_file;
mod keyring;
mod masker;

pub use key_file::{KEK_PREFIX, KeyFileError, parse_key, read_key_file};
pub use keyring::{Keyring, SecretError, kek_id};
pub use masker::{MASK_BYTE, OutputMasker, committable};

use flotilla_providers::SecretValue;
use flotilla_state_machine::{JobSpec, SecretRecord, State, WrappedDataKey};
use std::collections::BTreeMap;

/// The sealed secrets a job uses, copied out of the state with the data keys they name.
#[derive(Clone, Debug, Default)]
pub struct SealedSecrets {
    pub tenant: String,
    /// Variable name to `(secret name, its record and data key if the state has them)`.
    pub uses: BTreeMap<String, (String, Option<(SecretRecord, WrappedDataKey)>)>,
}

impl SealedSecrets {
    /// What `state` holds of the secrets of `tenant` that `job` uses (in its environment and
    /// as files).
    pub fn from_state(state: &State, tenant: &str, job: &JobSpec) -> SealedSecrets {
        Self::named(state, tenant, job.secret_uses().map(|(_, var, name)| (var, name)))
    }

    /// What `state` holds of the secrets of `tenant` named by `uses`, each `(label, secret
    /// name)`: a job's variables, a repository's webhook secret or token, a notifier's key.
    pub fn named<'a>(state: &State, tenant: &str, uses: impl IntoIterator<Item = (&'a str, &'a str)>) -> SealedSecrets {
        let uses = uses
            .into_iter()
            .map(|(label, name)| {
                let held = state.secret(tenant, name).and_then(|record| {
                    state
                        .data_key(&record.sealed.key_id)
                        .map(|key| (record.clone(), key.clone()))
                });
                (label.to_string(), (name.to_string(), held))
            })
            .collect();
        SealedSecrets {
            tenant: tenant.to_string(),
            uses,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.uses.is_empty()
    }
}

/// Why the secrets of a job could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The secret was deleted after the job was submitted: its worker can never run.
    #[error("secret {name:?} of tenant {tenant:?} no longer exists")]
    Gone { tenant: String, name: String },
    /// This node has no `--secrets-key-file`; a leader that has one can run the job.
    #[error("the job uses secrets and this node has no --secrets-key-file")]
    NoKeyFile,
    #[error(transparent)]
    Open(#[from] SecretError),
}

impl ResolveError {
    /// Whether another try (on another leader, or with another key file) may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ResolveError::Gone { .. })
    }
}

/// Opens the one secret `name` of `tenant` that `state` holds.
pub fn open_one(
    keyring: Option<&Keyring>,
    state: &State,
    tenant: &str,
    name: &str,
) -> Result<SecretValue, ResolveError> {
    let mut values = resolve(keyring, &SealedSecrets::named(state, tenant, [("", name)]))?;
    values.remove("").ok_or_else(|| ResolveError::Gone {
        tenant: tenant.to_string(),
        name: name.to_string(),
    })
}

/// Opens every secret of `sealed` with `keyring`: variable name to value.
pub fn resolve(
    keyring: Option<&Keyring>,
    sealed: &SealedSecrets,
) -> Result<BTreeMap<String, SecretValue>, ResolveError> {
    let mut out = BTreeMap::new();
    for (var, (name, held)) in &sealed.uses {
        let Some((record, key)) = held else {
            return Err(ResolveError::Gone {
                tenant: sealed.tenant.clone(),
                name: name.clone(),
            });
        };
        let keyring = keyring.ok_or(ResolveError::NoKeyFile)?;
        let value = keyring.open(&sealed.tenant, name, &record.sealed, key)?;
        out.insert(var.clone(), SecretValue::new(value));
    }
    Ok(out)
}
