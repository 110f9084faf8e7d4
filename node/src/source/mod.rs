//! Pipelines from source: the repositories' webhooks (`forge.rs` reads and checks each
//! forge's deliveries), the `git` program that fetches commits (`git.rs`), and `Sources`,
//! which keeps one bare repository per registered repository on this node's disk, reads the
//! pipeline file of a pushed commit, and prepares each commit's checkout as a tar archive
//! that providers unpack into a job's work directory.
//!
//! The archive is made by the leader, not by the job: the worker needs neither git nor the
//! repository's token, which never reaches a job's environment or output, and a container
//! image without git runs repository pipelines all the same.

pub mod cache_keys;
pub mod cron;
pub mod fetch;
pub mod forge;
pub mod git;
pub mod grant;
pub mod put_files;
pub mod status;

use crate::secrets::{Keyring, SealedSecrets};
use flotilla_state_machine::{Repository, State};
use git::{GitDir, GitError, Remote};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where and how far `Sources` goes.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// `<data dir>/sources`: `repos/` (bare repositories) and `checkouts/` (archives).
    pub root: PathBuf,
    /// Deadline of one git command.
    pub git_timeout_ms: u64,
    /// Largest pipeline file read.
    pub max_pipeline_file_bytes: u64,
    /// Largest checkout (the tar archive of a commit's files).
    pub max_checkout_bytes: u64,
    /// Checkouts kept on disk; the least recently used go first.
    pub max_checkouts_kept: usize,
    /// Checkouts prepared at once.
    pub max_concurrent_checkouts: usize,
    /// Shallow fetches a bare repository holds before it is made anew (bounds its size).
    pub max_shallow_fetches: usize,
}

impl SourceConfig {
    pub fn new(root: PathBuf) -> SourceConfig {
        SourceConfig {
            root,
            git_timeout_ms: 120_000,
            max_pipeline_file_bytes: 1 << 20,
            max_checkout_bytes: 512 << 20,
            max_checkouts_kept: 64,
            max_concurrent_checkouts: 4,
            max_shallow_fetches: 200,
        }
    }
}

/// A repository pipeline's checkout and the variables its jobs see.
pub struct SourceView {
    pub order: CheckoutOrder,
    pub variables: Vec<(String, String)>,
}

/// What the checkout of `job`'s pipeline needs, if it runs from source; `Err` when its
/// repository was removed since (the attempt can never check out).
pub fn source_of(
    state: &flotilla_state_machine::State,
    job: &flotilla_state_machine::Job,
) -> Option<Result<SourceView, String>> {
    let source = state.pipeline(job.pipeline)?.source.as_ref()?;
    let Some(repo) = state.repository(&job.tenant, &source.repository) else {
        return Some(Err(format!(
            "repository {:?} of tenant {:?} was removed: its source cannot be checked out",
            source.repository, job.tenant
        )));
    };
    Some(Ok(SourceView {
        variables: source.variables(&repo.spec.url),
        order: CheckoutOrder {
            tenant: job.tenant.to_string(),
            repository: repo.spec.clone(),
            commit: source.commit.clone(),
            reference: source.reference.clone(),
            credentials: sealed_token(state, repo),
        },
    }))
}

/// After a checkout failed for a reason that may pass, how long before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Checkout states remembered at most (finished ones are forgotten first).
const MAX_SLOTS: usize = 4096;

/// Where a commit's checkout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckoutState {
    Ready(PathBuf),
    Preparing,
    Failed { reason: String, transient: bool },
}

#[derive(Clone, Debug)]
enum Slot {
    Preparing,
    Ready(PathBuf),
    Failed {
        reason: String,
        transient: bool,
        at: Instant,
    },
}

/// What a job's checkout needs, copied out of the state.
#[derive(Clone, Debug)]
pub struct CheckoutOrder {
    pub tenant: String,
    pub repository: flotilla_state_machine::RepositorySpec,
    pub commit: String,
    pub reference: Option<String>,
    /// The repository's fetch token, sealed (empty when it has none).
    pub credentials: SealedSecrets,
}

/// The repositories and checkouts on this node's disk.
pub struct Sources {
    config: SourceConfig,
    /// One lock per bare repository: fetches into one never overlap.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    slots: Mutex<HashMap<String, Slot>>,
    preparing: Arc<tokio::sync::Semaphore>,
}

/// The label of a repository's fetch token in its `SealedSecrets` (`sealed_token`).
pub const CREDENTIALS: &str = "credentials";

/// `repo`'s fetch token, sealed as the state holds it (empty for a repository without one),
/// for a checkout opened later, away from the state.
pub fn sealed_token(state: &State, repo: &Repository) -> SealedSecrets {
    SealedSecrets::named(
        state,
        &repo.tenant,
        repo.spec.credentials.as_deref().map(|name| (CREDENTIALS, name)),
    )
}

/// `repo`'s fetch token, opened; `None` for a repository without one.
pub fn token(
    state: &State,
    keyring: Option<&Keyring>,
    repo: &Repository,
) -> Result<Option<flotilla_providers::SecretValue>, crate::secrets::ResolveError> {
    repo.spec
        .credentials
        .as_deref()
        .map(|name| crate::secrets::open_one(keyring, state, &repo.tenant, name))
        .transpose()
}

/// Why a repository's pipeline file at a commit could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PipelineFileError {
    #[error("fetching {url}: {source}")]
    Fetch { url: String, source: GitError },
    #[error("commit {commit} has no {path}")]
    Missing { commit: String, path: String },
    #[error("{path} at {commit}: {message}")]
    Invalid {
        commit: String,
        path: String,
        message: String,
    },
}

impl Sources {
    pub fn new(config: SourceConfig) -> Arc<Sources> {
        Arc::new(Sources {
            preparing: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_checkouts.max(1))),
            config,
            locks: Mutex::default(),
            slots: Mutex::default(),
        })
    }

    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The name of a repository's directories: a digest of its tenant, name and URL, so a
    /// repository re-registered elsewhere starts afresh and tenants never share one.
    fn key(tenant: &str, spec: &flotilla_state_machine::RepositorySpec) -> String {
        let mut h = Sha256::new();
        for part in [tenant, &spec.name, &spec.url] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..16])
    }

    fn git_dir(&self, key: &str) -> GitDir {
        GitDir {
            dir: self.config.root.join("repos").join(format!("{key}.git")),
            timeout_ms: self.config.git_timeout_ms,
        }
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("source locks");
        if locks.len() > MAX_SLOTS {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Fetches `commit` of a repository into its bare repository on this node, made anew
    /// once it holds `max_shallow_fetches`.
    async fn fetch(
        &self,
        key: &str,
        remote: &Remote,
        commit: &str,
        reference: Option<&str>,
    ) -> Result<GitDir, GitError> {
        let git = self.git_dir(key);
        if git.shallow_roots() >= self.config.max_shallow_fetches {
            let _ = std::fs::remove_dir_all(&git.dir);
        }
        git.fetch(remote, commit, reference).await?;
        Ok(git)
    }

    /// The pipeline file of `repo` at `commit`, `None` if the commit has none.
    pub async fn pipeline_file(
        &self,
        repo: &Repository,
        token: Option<flotilla_providers::SecretValue>,
        commit: &str,
        reference: Option<&str>,
    ) -> Result<Option<Vec<u8>>, GitError> {
        let key = Self::key(&repo.tenant, &repo.spec);
        let lock = self.lock(&key);
        let _held = lock.lock().await;
        let remote = Remote {
            url: repo.spec.url.clone(),
            forge: repo.spec.forge,
            token,
        };
        let git = self.fetch(&key, &remote, commit, reference).await?;
        git.read_file(commit, &repo.spec.pipeline_path, self.config.max_pipeline_file_bytes)
            .await
    }

    /// The pipeline file of `repo` at `commit`, fetched and parsed (on the blocking pool,
    /// within the API's parse slots and budget, as a submitted body is).
    pub async fn read_spec(
        &self,
        repo: &Repository,
        token: Option<flotilla_providers::SecretValue>,
        commit: &str,
        reference: Option<&str>,
    ) -> Result<flotilla_state_machine::PipelineSpec, PipelineFileError> {
        let path = &repo.spec.pipeline_path;
        let file = self
            .pipeline_file(repo, token, commit, reference)
            .await
            .map_err(|source| PipelineFileError::Fetch {
                url: repo.spec.url.clone(),
                source,
            })?
            .ok_or_else(|| PipelineFileError::Missing {
                commit: commit.to_string(),
                path: path.clone(),
            })?;
        let mut spec: flotilla_state_machine::PipelineSpec =
            crate::api::input_body::parse_off_thread(file.into(), crate::api::input_body::parse_yaml)
                .await
                .map_err(|e| PipelineFileError::Invalid {
                    commit: commit.to_string(),
                    path: path.clone(),
                    message: e.message().to_string(),
                })?;
        self.resolve_cache_keys(repo, commit, &mut spec).await?;
        Ok(spec)
    }

    /// Appends to each job's `cache.key` the digest of its `cache.files` at `commit`
    /// (`cache_keys.rs`), from the bare repository the pipeline file was read from.
    async fn resolve_cache_keys(
        &self,
        repo: &Repository,
        commit: &str,
        spec: &mut flotilla_state_machine::PipelineSpec,
    ) -> Result<(), PipelineFileError> {
        let invalid = |message: String| PipelineFileError::Invalid {
            commit: commit.to_string(),
            path: repo.spec.pipeline_path.clone(),
            message,
        };
        let wanted = cache_keys::wanted(spec).map_err(invalid)?;
        if wanted.is_empty() {
            return Ok(());
        }
        let key = Self::key(&repo.tenant, &repo.spec);
        let lock = self.lock(&key);
        let _held = lock.lock().await;
        let git = self.git_dir(&key);
        let mut ids = Vec::with_capacity(wanted.len());
        for (job, path) in wanted {
            let id = git
                .object_id(commit, &path)
                .await
                .map_err(|source| PipelineFileError::Fetch {
                    url: repo.spec.url.clone(),
                    source,
                })?;
            ids.push(((job, path), id));
        }
        cache_keys::apply(spec, &ids);
        Ok(())
    }

    /// The commit `reference` of `repo` points at now, if it has that ref.
    pub async fn resolve(
        &self,
        repo: &Repository,
        token: Option<flotilla_providers::SecretValue>,
        reference: &str,
    ) -> Result<Option<String>, GitError> {
        let key = Self::key(&repo.tenant, &repo.spec);
        let lock = self.lock(&key);
        let _held = lock.lock().await;
        let remote = Remote {
            url: repo.spec.url.clone(),
            forge: repo.spec.forge,
            token,
        };
        self.git_dir(&key).ls_remote(&remote, reference).await
    }

    /// Where the checkout of `order` stands; starts preparing it if nobody has. Never waits
    /// on git: the leader's drive asks again at its next tick.
    pub fn checkout(self: &Arc<Self>, order: &CheckoutOrder, keyring: Option<&Keyring>) -> CheckoutState {
        let key = Self::key(&order.tenant, &order.repository);
        let id = format!("{key}-{}", order.commit);
        let path = self.config.root.join("checkouts").join(format!("{id}.tar"));
        let mut slots = self.slots.lock().expect("checkout slots");
        match slots.get(&id) {
            Some(Slot::Preparing) => return CheckoutState::Preparing,
            Some(Slot::Ready(p)) if p.exists() => return CheckoutState::Ready(p.clone()),
            Some(Slot::Failed { reason, transient, at }) if !*transient || at.elapsed() < RETRY_AFTER => {
                return CheckoutState::Failed {
                    reason: reason.clone(),
                    transient: *transient,
                };
            }
            _ => {}
        }
        if path.exists() {
            slots.insert(id, Slot::Ready(path.clone()));
            return CheckoutState::Ready(path);
        }
        let token = match crate::secrets::resolve(keyring, &order.credentials) {
            Ok(mut values) => values.remove(CREDENTIALS),
            Err(e) => {
                return CheckoutState::Failed {
                    reason: format!("the fetch token of repository {}: {e}", order.repository.name),
                    transient: e.is_transient(),
                };
            }
        };
        if slots.len() >= MAX_SLOTS {
            slots.retain(|_, s| matches!(s, Slot::Preparing));
        }
        slots.insert(id.clone(), Slot::Preparing);
        drop(slots);
        let sources = self.clone();
        let order = order.clone();
        tokio::spawn(async move {
            let _permit = sources.preparing.clone().acquire_owned().await;
            let remote = Remote {
                url: order.repository.url.clone(),
                forge: order.repository.forge,
                token,
            };
            let made = sources.prepare(&key, &remote, &order, &path).await;
            let slot = match made {
                Ok(()) => Slot::Ready(path),
                Err(e) => {
                    tracing::warn!(repository = %order.repository.name, commit = %order.commit, error = %e, "preparing a checkout");
                    Slot::Failed {
                        reason: format!("checking out {} at {}: {e}", order.repository.url, order.commit),
                        transient: e.is_transient(),
                        at: Instant::now(),
                    }
                }
            };
            sources.slots.lock().expect("checkout slots").insert(id, slot);
        });
        CheckoutState::Preparing
    }

    async fn prepare(
        &self,
        key: &str,
        remote: &Remote,
        order: &CheckoutOrder,
        path: &std::path::Path,
    ) -> Result<(), GitError> {
        let lock = self.lock(key);
        let _held = lock.lock().await;
        let git = self
            .fetch(key, remote, &order.commit, order.reference.as_deref())
            .await?;
        let dir = self.config.root.join("checkouts");
        std::fs::create_dir_all(&dir)?;
        git.archive(&order.commit, path, self.config.max_checkout_bytes).await?;
        self.prune_checkouts(&dir);
        Ok(())
    }

    /// Removes the least recently made checkouts past `max_checkouts_kept`.
    fn prune_checkouts(&self, dir: &std::path::Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut archives: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "tar"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if archives.len() <= self.config.max_checkouts_kept {
            return;
        }
        archives.sort();
        let excess = archives.len() - self.config.max_checkouts_kept;
        for (_, path) in archives.into_iter().take(excess) {
            let _ = std::fs::remove_file(path);
        }
    }
}
