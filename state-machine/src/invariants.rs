//! Invariants of the replicated state, checked after every apply in debug builds and by the
//! tests. Each returns the first violation found, described for a human.

use crate::{JobState, Limits, PipelineState, Resources, State};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvariantViolation(pub String);

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(InvariantViolation(format!($($fmt)+)));
        }
    };
}

impl State {
    /// Checks a store against the state: every job's stored output length is what the state
    /// (or, for an archived job, its record on disk) counts, no output is kept for a job
    /// neither holds, every append started where its log ended, and the archived records on
    /// disk are exactly the archive's, matching its compact records. The property tests run
    /// it on each replica's store.
    pub fn check_disk(&self, disk: &crate::MemoryDisk) -> Result<(), InvariantViolation> {
        ensure!(
            disk.misplaced() == 0,
            "{} appends did not start at the end of their log",
            disk.misplaced()
        );
        for (job, len) in disk.lengths() {
            let counted = self.job(job).or_else(|| disk.job(job)).map_or(0, |j| j.log_bytes);
            ensure!(
                counted == len,
                "job {job} has {len} bytes of output stored, the state counts {counted}"
            );
        }
        for (id, j) in &self.jobs {
            ensure!(
                j.log_bytes == 0 || !disk.log(*id).is_empty(),
                "job {id} counts {} bytes of output, none stored",
                j.log_bytes
            );
            ensure!(disk.job(*id).is_none(), "live job {id} also has an archived record");
        }
        let mut archived_jobs = 0u64;
        for (id, a) in self.archive.iter() {
            let Some(p) = disk.pipeline(id) else {
                return Err(InvariantViolation(format!(
                    "archived pipeline {id} has no record on disk"
                )));
            };
            ensure!(
                Some(p.tenant.as_str()) == self.archive.tenant_of(id)
                    && p.finished_at_ms == Some(a.finished_at_ms)
                    && p.state.is_terminal()
                    && p.jobs.iter().copied().eq(a.job_ids()),
                "archived pipeline {id} does not match its record on disk"
            );
            let mut bytes = 0u64;
            let mut counts = std::collections::BTreeMap::new();
            for job in &p.jobs {
                let Some(j) = disk.job(*job) else {
                    return Err(InvariantViolation(format!("archived job {job} has no record on disk")));
                };
                ensure!(
                    j.pipeline == id && j.state.is_terminal(),
                    "archived job {job} does not match its pipeline {id}"
                );
                bytes += j.log_bytes;
                *counts.entry(j.state).or_insert(0u64) += 1;
            }
            ensure!(
                a.job_counts()
                    .iter()
                    .all(|(s, n)| counts.get(s).copied().unwrap_or(0) == *n),
                "archived pipeline {id} counts its jobs' states otherwise than their records"
            );
            ensure!(
                bytes == a.output_bytes,
                "archived pipeline {id} counts {} bytes of output, its jobs {bytes}",
                a.output_bytes
            );
            archived_jobs += u64::from(a.jobs);
        }
        ensure!(
            disk.pipelines().all(|p| self.archive.contains(p.id)),
            "a pipeline record on disk that the archive does not hold"
        );
        ensure!(
            disk.jobs().count() as u64 == archived_jobs,
            "{} job records on disk, {archived_jobs} archived",
            disk.jobs().count()
        );
        Ok(())
    }

    /// Checks the state's internal consistency: no job in two live assignments, allocation
    /// equal to the sum of assignments and within capacity, job states consistent with
    /// assignments and the DAG, indexes in step with the records they index.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_assignments()?;
        self.check_jobs()?;
        self.check_pipelines()?;
        self.check_indexes()?;
        ensure!(
            self.sessions.consistent(),
            "the client sessions and their index by last use disagree"
        );
        ensure!(
            self.tokens_by_secret.len() == self.tokens.len()
                && self
                    .tokens_by_secret
                    .iter()
                    .all(|(hash, id)| self.tokens.get(id).is_some_and(|t| &t.secret_sha256 == hash)),
            "the tokens and their index by secret disagree"
        );
        ensure!(
            self.tokens.keys().all(|id| id.0 <= self.last_token_id),
            "a token id above the last one given"
        );
        self.check_secrets()?;
        self.artifacts.consistent().map_err(InvariantViolation)?;
        self.caches.consistent().map_err(InvariantViolation)?;
        self.check_retention()
    }

    /// The settled pipelines are exactly the archived ones, keyed by their finish time under
    /// their tenant; those holding output are among them; no live pipeline is finished with
    /// no worker left (it would have been archived); the removal record is within its bound.
    fn check_retention(&self) -> Result<(), InvariantViolation> {
        let r = &self.retention;
        let mut settled = 0usize;
        for (tenant, s) in &r.settled {
            ensure!(
                !s.pipelines.is_empty(),
                "tenant {tenant:?} is kept with no settled pipeline"
            );
            ensure!(
                s.pipelines.well_formed() && s.with_output.well_formed(),
                "tenant {tenant:?}'s settled sets are not laid out as they must be"
            );
            ensure!(
                s.with_output.is_subset(&s.pipelines),
                "tenant {tenant:?} holds output of a pipeline that is not settled"
            );
            for (finished_at_ms, id) in s.pipelines.iter() {
                let archived = self.archive.get(*id);
                let ok = archived.is_some_and(|a| a.finished_at_ms == *finished_at_ms)
                    && self.archive.tenant_of(*id) == Some(tenant.as_str());
                ensure!(
                    ok,
                    "settled pipeline {id} of {tenant:?} does not match its archived record"
                );
                let holds = archived.is_some_and(|a| a.output_bytes > 0);
                ensure!(
                    holds == s.with_output.contains(&(*finished_at_ms, *id)),
                    "settled pipeline {id} holds output = {holds}, the index says otherwise"
                );
            }
            settled += s.pipelines.len();
        }
        ensure!(
            settled == self.archive.len(),
            "{settled} pipelines settled, {} archived",
            self.archive.len()
        );
        ensure!(
            self.archive.consistent(),
            "the archive's tenant names disagree with its records"
        );
        for (id, p) in &self.pipelines {
            let idle = p.jobs.iter().all(|j| self.assignments_of(*j).next().is_none());
            ensure!(
                !(p.state.is_terminal() && idle),
                "pipeline {id} is finished with no worker left and was not archived"
            );
            ensure!(
                p.output_removed_at_ms.is_none(),
                "live pipeline {id} had its output removed"
            );
            ensure!(
                self.archive.get(*id).is_none(),
                "pipeline {id} is both live and archived"
            );
        }
        ensure!(
            r.removals.len() <= crate::retention::MAX_REMOVAL_RECORDS,
            "{} removals recorded",
            r.removals.len()
        );
        Ok(())
    }

    /// Every secret is sealed under a data key the state holds, the active key is held, no
    /// key is held that nothing needs, and the byte count is the sum of the sealed values.
    fn check_secrets(&self) -> Result<(), InvariantViolation> {
        let bytes: usize = self.secrets.values().map(|s| s.sealed.ciphertext.len()).sum();
        ensure!(
            bytes == self.secret_bytes,
            "the secrets hold {bytes} sealed bytes, the count says {}",
            self.secret_bytes
        );
        for ((tenant, name), s) in &self.secrets {
            ensure!(
                self.data_keys.contains_key(&s.sealed.key_id),
                "secret {name:?} of {tenant:?} is sealed under data key {} the state does not hold",
                s.sealed.key_id
            );
        }
        if let Some(active) = &self.active_data_key {
            ensure!(
                self.data_keys.contains_key(active),
                "the active data key {active} is not held"
            );
        }
        for id in self.data_keys.keys() {
            ensure!(
                self.active_data_key.as_ref() == Some(id) || self.secrets.values().any(|s| &s.sealed.key_id == id),
                "data key {id} is neither active nor used by a secret"
            );
        }
        Ok(())
    }

    fn check_assignments(&self) -> Result<(), InvariantViolation> {
        let mut per_pool: BTreeMap<&str, (Resources, u32)> = BTreeMap::new();
        let mut per_tenant: BTreeMap<&str, (Resources, u32)> = BTreeMap::new();
        let mut per_job: BTreeMap<crate::JobId, u32> = BTreeMap::new();
        for (&(job, attempt), a) in &self.assignments {
            ensure!(
                a.job == job && a.attempt == attempt,
                "assignment keyed ({job}, {attempt}) holds ({}, {})",
                a.job,
                a.attempt
            );
            ensure!(self.jobs.contains_key(&job), "assignment of unknown job {job}");
            let count = per_job.entry(job).or_default();
            *count += 1;
            ensure!(*count == 1, "job {job} has {count} live assignments");
            ensure!(
                self.pools.contains_key(a.pool.as_str()),
                "assignment of {job} names unknown pool {}",
                a.pool
            );
            for (map, key) in [(&mut per_pool, a.pool.as_str()), (&mut per_tenant, a.tenant.as_str())] {
                let e = map.entry(key).or_insert((Resources::ZERO, 0));
                let sum = e.0.checked_add(&a.resources);
                ensure!(sum.is_some(), "resources of {key} overflow");
                e.0 = sum.unwrap_or_default();
                e.1 += 1;
            }
        }
        for (name, pool) in &self.pools {
            let (sum, workers) = per_pool.get(name.as_str()).copied().unwrap_or((Resources::ZERO, 0));
            ensure!(
                pool.allocated == sum,
                "pool {name} records {} allocated, its assignments sum to {sum}",
                pool.allocated
            );
            ensure!(
                pool.workers == workers,
                "pool {name} records {} workers, has {workers} assignments",
                pool.workers
            );
            ensure!(
                sum.fits_within(&pool.spec.capacity),
                "pool {name} oversubscribed: {sum} > {}",
                pool.spec.capacity
            );
            ensure!(
                workers <= pool.spec.max_workers,
                "pool {name} has {workers} workers > max {}",
                pool.spec.max_workers
            );
        }
        for (name, tenant) in &self.tenants {
            let (sum, running) = per_tenant.get(name.as_str()).copied().unwrap_or((Resources::ZERO, 0));
            ensure!(
                tenant.allocated == sum,
                "tenant {name} records {} allocated, assignments sum to {sum}",
                tenant.allocated
            );
            ensure!(
                tenant.running_jobs == running,
                "tenant {name} records {} running, has {running}",
                tenant.running_jobs
            );
        }
        for tenant in per_tenant.keys() {
            ensure!(
                self.tenants.contains_key(*tenant),
                "assignment names unknown tenant {tenant}"
            );
        }
        Ok(())
    }

    fn check_jobs(&self) -> Result<(), InvariantViolation> {
        for (id, job) in &self.jobs {
            ensure!(job.id == *id, "job keyed {id} has id {}", job.id);
            ensure!(id.0 >= 1 && id.0 <= self.last_job_id, "job id {id} was never assigned");
            ensure!(job.attempt >= 1, "job {id} is at attempt 0");
            ensure!(
                job.attempt <= job.spec.retry.max_retries + 1,
                "job {id} at attempt {} beyond its retry policy",
                job.attempt
            );
            let live = self.assignments.get(&(*id, job.attempt));
            match job.state {
                JobState::Scheduled | JobState::Running => {
                    let a = live
                        .ok_or_else(|| InvariantViolation(format!("{} job {id} has no live assignment", job.state)))?;
                    ensure!(!a.releasing, "{} job {id} has a releasing assignment", job.state);
                    ensure!(
                        job.fencing() == Some(a.fencing),
                        "job {id} attempt record does not match its assignment"
                    );
                }
                JobState::Pending => ensure!(live.is_none(), "PENDING job {id} holds an assignment for its attempt"),
                JobState::AwaitingApproval | JobState::Skipped => ensure!(
                    job.attempts.is_empty() && live.is_none(),
                    "{} job {id} was placed",
                    job.state
                ),
                _ => ensure!(
                    live.is_none_or(|a| a.releasing),
                    "{} job {id} holds a worker it does not release",
                    job.state
                ),
            }
            if !job.attempts.is_empty() {
                ensure!(
                    self.needs_satisfied(job),
                    "job {id} was placed before its needs finished"
                );
                ensure!(
                    job.spec.manual == matches!(job.gate.as_deref(), Some(crate::Gate::Approved { .. })),
                    "job {id} was placed, but it is manual and not approved (or approved and not manual)"
                );
            }
            ensure!(
                (job.state == JobState::Skipped) == matches!(job.gate.as_deref(), Some(crate::Gate::Skipped { .. })),
                "job {id} is {} with gate {:?}",
                job.state,
                job.gate
            );
            for w in job.attempts.windows(2) {
                ensure!(w[0].attempt < w[1].attempt, "job {id} attempt records out of order");
            }
            for need in &job.needs {
                let n = self
                    .jobs
                    .get(need)
                    .ok_or_else(|| InvariantViolation(format!("job {id} needs unknown {need}")))?;
                ensure!(n.dependants.contains(id), "{need} does not list dependant {id}");
                ensure!(n.pipeline == job.pipeline, "job {id} needs {need} of another pipeline");
            }
            // Caps may be lowered after output was kept, so the bound is the highest cap any
            // setting may give, plus the markers written past a cap.
            ensure!(
                job.log_bytes <= Limits::CEILING.max_log_bytes_per_job.saturating_add(256),
                "job {id} log exceeds the cap"
            );
        }
        Ok(())
    }

    fn check_pipelines(&self) -> Result<(), InvariantViolation> {
        for (id, p) in &self.pipelines {
            ensure!(
                id.0 >= 1 && id.0 <= self.last_pipeline_id,
                "pipeline id {id} was never assigned"
            );
            let all_done = p
                .jobs
                .iter()
                .all(|j| self.jobs.get(j).is_some_and(|j| j.state.is_terminal()));
            ensure!(
                all_done == p.state.is_terminal(),
                "pipeline {id} is {:?} but all jobs done = {all_done}",
                p.state
            );
            if p.state == PipelineState::Succeeded {
                let ok = p.jobs.iter().all(|j| crate::apply::satisfies_dependants(&self.jobs[j]));
                ensure!(ok, "pipeline {id} succeeded with a failed job");
            }
        }
        Ok(())
    }

    fn check_indexes(&self) -> Result<(), InvariantViolation> {
        let pending = self.jobs.values().filter(|j| j.state == JobState::Pending).count();
        ensure!(
            pending == self.pending.len(),
            "{pending} PENDING jobs but {} queued",
            self.pending.len()
        );
        for key in self.pending.iter() {
            let ok = self.jobs.get(&key.job).is_some_and(|j| {
                j.state == JobState::Pending && crate::QueueKey::new(j.spec.priority, &j.tenant, j.id) == *key
            });
            ensure!(ok, "queue entry for {} does not match a PENDING job", key.job);
        }
        let depth: u64 = self.pending.depth_by_priority().values().sum();
        ensure!(
            depth == self.pending.len() as u64,
            "queue depth by priority sums to {depth}, {} queued",
            self.pending.len()
        );
        let indexed: Vec<(JobState, crate::JobId)> = self.index.indexed_jobs().collect();
        ensure!(
            indexed.len() == self.jobs.len(),
            "{} jobs indexed by state, {} jobs",
            indexed.len(),
            self.jobs.len()
        );
        for (state, id) in indexed {
            ensure!(
                self.jobs.get(&id).is_some_and(|j| j.state == state),
                "job {id} indexed as {state} is not"
            );
        }
        for (state, n) in self.index.job_counts() {
            let actual = self.jobs.values().filter(|j| j.state == *state).count() as u64;
            ensure!(*n == actual, "{n} jobs counted {state}, {actual} are");
        }
        let indexed: Vec<_> = self.index.indexed_pipelines().collect();
        ensure!(
            indexed.len() == self.pipelines.len(),
            "{} pipelines indexed, {} pipelines",
            indexed.len(),
            self.pipelines.len()
        );
        for (state, id) in indexed {
            ensure!(
                self.pipelines.get(&id).is_some_and(|p| p.state == state),
                "pipeline {id} indexed as {state:?} is not"
            );
        }
        let mut per_tenant: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for j in self.jobs.values() {
            ensure!(
                self.index.holds_tenant_job(&j.tenant, j.state, j.id),
                "job {} of tenant {:?} ({}) is not in the tenant index",
                j.id,
                j.tenant,
                j.state
            );
            *per_tenant.entry(&j.tenant).or_default() += 1;
        }
        for p in self.pipelines.values() {
            ensure!(
                self.index.holds_tenant_pipeline(&p.tenant, p.state, p.id),
                "pipeline {} of tenant {:?} ({:?}) is not in the tenant index",
                p.id,
                p.tenant,
                p.state
            );
            *per_tenant.entry(&p.tenant).or_default() += 1;
        }
        ensure!(
            self.index.tenant_entries() == self.jobs.len() + self.pipelines.len(),
            "{} tenant index entries, {} jobs and pipelines",
            self.index.tenant_entries(),
            self.jobs.len() + self.pipelines.len()
        );
        let names: Vec<&str> = self.index.tenant_names().collect();
        ensure!(
            names.len() == per_tenant.len(),
            "{} tenant names indexed, {} tenants hold records",
            names.len(),
            per_tenant.len()
        );
        for (tenant, n) in &per_tenant {
            let uses = self.index.tenant_uses(tenant);
            ensure!(
                uses == *n,
                "tenant {tenant:?} counted {uses} records in the index, holds {n}"
            );
        }
        ensure!(
            self.idempotency.len() == self.idempotency_expiry.len(),
            "idempotency table and expiry index differ in size"
        );
        for (exp, tenant, key) in &self.idempotency_expiry {
            let rec = self.idempotency.get(&(tenant.clone(), key.clone()));
            ensure!(
                rec.is_some_and(|r| r.expires_at_ms == *exp),
                "expiry entry for key {key:?} has no record"
            );
        }
        Ok(())
    }

    /// Checks that going from `before` to `self` only moved jobs forward: no job vanished, and
    /// each job's `(attempt, rank)` rose or stayed with the state unchanged.
    pub fn check_progress_from(&self, before: &State, disk: &crate::MemoryDisk) -> Result<(), InvariantViolation> {
        for (id, old) in &before.jobs {
            // A job leaves the live state archived with its settled pipeline (then it is
            // compared with its record on disk), or removed with it by retention (finished).
            let Some(new) = self.job(*id).or_else(|| disk.job(*id)) else {
                ensure!(
                    old.state.is_terminal() && !self.pipelines.contains_key(&old.pipeline),
                    "job {id} vanished in state {} while its pipeline stayed or it was live",
                    old.state
                );
                continue;
            };
            let (o, n) = ((old.attempt, old.state.rank()), (new.attempt, new.state.rank()));
            ensure!(
                n > o || (n == o && old.state == new.state),
                "job {id} went back from {} {} to {} {}",
                old.attempt,
                old.state,
                new.attempt,
                new.state
            );
        }
        for (id, old) in &before.pipelines {
            let Some(new) = self.pipelines.get(id).or_else(|| disk.pipeline(*id)) else {
                ensure!(old.state.is_terminal(), "pipeline {id} vanished while {:?}", old.state);
                continue;
            };
            ensure!(
                !old.state.is_terminal() || old.state == new.state,
                "pipeline {id} left terminal state {:?}",
                old.state
            );
        }
        Ok(())
    }
}
