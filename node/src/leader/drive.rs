//! The drive tick: every assignment driven (a chunk of the state per read lock, many at once),
//! then per provider the orphan sweep, then measured capacity and pool problems. The decisions
//! are `reconcile::decide` and the functions of `fleet.rs`; this file reads the state, calls
//! the providers and proposes.

use super::executor::AssignmentView;
use super::fleet::{Reach, measured_capacity, orphans, pool_problem, reach};
use super::{LeaderContext, LeaderError};
use crate::secrets::SealedSecrets;
use flotilla_providers::{AnyProvider, Guarded, WorkerProvider};
use flotilla_state_machine::{Command, JobId, Pool, ProviderKind};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::Duration;

/// Assignments copied out of the state per read lock while driving (bounds the lock's hold).
const DRIVE_CHUNK: usize = 1024;

/// How far one chunk read went: assignments read, and the key of the last one.
struct ChunkProgress {
    count: usize,
    last: Option<(JobId, u32)>,
}

impl LeaderContext<'_> {
    /// Drives every assignment, a chunk at a time (the state's read lock is held only to copy
    /// a chunk out), `drive_concurrency` workers at once; then orphans, capacity and problems.
    pub(super) async fn drive_tick(&self, term: u64) -> Result<(), LeaderError> {
        let now_ms = self.proposer.now_ms();
        let mut after = None;
        // Live workers this leader cannot see, by pool and by the host they live on.
        let mut elsewhere: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        loop {
            let (views, progress) = self.views_after(after);
            let Some(last) = progress.last else { break };
            after = Some(last);
            for view in &views {
                if let Reach::OtherHost { host } = &view.reach {
                    *elsewhere
                        .entry(view.assignment.pool.to_string())
                        .or_default()
                        .entry(host.clone())
                        .or_default() += 1;
                }
            }
            futures::stream::iter(&views)
                .for_each_concurrent(self.config.drive_concurrency.max(1), |view| async move {
                    match self.drive(view, term, now_ms).await {
                        // Out of sight: the pool's recorded problem says so, once.
                        Ok(()) | Err(LeaderError::Deposed { .. } | LeaderError::OtherHost { .. }) => {}
                        Err(e) => tracing::warn!(job = %view.assignment.job, error = %e, "driving worker"),
                    }
                })
                .await;
            if progress.count < DRIVE_CHUNK {
                break;
            }
            if !self.leadership.holds(term) {
                return Err(LeaderError::Deposed { term });
            }
        }
        for (kind, provider) in self.providers.iter() {
            self.remove_orphans(term, kind, provider).await?;
        }
        self.sync_capacity(term).await?;
        self.sync_pool_problems(term, &elsewhere).await
    }

    /// Up to `DRIVE_CHUNK` assignments after `after`, with what driving them needs, and how
    /// far the read went.
    fn views_after(&self, after: Option<(JobId, u32)>) -> (Vec<AssignmentView>, ChunkProgress) {
        let data = self.machine.read();
        let state = &data.state;
        let mut progress = ChunkProgress { count: 0, last: None };
        let views = state
            .assignments_after(after)
            .take(DRIVE_CHUNK)
            .inspect(|a| {
                progress.count += 1;
                progress.last = Some((a.job, a.attempt));
            })
            .filter_map(|a| {
                let pool = state.pool(&a.pool);
                state.job(a.job).map(|j| AssignmentView {
                    assignment: a.clone(),
                    job: j.clone(),
                    kind: pool.map(|p| p.spec.provider),
                    reach: match pool {
                        None => Reach::NoProvider,
                        Some(p) => reach(
                            a.worker_host.as_deref(),
                            self.providers.get(p.spec.provider).is_some(),
                            self.whereabouts.of(p.spec.provider),
                        ),
                    },
                    trace_parent: state.trace_parent_of_job(j.id).map(str::to_string),
                    pool_settings: pool.map(|p| p.spec.settings.clone()).unwrap_or_default(),
                    secrets: SealedSecrets::from_state(state, &j.tenant, &j.spec),
                    source: crate::source::source_of(state, j),
                    log_room_bytes: state.log_cap_bytes(&j.tenant).saturating_sub(j.log_bytes),
                    artifact_kept: state.artifacts().get(j.id).is_some_and(|r| r.attempt == a.attempt),
                    artifact_limits: flotilla_providers::artifact_archive::PackLimits {
                        max_packed_bytes: state.limits().max_artifact_bytes_per_job,
                    },
                    cache_settled: j.cache_settled(a.attempt),
                    cache_limits: flotilla_providers::artifact_archive::PackLimits {
                        max_packed_bytes: state.limits().max_cache_bytes_per_tenant,
                    },
                    cache: if a.worker_id.is_none() {
                        state.cache_for(j).map(|r| r.digest.to_string())
                    } else {
                        None
                    },
                    // Only a worker still to be created needs them.
                    inputs: if a.worker_id.is_none() {
                        state.inputs_of(j).map(|r| r.digest.to_string()).collect()
                    } else {
                        Vec::new()
                    },
                })
            })
            .collect();
        (views, progress)
    }

    /// Records, for every pool, whether this leader can drive it and which of its workers it
    /// cannot see (`elsewhere`, by pool and host; see `pool_problem`).
    async fn sync_pool_problems(
        &self,
        term: u64,
        elsewhere: &BTreeMap<String, BTreeMap<String, usize>>,
    ) -> Result<(), LeaderError> {
        let none = BTreeMap::new();
        let changes: Vec<Command> = {
            let data = self.machine.read();
            data.state
                .pools()
                .filter_map(|p| {
                    let has_provider = self.providers.get(p.spec.provider).is_some();
                    let away = elsewhere.get(p.name()).unwrap_or(&none);
                    let own_place = self.whereabouts.of(p.spec.provider).unwrap_or(self.host_id);
                    pool_problem(p, has_provider, away, self.node_id, own_place)
                })
                .collect()
        };
        for command in changes {
            self.report_or_note(term, command, "recording a pool's problem").await?;
        }
        Ok(())
    }

    /// Proposes the capacity that providers measure for their pools (Kubernetes), when it
    /// differs from the registered one (see `measured_capacity`).
    async fn sync_capacity(&self, term: u64) -> Result<(), LeaderError> {
        let pools: Vec<Pool> = self.machine.read().state.pools().cloned().collect();
        for pool in pools {
            let Some(provider) = self.providers.get(pool.spec.provider).filter(|p| p.measures_capacity()) else {
                continue;
            };
            let measured = match provider.capacity(&pool.spec).await {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(pool = %pool.spec.name, error = %e, "measuring pool capacity");
                    continue;
                }
            };
            if let Some(command) = measured_capacity(&pool, measured) {
                self.report_or_note(term, command, "proposing measured capacity")
                    .await?;
            }
        }
        Ok(())
    }

    /// Proposes `command`; a failure other than losing leadership is noted and the tick goes on.
    async fn report_or_note(&self, term: u64, command: Command, what: &str) -> Result<(), LeaderError> {
        match self.report(term, command).await {
            Err(e @ LeaderError::Deposed { .. }) => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "{what}");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Stops and removes workers that no live assignment accounts for.
    ///
    /// Destructive, so it acts only on what is certain. The workers are listed first; then a
    /// read index (a quorum round trip) confirms this node still leads, and the local state is
    /// brought up to that index before the live assignments are read from it. Any listed
    /// worker was created for an assignment committed before it existed, so before the read
    /// index: a leader that is deposed without knowing it (paused, partitioned), or one newly
    /// elected whose state still lags behind its log, cannot mistake a worker that an
    /// assignment accounts for as an orphan and kill it (a job would then run twice).
    async fn remove_orphans(
        &self,
        term: u64,
        kind: ProviderKind,
        provider: &Guarded<AnyProvider>,
    ) -> Result<(), LeaderError> {
        let listed = match provider.list().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::debug!(provider = ?kind, error = %e, "listing workers");
                return Ok(());
            }
        };
        if listed.is_empty() {
            return Ok(());
        }
        let read_index = match self.proposer.read_index_local().await {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(error = %e, "leadership not confirmed; orphans left for now");
                return Ok(());
            }
        };
        self.applied_up_to(read_index).await;
        // Checked a chunk of names per read lock: a large fleet lists many workers, and `apply`
        // must not wait behind the whole list. A later state only knows more of what is live.
        let own_cluster = self.identity.cluster_id();
        let mut orphaned = Vec::new();
        for chunk in listed.chunks(DRIVE_CHUNK) {
            let data = self.machine.read();
            let live = |name: &str| {
                flotilla_providers::parse_worker_name(name)
                    .is_some_and(|(job, attempt)| data.state.assignments_of(job).any(|a| a.attempt == attempt))
            };
            orphaned.extend(orphans(
                chunk,
                own_cluster.as_deref(),
                data.last_applied.map_or(0, |l| l.index),
                read_index,
                live,
            ));
        }
        for name in &orphaned {
            if !self.leadership.holds(term) {
                return Err(LeaderError::Deposed { term });
            }
            match provider.terminate(name).await {
                Ok(true) => {
                    tracing::info!(provider = ?kind, worker = %name, "removing orphaned worker");
                    let _ = provider.remove(name).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(provider = ?kind, worker = %name, error = %e, "stopping orphaned worker"),
            }
        }
        Ok(())
    }

    /// Waits (a bounded time) until the local state has applied `index`.
    async fn applied_up_to(&self, index: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.config.tick_ms.max(100) * 10);
        loop {
            if self.machine.read().last_applied.is_some_and(|l| l.index >= index) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::debug!(index, "state not caught up with the read index; orphans left for now");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
