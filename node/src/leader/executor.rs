//! Carries out `reconcile::decide`'s actions for one assignment: provider calls, reports through
//! the batcher, metrics and spans. It decides nothing itself: each provider answer becomes the
//! next `Sight`, and `decide` says what follows.

use super::fleet::Reach;
use super::reconcile::{Action, Known, Sight, decide};
use super::{LOG_CHUNK_BYTES, LeaderContext, LeaderError};
use crate::observe::metrics::ProviderLabel;
use crate::observe::telemetry;
use crate::secrets::{OutputMasker, SealedSecrets, committable};
use crate::source::CheckoutState;
use flotilla_providers::{AnyProvider, Guarded, Observation, SecretValue, WorkerProvider, WorkerSpec};
use flotilla_state_machine::{Assignment, CacheSave, Command, Job, ProviderKind, Response};
use opentelemetry::KeyValue;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// Rounds of decide-and-act for one assignment in one tick. The longest chain the rules make is
/// create, observe, commit output, report the exit (four rounds); a rule that kept asking would
/// stop here instead of spinning.
const MAX_ROUNDS: usize = 8;

/// What driving one assignment needs, copied out of the state so no lock is held across
/// provider calls.
pub(super) struct AssignmentView {
    pub assignment: Assignment,
    pub job: Job,
    /// The provider of the assignment's pool, if the pool exists.
    pub kind: Option<ProviderKind>,
    /// Whether this leader sees the pool's workers.
    pub reach: Reach,
    /// The trace of the job's pipeline, if it was submitted traced.
    pub trace_parent: Option<String>,
    /// The provider settings of the assignment's pool.
    pub pool_settings: BTreeMap<String, String>,
    /// The secrets the job uses, sealed, as the state holds them.
    pub secrets: SealedSecrets,
    /// How much more output the job's log holds (`max_log_bytes_per_job` less what it has):
    /// the commit stops after the chunk that fills it, and the rest is skipped.
    pub log_room_bytes: u64,
    /// The source its pipeline runs, if it came from a repository (`Err`: it can no longer
    /// be checked out, and why).
    pub source: Option<Result<crate::source::SourceView, String>>,
    /// Whether the state holds an artifact record of this attempt.
    pub artifact_kept: bool,
    /// What packing its artifacts may write (the state's limits).
    pub artifact_limits: flotilla_providers::artifact_archive::PackLimits,
    /// The blobs of the artifacts of the jobs it needs, in `needs` order (for a worker still
    /// to be created).
    pub inputs: Vec<String>,
    /// Whether the state records what came of this attempt's cache save.
    pub cache_settled: bool,
    /// What packing its cache may write (the tenant's whole cache budget).
    pub cache_limits: flotilla_providers::artifact_archive::PackLimits,
    /// The blob of the cache it restores, if its tenant keeps one (for a worker still to be
    /// created).
    pub cache: Option<String>,
}

/// The blobs a new worker starts with, on this node's disk.
pub(super) struct Blobs {
    /// The artifacts of the jobs it needs, in `needs` order.
    pub inputs: Vec<std::path::PathBuf>,
    /// Its cache, if restored.
    pub cache: Option<std::path::PathBuf>,
}

impl LeaderContext<'_> {
    /// Moves one assignment as far towards its desired state as this tick allows, in `term`.
    /// An error says why it could not go further (the next tick tries again).
    pub(super) async fn drive(&self, view: &AssignmentView, term: u64, now_ms: u64) -> Result<(), LeaderError> {
        let a = &view.assignment;
        let known = Known {
            assignment: a,
            job: &view.job,
            now_ms,
            jitter_permille: jitter(),
            artifact_kept: view.artifact_kept,
            cache_settled: view.cache_settled,
        };
        let name = flotilla_providers::worker_name(a.job, a.attempt);
        // A provider is asked only about workers this leader can see: on another host, "no such
        // worker" would say nothing of the real one, which may still run there.
        let provider = view
            .kind
            .filter(|_| view.reach == Reach::Sees)
            .and_then(|k| self.providers.get(k));
        // Why this assignment stops short this tick, if a provider could not be asked.
        let mut held_back: Option<LeaderError> = None;
        let mut sight = match &view.reach {
            Reach::Sees if provider.is_some() => Sight::Unasked,
            Reach::OtherHost { host } => {
                held_back = Some(LeaderError::OtherHost {
                    pool: a.pool.to_string(),
                    host: host.clone(),
                });
                Sight::OutOfSight
            }
            _ => {
                held_back = Some(LeaderError::NoProvider {
                    kind: view
                        .kind
                        .map_or_else(|| "(unknown pool)".to_string(), |k| k.to_string()),
                    pool: a.pool.to_string(),
                });
                Sight::OutOfSight
            }
        };
        // A job's secrets are opened once per tick: for its worker's creation and for masking
        // its output. Output of a job whose secrets this leader cannot open is not committed.
        let opened = (!view.secrets.is_empty()).then(|| {
            crate::secrets::resolve(self.keyring, &view.secrets).map(|values| {
                let masker = OutputMasker::new(values.values().map(SecretValue::expose));
                (values, masker)
            })
        });
        let no_secrets = OutputMasker::default();
        let mut observed: Option<Observation> = None;
        for _ in 0..MAX_ROUNDS {
            let mut answer = None;
            for action in decide(&known, &sight) {
                if !matches!(
                    action,
                    Action::Observe
                        | Action::CommitOutput { .. }
                        | Action::SkipOutput { .. }
                        | Action::CollectArtifacts { .. }
                        | Action::CollectCache { .. }
                ) && !self.leadership.holds(term)
                {
                    return Err(LeaderError::Deposed { term });
                }
                let Some(provider) = provider else {
                    // Without a provider the rules only report (a timeout).
                    if let Action::Report(command) = action {
                        self.report(term, command).await?;
                    }
                    continue;
                };
                match action {
                    Action::Report(command) => self.report(term, command).await?,
                    Action::Remove => provider.remove(&name).await?,
                    Action::Create => {
                        let secret_env = match &opened {
                            None => BTreeMap::new(),
                            Some(Ok((values, _))) => values.clone(),
                            // Deleted since the job was submitted: this worker can never run.
                            Some(Err(e)) if !e.is_transient() => {
                                answer = Some(Sight::Refused { reason: e.to_string() });
                                continue;
                            }
                            Some(Err(e)) => {
                                held_back = Some(LeaderError::Secrets(e.to_string()));
                                continue;
                            }
                        };
                        // The checkout is prepared beside the drive, never awaited here: until
                        // it is ready the worker is simply not created yet.
                        let checkout = match &view.source {
                            None => None,
                            Some(Err(reason)) => {
                                answer = Some(Sight::Refused { reason: reason.clone() });
                                continue;
                            }
                            Some(Ok(source)) => match self.sources.checkout(&source.order, self.keyring) {
                                CheckoutState::Ready(path) => Some(path),
                                CheckoutState::Preparing => continue,
                                CheckoutState::Failed {
                                    reason,
                                    transient: false,
                                } => {
                                    answer = Some(Sight::Refused { reason });
                                    continue;
                                }
                                CheckoutState::Failed { reason, .. } => {
                                    held_back = Some(LeaderError::Checkout(reason));
                                    continue;
                                }
                            },
                        };
                        // The blobs of the jobs it needs, fetched from the peers if missing here.
                        let inputs = match self.artifacts.inputs(&view.inputs) {
                            crate::artifacts::Progress::Ready(paths) => paths,
                            crate::artifacts::Progress::Preparing => continue,
                            crate::artifacts::Progress::Failed { reason, .. } => {
                                held_back = Some(LeaderError::Artifacts(reason));
                                continue;
                            }
                        };
                        // The cache, when this node has it or a peer gives it; a cache no node
                        // can give is a cold start, not a reason to wait.
                        let cache = match view.cache.as_deref() {
                            None => None,
                            Some(digest) => match self.artifacts.inputs(&[digest.to_string()]) {
                                crate::artifacts::Progress::Ready(mut paths) => {
                                    paths.pop().map(|p| (digest.to_string(), p))
                                }
                                crate::artifacts::Progress::Preparing => continue,
                                crate::artifacts::Progress::Failed { reason, .. } => {
                                    tracing::info!(job = %a.job, reason, "starting without the cache");
                                    None
                                }
                            },
                        };
                        let (cache_restored, cache_blob) = cache.unzip();
                        let blobs = Blobs {
                            inputs,
                            cache: cache_blob,
                        };
                        answer = Some(match self.create(provider, view, secret_env, checkout, blobs).await {
                            Ok(worker_id) => Sight::Created {
                                worker_id,
                                cache_restored,
                            },
                            // The provider can never run this worker: decided as a loss.
                            Err(e) if !e.is_transient() => Sight::Refused { reason: e.to_string() },
                            Err(e) => {
                                held_back = Some(e.into());
                                Sight::Unreachable
                            }
                        })
                    }
                    Action::Observe => {
                        answer = Some(match provider.observe(&name).await {
                            Ok(o) => {
                                observed = Some(o.clone());
                                Sight::Observed(o)
                            }
                            Err(e) => {
                                held_back = Some(e.into());
                                Sight::Unreachable
                            }
                        })
                    }
                    Action::Terminate => {
                        answer = Some(match provider.terminate(&name).await {
                            Ok(gone) => Sight::Terminated { gone },
                            Err(e) => {
                                held_back = Some(e.into());
                                Sight::Unreachable
                            }
                        })
                    }
                    Action::CommitOutput { from, to, complete } => {
                        let masker = match &opened {
                            None => &no_secrets,
                            Some(Ok((_, masker))) => masker,
                            Some(Err(e)) => {
                                held_back = Some(LeaderError::Secrets(e.to_string()));
                                continue;
                            }
                        };
                        let span = OutputSpan {
                            from,
                            to,
                            complete,
                            room: view.log_room_bytes,
                        };
                        let through = self.commit_output(provider, term, a, &name, span, masker).await?;
                        answer = Some(Sight::OutputCommitted {
                            observation: observed.clone().unwrap_or_default(),
                            through,
                        });
                    }
                    Action::CollectArtifacts { exit_code } => {
                        let Some(order) = collect_order(view, &name, crate::artifacts::Purpose::Artifacts) else {
                            continue;
                        };
                        match self.artifacts.collect(&order) {
                            crate::artifacts::Progress::Ready(packed) => {
                                answer = Some(Sight::ArtifactsCollected {
                                    exit_code,
                                    digest: packed.digest,
                                    size_bytes: packed.size_bytes,
                                    entries: packed.entries,
                                });
                            }
                            // Packing and copying go on beside the drive; asked again next tick.
                            crate::artifacts::Progress::Preparing => {}
                            crate::artifacts::Progress::Failed {
                                reason,
                                permanent: true,
                            } => answer = Some(Sight::ArtifactsRefused { exit_code, reason }),
                            crate::artifacts::Progress::Failed { reason, .. } => {
                                held_back = Some(LeaderError::Artifacts(reason));
                            }
                        }
                    }
                    Action::CollectCache { exit_code } => {
                        let Some(order) = collect_order(view, &name, crate::artifacts::Purpose::Cache) else {
                            continue;
                        };
                        // A cache is never worth failing or holding up the job: whatever
                        // stops it is reported as the reason it was not saved.
                        let outcome = match self.artifacts.collect(&order) {
                            crate::artifacts::Progress::Ready(packed) => CacheSave::Stored {
                                digest: packed.digest.into(),
                                size_bytes: packed.size_bytes,
                                entries: packed.entries,
                            },
                            crate::artifacts::Progress::Preparing => continue,
                            crate::artifacts::Progress::Failed { reason, .. } => CacheSave::NotSaved { reason },
                        };
                        answer = Some(Sight::CacheCollected { exit_code, outcome });
                    }
                    Action::RecordArtifact { command, exit_code } => {
                        let kind = command.kind();
                        match self.reports.commit(command).await {
                            Ok(Response::Rejected(r @ flotilla_state_machine::Rejection::ArtifactTooLarge { .. })) => {
                                answer = Some(Sight::ArtifactRecorded {
                                    exit_code,
                                    refused: Some(r.to_string()),
                                });
                            }
                            // Stale (another attempt, a finished job): nothing more to do here.
                            Ok(Response::Rejected(r)) => {
                                tracing::debug!(kind, reason = %r, "artifact record refused");
                            }
                            Ok(_) => {
                                answer = Some(Sight::ArtifactRecorded {
                                    exit_code,
                                    refused: None,
                                });
                            }
                            Err(source) => return Err(LeaderError::Propose { command: kind, source }),
                        }
                    }
                    Action::SkipOutput { from, to } => {
                        // Nothing is read: the provider may let go of the bytes.
                        if let Err(e) = provider.read_output(&name, to, 0).await {
                            held_back = Some(e.into());
                            answer = Some(Sight::Unreachable);
                            continue;
                        }
                        let command = Command::SkipLog {
                            job: a.job,
                            fencing: a.fencing,
                            offset: from,
                            to,
                        };
                        self.report(term, command).await?;
                        answer = Some(Sight::OutputCommitted {
                            observation: observed.clone().unwrap_or_default(),
                            through: to,
                        });
                    }
                }
            }
            match answer {
                Some(next) => sight = next,
                None => return held_back.map_or(Ok(()), Err),
            }
        }
        tracing::warn!(job = %a.job, ?sight, "the reconciler kept asking; stopped for this tick");
        held_back.map_or(Ok(()), Err)
    }

    /// Proposes one worker report in `term`, through the batcher. A refusal by `apply` is an
    /// answer (the report was stale or repeated), not an error.
    pub(super) async fn report(&self, term: u64, command: Command) -> Result<(), LeaderError> {
        if !self.leadership.holds(term) {
            return Err(LeaderError::Deposed { term });
        }
        let kind = command.kind();
        match self.reports.commit(command).await {
            Ok(Response::Rejected(r)) => {
                tracing::debug!(kind, reason = %r, "leader proposal rejected");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(source) => Err(LeaderError::Propose { command: kind, source }),
        }
    }

    /// Reads output `from..to` a chunk at a time, masks the job's secrets in it and commits
    /// each chunk as `AppendLog`; returns how far the commit got (short of `to` when the
    /// provider has nothing more to give yet, or while masking holds back a running worker's
    /// last bytes). Each read starts `masker.lookback()` bytes before the commit point, which
    /// the providers still hold (they release output only before the offset read).
    async fn commit_output(
        &self,
        provider: &Guarded<AnyProvider>,
        term: u64,
        a: &Assignment,
        name: &str,
        span: OutputSpan,
        masker: &OutputMasker,
    ) -> Result<u64, LeaderError> {
        let mut offset = span.from;
        let final_end = span.complete.then_some(span.to);
        while offset < span.to {
            let back = (masker.lookback() as u64).min(offset);
            let window_start = offset - back;
            let window = provider
                .read_output(name, window_start, LOG_CHUNK_BYTES + back as usize)
                .await?;
            if window.len() as u64 <= back {
                break;
            }
            let Some(data) = committable(masker, window_start, window, offset, final_end) else {
                break;
            };
            let len = data.len() as u64;
            let command = Command::AppendLog {
                job: a.job,
                fencing: a.fencing,
                offset,
                data,
            };
            self.report(term, command).await?;
            offset += len;
            if offset - span.from > span.room {
                break; // this chunk filled the log: what follows is skipped (`SkipOutput`)
            }
        }
        Ok(offset)
    }

    /// How a worker that cannot read this node's disk downloads `a`'s source: its endpoint
    /// on every member, this one first (it has the archive ready: the worker is created only
    /// then), and the attempt's grant. `None` on a leader without keys to sign it with (the
    /// provider says what is missing).
    fn source_fetch(&self, a: &Assignment) -> Option<flotilla_providers::SourceFetch> {
        let keyring = self.keyring?;
        let path = crate::source::grant::source_path(a.job, a.attempt);
        let urls = {
            let data = self.machine.read();
            let mut nodes: Vec<_> = data.last_membership.membership().nodes().collect();
            nodes.sort_by_key(|(id, _)| **id != self.node_id);
            nodes
                .into_iter()
                .map(|(_, node)| self.source_reach.transport.url(&node.api_addr, &path))
                .collect()
        };
        Some(flotilla_providers::SourceFetch {
            urls,
            grant: crate::source::grant::sign(keyring, crate::source::grant::Scope::Source, a),
            upload_grant: crate::source::grant::sign(keyring, crate::source::grant::Scope::Upload, a),
            ca_pem: self.source_reach.ca_pem.clone(),
        })
    }

    /// Creates the assignment's worker, with its create latency and a `worker.create` span.
    async fn create(
        &self,
        provider: &Guarded<AnyProvider>,
        view: &AssignmentView,
        secrets: BTreeMap<String, SecretValue>,
        checkout: Option<std::path::PathBuf>,
        blobs: Blobs,
    ) -> Result<String, flotilla_providers::ProviderError> {
        let a = &view.assignment;
        let spec = &view.job.spec;
        let (secret_files, secret_env) = secrets
            .into_iter()
            .partition(|(var, _)| spec.secret_files.contains_key(var));
        let uploads = uploads_of(view);
        let spec = WorkerSpec {
            job: a.job,
            attempt: a.attempt,
            fencing: a.fencing,
            steps: spec.steps.iter().map(|s| s.to_string()).collect(),
            // The source's variables first: the job's own of the same name win.
            env: view
                .source
                .iter()
                .flatten()
                .flat_map(|s| s.variables.iter().cloned())
                .chain(BTreeMap::from(&spec.env))
                .collect(),
            secret_env,
            secret_files,
            image: spec.image.clone(),
            resources: spec.resources,
            timeout_ms: spec.timeout_ms,
            labels: BTreeMap::from(&spec.constraints),
            pool_settings: view.pool_settings.clone(),
            cluster_id: self.identity.cluster_id(),
            source_fetch: (checkout.is_some()
                || !blobs.inputs.is_empty()
                || blobs.cache.is_some()
                || !uploads.is_empty())
            .then(|| self.source_fetch(a))
            .flatten(),
            checkout,
            inputs: blobs.inputs,
            cache: blobs.cache,
            uploads,
        };
        let started = Instant::now();
        let started_at = SystemTime::now();
        let created = provider.create(&spec).await;
        let provider_name = view.kind.map_or_else(String::new, |k| k.to_string());
        if created.is_ok() {
            let label = ProviderLabel {
                provider: provider_name.clone(),
            };
            self.metrics
                .worker_create_seconds
                .get_or_create(&label)
                .observe(started.elapsed().as_secs_f64());
        }
        let attributes = vec![
            KeyValue::new("flotilla.job", a.job.to_string()),
            KeyValue::new("flotilla.attempt", i64::from(a.attempt)),
            KeyValue::new("flotilla.provider", provider_name),
            KeyValue::new("flotilla.worker", spec.name()),
            KeyValue::new("flotilla.created", created.is_ok()),
        ];
        telemetry::record(
            "worker.create",
            view.trace_parent.as_deref(),
            started_at,
            SystemTime::now(),
            attributes,
        );
        created
    }
}

/// The part of a worker's output a `CommitOutput` asks for.
#[derive(Clone, Copy, Debug)]
struct OutputSpan {
    from: u64,
    to: u64,
    /// The worker exited: `to` is the end of its output.
    complete: bool,
    /// Room left in the job's log (`AssignmentView::log_room_bytes`).
    room: u64,
}

/// Retry jitter drawn by the proposer (0..=1000); `apply` stays deterministic.
fn jitter() -> u16 {
    (SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        % 1001) as u16
}

/// The collection of `purpose` from the assignment's worker `worker`: what `uploads_of`
/// says the job keeps, so a pod's own upload and a leader's pack take the same paths under
/// the same limit. `None` for a job that keeps no such files or a pool without a provider.
fn collect_order(
    view: &AssignmentView,
    worker: &str,
    purpose: crate::artifacts::Purpose,
) -> Option<crate::artifacts::CollectOrder> {
    let spec = uploads_of(view).take(purpose)?;
    Some(crate::artifacts::CollectOrder {
        job: view.assignment.job,
        attempt: view.assignment.attempt,
        purpose,
        kind: view.kind?,
        worker: worker.to_string(),
        paths: spec.paths,
        limits: flotilla_providers::artifact_archive::PackLimits {
            max_packed_bytes: spec.max_packed_bytes,
        },
    })
}

/// What a worker that sends its files back itself (a Kubernetes pod) uploads after its
/// steps: the job's artifacts, and its cache when the cache's policy saves it.
fn uploads_of(view: &AssignmentView) -> flotilla_providers::uploads::Uploads {
    use flotilla_providers::uploads::{UploadSpec, Uploads};
    let spec = &view.job.spec;
    Uploads {
        artifacts: spec.artifacts.as_deref().map(|a| UploadSpec {
            paths: a.paths.iter().map(|p| p.to_string()).collect(),
            always: a.when == flotilla_state_machine::ArtifactsWhen::Always,
            max_packed_bytes: view.artifact_limits.max_packed_bytes,
        }),
        cache: spec.cache.as_deref().filter(|c| c.policy.pushes()).map(|c| UploadSpec {
            paths: c.paths.iter().map(|p| p.to_string()).collect(),
            always: false,
            max_packed_bytes: view.cache_limits.max_packed_bytes,
        }),
    }
}
