//! What each console page shows, gathered in one read of this node's applied state: the BFF's
//! answers (`/ui/api/...`, JSON) and the pages (HTML) are built from the same values, so the
//! page and its live refresh can never disagree.
//!
//! Every builder takes the state's read lock once, copies what its page needs, and lets go: a
//! page costs its page (the pipelines' index reads a page; a pipeline's jobs are that
//! pipeline's), never a scan of the history.

use crate::api::pipelines::{ListFilter, PipelineView};
use crate::api::{ApiError, AppState};
use crate::auth::TenantScope;
use flotilla_state_machine::scheduler::PendingExplanation;
use flotilla_state_machine::{Job, JobId, JobState, PipelineId, PipelineState, Pool, Resources};
use serde::Serialize;

/// Most pending jobs counted per tenant on the pools page; past it the page says "at least".
pub const MAX_COUNTED_PENDING: usize = 1_000;
/// Most pools and most tenants the pools page lists (by name); the rest are counted.
pub const MAX_FLEET_ROWS: usize = 500;

/// Where a page's data came from: which node, at which applied entry, when.
#[derive(Clone, Debug, Serialize)]
pub struct Freshness {
    pub node: u64,
    pub applied_index: u64,
    /// The node's wall clock when the page was read, ms since the epoch.
    pub read_at_ms: u64,
}

impl Freshness {
    /// The freshness of a read of `data` (taken under the same lock as the page's data).
    pub fn of(app: &AppState, data: &flotilla_raft_store::StateMachineData) -> Freshness {
        Freshness {
            node: app.id,
            applied_index: data.last_applied.map_or(0, |l| l.index),
            read_at_ms: crate::raft::proposer::wall_clock_ms(),
        }
    }
}

/// `read()`, and when it finds nothing, `read()` again once this node has applied all the
/// leader had committed: a pipeline just submitted through another node (or this one, as a
/// follower) may not be applied here yet, and "not found" must not be a lag. A miss costs one
/// round trip to the leader; a hit costs nothing more.
pub async fn confirmed<T>(
    app: &AppState,
    read: impl Fn() -> Result<Option<T>, ApiError>,
) -> Result<Option<T>, ApiError> {
    if let Some(found) = read()? {
        return Ok(Some(found));
    }
    app.read_barrier(Some("linearizable")).await?;
    read()
}

/// The pipelines page.
#[derive(Serialize)]
pub struct PipelinesPage {
    pub freshness: Freshness,
    pub items: Vec<PipelineView>,
    /// The `after` cursor of the next page, if there is one.
    pub next_after: Option<u64>,
    /// A name search that stopped at `MAX_NAME_SCAN`: the last id it read.
    pub scanned_to: Option<u64>,
}

pub fn pipelines(app: &AppState, scope: &TenantScope, filter: &ListFilter) -> Result<PipelinesPage, ApiError> {
    let data = app.machine.read();
    let freshness = Freshness::of(app, &data);
    let items = crate::api::pipelines::page_of(&data.state, app.machine.disk(), scope, filter)?;
    let page = crate::api::Page::collect(
        items.into_iter(),
        filter.page,
        |v| v.pipeline.id.0,
        freshness.applied_index,
    );
    Ok(PipelinesPage {
        freshness,
        items: page.items,
        next_after: page.next_after,
        scanned_to: None,
    })
}

/// Pipelines scanned at most for one page of a name search; the page then ends early and its
/// cursor resumes the scan.
pub const MAX_NAME_SCAN: usize = 10_000;
/// Pipelines read per step of a name search.
const NAME_SCAN_STEP: usize = 1_000;

/// A page of pipelines whose name contains `needle` (case-insensitive): no index answers it,
/// so the filter's pipelines are scanned in id order, a step at a time, up to `MAX_NAME_SCAN`
/// of them; the cursor resumes where the scan stopped. The read lock is let go between steps.
pub fn pipelines_named(
    app: &AppState,
    scope: &TenantScope,
    filter: &ListFilter,
    needle: &str,
) -> Result<PipelinesPage, ApiError> {
    let needle = needle.to_lowercase();
    let mut items = Vec::new();
    let mut after = filter.after;
    let mut scanned = 0usize;
    let mut freshness = None;
    let mut exhausted = false;
    while items.len() <= filter.page && scanned < MAX_NAME_SCAN {
        let step = ListFilter {
            after,
            page: NAME_SCAN_STEP.min(MAX_NAME_SCAN - scanned),
            ..*filter
        };
        let data = app.machine.read();
        freshness.get_or_insert_with(|| Freshness::of(app, &data));
        let mut batch = crate::api::pipelines::page_of(&data.state, app.machine.disk(), scope, &step)?;
        drop(data);
        let more = batch.len() > step.page;
        batch.truncate(step.page);
        scanned += batch.len();
        for v in batch {
            after = v.pipeline.id;
            if v.pipeline.name.to_lowercase().contains(&needle) {
                items.push(v);
                if items.len() > filter.page {
                    break;
                }
            }
        }
        if !more {
            exhausted = items.len() <= filter.page;
            break;
        }
    }
    let next_after = if items.len() > filter.page {
        items.truncate(filter.page);
        items.last().map(|v| v.pipeline.id.0)
    } else if exhausted {
        None
    } else {
        Some(after.0)
    };
    let freshness = freshness.unwrap_or_else(|| Freshness::of(app, &app.machine.read()));
    Ok(PipelinesPage {
        freshness,
        items,
        next_after,
        scanned_to: (!exhausted).then_some(after.0),
    })
}

/// One job as a pipeline's page shows it.
#[derive(Clone, Debug, Serialize)]
pub struct JobRow {
    pub id: JobId,
    pub name: String,
    pub state: JobState,
    pub attempt: u32,
    /// The jobs it needs (ids).
    pub needs: Vec<JobId>,
    pub pool: Option<String>,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// From the first start to the finish, or to the read for a running job.
    pub duration_ms: Option<u64>,
}

impl JobRow {
    fn of(job: &Job, now_ms: u64) -> JobRow {
        let started = job.attempts.iter().find_map(|a| a.started_at_ms);
        let last = job.attempts.last();
        let finished = if job.state.is_terminal() {
            last.and_then(|a| a.finished_at_ms).or(Some(job.updated_at_ms))
        } else {
            None
        };
        JobRow {
            id: job.id,
            name: job.spec.name.to_string(),
            state: job.state,
            attempt: job.attempt,
            needs: job.needs.to_vec(),
            pool: last.map(|a| a.pool.to_string()),
            started_at_ms: started,
            finished_at_ms: finished,
            duration_ms: started.map(|s| finished.unwrap_or(now_ms).saturating_sub(s)),
        }
    }
}

/// A pipeline with its jobs and their edges.
#[derive(Serialize)]
pub struct PipelineDetail {
    pub freshness: Freshness,
    pub id: PipelineId,
    pub name: String,
    pub tenant: String,
    pub state: PipelineState,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// The repository and commit it runs, if it came from source.
    pub source: Option<flotilla_state_machine::Source>,
    /// The pipeline it runs again, if it is a re-run.
    pub rerun_of: Option<PipelineId>,
    pub jobs: Vec<JobRow>,
    /// `(need, dependant)` pairs.
    pub edges: Vec<(JobId, JobId)>,
}

/// `None`: no such pipeline, or one the caller may not see.
pub fn pipeline(app: &AppState, scope: &TenantScope, id: PipelineId) -> Result<Option<PipelineDetail>, ApiError> {
    let data = app.machine.read();
    let freshness = Freshness::of(app, &data);
    let now_ms = freshness.read_at_ms;
    let disk = app.machine.disk();
    let Some(p) = crate::api::records::pipeline(&data.state, disk, id)?.filter(|p| scope.admits(&p.tenant)) else {
        return Ok(None);
    };
    let jobs: Vec<JobRow> = crate::api::records::jobs_of(&data.state, disk, &p)?
        .iter()
        .map(|j| JobRow::of(j, now_ms))
        .collect();
    let edges = jobs
        .iter()
        .flat_map(|j| j.needs.iter().map(move |n| (*n, j.id)))
        .collect();
    Ok(Some(PipelineDetail {
        freshness,
        id: p.id,
        name: p.name.clone(),
        tenant: p.tenant.clone(),
        state: p.state,
        created_at_ms: p.created_at_ms,
        finished_at_ms: p.finished_at_ms,
        source: p.source.clone(),
        rerun_of: p.rerun_of,
        jobs,
        edges,
    }))
}

/// A job with its steps, attempts and, while it waits, why.
#[derive(Serialize)]
pub struct JobDetail {
    pub freshness: Freshness,
    pub row: JobRow,
    pub pipeline: PipelineId,
    pub tenant: String,
    pub steps: Vec<String>,
    pub current_step: Option<u32>,
    pub steps_completed: u32,
    pub failed_step: Option<u32>,
    pub failure: Option<String>,
    /// Who approved it, or why it was skipped.
    pub gate: Option<String>,
    /// The least role that may approve it, while it waits for an approval.
    pub approver: Option<flotilla_state_machine::Role>,
    pub log_bytes: u64,
    pub log_truncated: bool,
    pub attempts: Vec<AttemptRow>,
    pub why_pending: Option<PendingExplanation>,
    /// The files it kept, if it kept any that have not expired.
    pub artifact: Option<flotilla_state_machine::ArtifactRecord>,
}

#[derive(Serialize)]
pub struct AttemptRow {
    pub attempt: u32,
    pub pool: String,
    pub scheduled_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub outcome: Option<String>,
    /// What it did with the job's cache, in words (`-` for a job without one).
    pub cache: String,
}

/// An attempt's cache as a person reads it: restored or not, saved or why not.
fn cache_text(job: &flotilla_state_machine::Job, a: &flotilla_state_machine::AttemptRecord) -> String {
    let Some(spec) = job.spec.cache.as_deref() else {
        return "-".into();
    };
    let note = a.cache.as_deref();
    let restored = match note.and_then(|c| c.restored.as_deref()) {
        Some(digest) => format!("{} restored ({})", spec.key, &digest[..digest.len().min(12)]),
        None if spec.policy.pulls() && a.started_at_ms.is_some() => format!("{} cold", spec.key),
        None => spec.key.to_string(),
    };
    match note.and_then(|c| c.saved.as_ref()) {
        Some(flotilla_state_machine::CacheSave::Stored { size_bytes, .. }) => {
            format!("{restored}; saved, {size_bytes} bytes")
        }
        Some(flotilla_state_machine::CacheSave::NotSaved { reason }) => format!("{restored}; not saved: {reason}"),
        None => restored,
    }
}

pub fn job(app: &AppState, scope: &TenantScope, id: JobId) -> Result<Option<JobDetail>, ApiError> {
    let now_ms = app.proposer.now_ms();
    let data = app.machine.read();
    let freshness = Freshness::of(app, &data);
    let Some(j) = crate::api::records::job(&data.state, app.machine.disk(), id)?.filter(|j| scope.admits(&j.tenant))
    else {
        return Ok(None);
    };
    let why_pending = (j.state == JobState::Pending)
        .then(|| flotilla_state_machine::scheduler::why_pending(&data.state, id, now_ms))
        .flatten();
    Ok(Some(JobDetail {
        row: JobRow::of(&j, freshness.read_at_ms),
        freshness,
        pipeline: j.pipeline,
        tenant: j.tenant.to_string(),
        steps: j.spec.steps.iter().map(ToString::to_string).collect(),
        current_step: j.current_step,
        steps_completed: j.steps_completed,
        failed_step: j.failed_step,
        failure: j.failure.as_ref().map(|f| format!("{f:?}")),
        gate: j.gate.as_deref().map(|g| match g {
            flotilla_state_machine::Gate::Approved { by, .. } => format!("approved by {by}"),
            flotilla_state_machine::Gate::Skipped { reason } => format!("skipped: {reason}"),
        }),
        approver: (j.state == JobState::AwaitingApproval)
            .then(|| j.spec.approver())
            .flatten(),
        log_bytes: j.log_bytes,
        log_truncated: j.log_truncated,
        attempts: j
            .attempts
            .iter()
            .map(|a| AttemptRow {
                attempt: a.attempt,
                pool: a.pool.to_string(),
                scheduled_at_ms: a.scheduled_at_ms,
                started_at_ms: a.started_at_ms,
                finished_at_ms: a.finished_at_ms,
                outcome: a.outcome.as_ref().map(|o| format!("{o:?}")),
                cache: cache_text(&j, a),
            })
            .collect(),
        why_pending,
        artifact: data.state.artifacts().get(id).cloned(),
    }))
}

/// The cluster as this node sees it, with each member's lag where this node leads.
#[derive(Serialize)]
pub struct ClusterOverview {
    pub freshness: Freshness,
    #[serde(flatten)]
    pub cluster: crate::api::cluster::ClusterView,
    /// Entries each member is behind this leader's last log index (only on the leader).
    pub lag: Vec<(u64, Option<u64>)>,
    /// Leadership changes as this node saw them, newest first.
    pub leader_changes: Vec<crate::raft::leader_history::LeaderChange>,
    /// Each member's readiness, as the member itself answers it.
    pub health: Vec<MemberHealth>,
}

/// How long a member's readiness probe may take before it counts as unreachable.
pub const HEALTH_PROBE_TIMEOUT_MS: u64 = 1_000;

/// One member's answer to `GET /v1/health/ready`.
#[derive(Clone, Debug, Serialize)]
pub struct MemberHealth {
    pub id: u64,
    pub ready: bool,
    /// `ready`, the member's reason for not being ready, or why it could not be asked.
    pub detail: String,
}

/// Asks every member at once whether it is ready, each within `HEALTH_PROBE_TIMEOUT_MS`.
async fn member_health(app: &AppState, members: &[(u64, String)]) -> Vec<MemberHealth> {
    let probes = members.iter().map(|(id, addr)| {
        let url = app.founding.api.url(addr, "/v1/health/ready");
        let http = app.founding.http.clone();
        async move {
            let probe = tokio::time::timeout(std::time::Duration::from_millis(HEALTH_PROBE_TIMEOUT_MS), async move {
                let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
                let ready = response.status().is_success();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let detail = if ready {
                    "ready".to_string()
                } else {
                    body["error"]["message"].as_str().unwrap_or("not ready").to_string()
                };
                Ok::<_, String>((ready, detail))
            })
            .await;
            let (ready, detail) = match probe {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => (false, format!("unreachable: {e}")),
                Err(_) => (false, format!("no answer within {HEALTH_PROBE_TIMEOUT_MS} ms")),
            };
            MemberHealth { id: *id, ready, detail }
        }
    });
    futures::future::join_all(probes).await
}

pub async fn cluster(app: &AppState) -> ClusterOverview {
    let cluster = crate::api::cluster::view(app);
    let lag = cluster
        .members
        .iter()
        .map(|m| {
            let behind = match (cluster.last_log_index, m.matched_index) {
                (Some(last), Some(matched)) => Some(last.saturating_sub(matched)),
                _ => None,
            };
            (m.id, behind)
        })
        .collect();
    let members: Vec<(u64, String)> = cluster.members.iter().map(|m| (m.id, m.api_addr.clone())).collect();
    let health = member_health(app, &members).await;
    let freshness = Freshness::of(app, &app.machine.read());
    ClusterOverview {
        freshness,
        cluster,
        lag,
        leader_changes: app.leader_history.recent(),
        health,
    }
}

/// Pools, and tenants with their quota, allocation and queue depth.
#[derive(Serialize)]
pub struct PoolsOverview {
    pub freshness: Freshness,
    /// The first `MAX_FLEET_ROWS` pools by name.
    pub pools: Vec<Pool>,
    pub pools_not_shown: usize,
    /// The first `MAX_FLEET_ROWS` tenants by name.
    pub tenants: Vec<TenantRow>,
    pub tenants_not_shown: usize,
    pub capacity: Resources,
    pub allocated: Resources,
}

#[derive(Serialize)]
pub struct TenantRow {
    pub name: String,
    pub quota: Option<flotilla_state_machine::Quota>,
    pub allocated: Resources,
    pub running_jobs: u32,
    /// Pending jobs, counted up to `MAX_COUNTED_PENDING`.
    pub pending_jobs: usize,
    /// Whether the count stopped at `MAX_COUNTED_PENDING`.
    pub pending_at_least: bool,
}

pub fn pools(app: &AppState, scope: &TenantScope) -> PoolsOverview {
    let data = app.machine.read();
    let freshness = Freshness::of(app, &data);
    let s = &data.state;
    let sum = |f: &dyn Fn(&Pool) -> Resources| {
        s.pools()
            .fold(Resources::ZERO, |acc, p| acc.checked_add(&f(p)).unwrap_or(acc))
    };
    let capacity = sum(&|p| p.spec.capacity);
    let allocated = sum(&|p| p.allocated);
    let pools: Vec<Pool> = s.pools().take(MAX_FLEET_ROWS).cloned().collect();
    let pools_not_shown = s.pools().count().saturating_sub(pools.len());
    // The tenants listed: those the state knows (a quota, or work placed) and those with pending
    // work, in the caller's scope, the first `MAX_FLEET_ROWS` by name.
    let mut names: std::collections::BTreeSet<&str> =
        s.tenants().map(|(name, _)| name).filter(|n| scope.admits(n)).collect();
    for (_, tenants) in s.pending_queue().levels() {
        names.extend(tenants.into_iter().filter(|t| scope.admits(t)));
    }
    let tenants_not_shown = names.len().saturating_sub(MAX_FLEET_ROWS);
    let listed: std::collections::BTreeSet<&str> = names.into_iter().take(MAX_FLEET_ROWS).collect();
    // Pending per listed tenant, from the queue's runs: each run is read only up to the cap.
    let mut pending: std::collections::BTreeMap<String, usize> = Default::default();
    for (priority, tenants) in s.pending_queue().levels() {
        for tenant in tenants {
            if !listed.contains(tenant) {
                continue;
            }
            let counted = pending.entry(tenant.to_string()).or_default();
            let room = (MAX_COUNTED_PENDING + 1).saturating_sub(*counted);
            *counted += s.pending_queue().jobs_of(priority, tenant).take(room).count();
        }
    }
    let mut tenants: Vec<TenantRow> = s
        .tenants()
        .filter(|(name, _)| listed.contains(name))
        .map(|(name, t)| TenantRow {
            name: name.to_string(),
            quota: t.quota.clone(),
            allocated: t.allocated,
            running_jobs: t.running_jobs,
            pending_jobs: 0,
            pending_at_least: false,
        })
        .collect();
    for (name, n) in pending {
        match tenants.iter_mut().find(|t| t.name == name) {
            Some(t) => t.pending_jobs = n,
            None => tenants.push(TenantRow {
                name,
                quota: None,
                allocated: Resources::ZERO,
                running_jobs: 0,
                pending_jobs: n,
                pending_at_least: false,
            }),
        }
    }
    for t in &mut tenants {
        if t.pending_jobs > MAX_COUNTED_PENDING {
            t.pending_jobs = MAX_COUNTED_PENDING;
            t.pending_at_least = true;
        }
    }
    tenants.sort_by(|a, b| a.name.cmp(&b.name));
    PoolsOverview {
        freshness,
        pools,
        pools_not_shown,
        tenants,
        tenants_not_shown,
        capacity,
        allocated,
    }
}
