//! The leader's work loops: schedule (the placement loop); start workers, observe them, stop
//! them (the drive loop).
//!
//! It is level-triggered: every tick compares the replicated state (assignments, jobs) with what
//! the provider actually holds, and proposes the commands that close the gap. Nothing is kept
//! between ticks except a timer, so a node that becomes leader simply starts ticking and adopts
//! whatever workers exist; log offsets come from the replicated state, so output is committed
//! exactly once across leader changes.
//!
//! The decisions are pure functions tested as data: `reconcile.rs` for one assignment (what to
//! create, observe, report, terminate, remove), `fleet.rs` for the providers and pools as a
//! whole (orphans, pool problems, measured capacity), and the scheduler of the state machine
//! for placements. The files around them do the I/O: `executor.rs` carries out one
//! assignment's actions, `drive.rs` runs the drive tick over every assignment and provider,
//! `placement.rs` the placement tick. Proposals go through `commit_here` (directly, or in
//! batches through `report_batcher.rs`): a node that is no longer leader cannot get them
//! committed, and every tick stops as soon as the term it started in no longer holds
//! (`leadership.rs`).

mod drive;
mod error;
mod executor;
mod fleet;
mod leadership;
mod notifications;
mod outgoing;
mod placement;
mod reconcile;
pub mod report_batcher;
mod retention;
mod schedules;
mod statuses;

pub use error::LeaderError;
pub use leadership::Leadership;
pub use reconcile::{Action, Known, Sight, decide};

use crate::identity::Identity;
use crate::observe::metrics::NodeMetrics;
use crate::raft::proposer::Proposer;
pub use fleet::Whereabouts;
use flotilla_providers::ProviderSet;
use flotilla_raft_store::StateHandle;
use flotilla_state_machine::scheduler::SchedulerPolicy;
use report_batcher::{BatcherConfig, ReportBatcher};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Output bytes committed per `AppendLog` at most (below the state's chunk limit).
pub const LOG_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub tick_ms: u64,
    pub policy: SchedulerPolicy,
    /// Workers driven at once; their reports share Raft entries (see `report_batcher`).
    pub drive_concurrency: usize,
    pub batcher: BatcherConfig,
    /// How often the retention policies are enforced (`retention.rs`).
    pub retention_interval_ms: u64,
}

impl LeaderConfig {
    /// The defaults with a tick of `tick_ms`.
    pub fn with_tick_ms(tick_ms: u64) -> Self {
        LeaderConfig {
            tick_ms,
            policy: SchedulerPolicy::default(),
            drive_concurrency: 256,
            batcher: BatcherConfig::default(),
            retention_interval_ms: 5_000,
        }
    }
}

/// What the leader loop works with.
pub struct LeaderParts {
    pub node_id: u64,
    /// The host this node runs on (`--host-id`).
    pub host_id: String,
    /// Where its workers of each kind live (its host, a shared Docker engine): workers bound
    /// elsewhere are out of sight.
    pub whereabouts: Whereabouts,
    /// This node's identity: the cluster id its workers are labelled with.
    pub identity: Identity,
    pub leadership: Leadership,
    pub machine: StateHandle,
    pub proposer: Proposer,
    pub providers: Arc<ProviderSet>,
    pub metrics: Arc<NodeMetrics>,
    /// The secrets' keys: jobs that use secrets start only on a leader that has them.
    pub keyring: Option<Arc<crate::secrets::Keyring>>,
    /// Checkouts of repository pipelines, made on this node's disk.
    pub sources: Arc<crate::source::Sources>,
    /// How a pod reaches the nodes' APIs for its source (`source::grant`).
    pub source_reach: SourceReach,
    /// Artifacts packed from exited workers and delivered to new ones (`artifacts/`).
    pub artifacts: Arc<crate::artifacts::Collector>,
}

/// How a worker that downloads its source reaches the nodes: the nodes' API transport (its
/// URLs) and the CA's certificates (PEM) to trust them by (`None` under plain HTTP).
#[derive(Clone, Debug)]
pub struct SourceReach {
    pub transport: crate::tls::ApiTransport,
    pub ca_pem: Option<String>,
}

/// Runs the leader's loops until `stop` turns true. They work only while this node leads.
pub async fn run(parts: LeaderParts, config: LeaderConfig, stop: watch::Receiver<bool>) {
    let LeaderParts {
        node_id,
        host_id,
        whereabouts,
        identity,
        leadership,
        machine,
        proposer,
        providers,
        metrics,
        keyring,
        sources,
        source_reach,
        artifacts,
    } = parts;
    let (reports, batch_loop) = ReportBatcher::new(config.batcher);
    let context = LeaderContext {
        node_id,
        host_id: &host_id,
        whereabouts: &whereabouts,
        identity: &identity,
        leadership,
        machine: &machine,
        proposer: &proposer,
        reports: &reports,
        providers: providers.as_ref(),
        config: &config,
        metrics: &metrics,
        keyring: keyring.as_deref(),
        sources: &sources,
        source_reach: &source_reach,
        artifacts: &artifacts,
    };
    // Placement and worker driving run side by side: driving every assignment of a large
    // cluster takes many proposals, and placements must not wait behind them. `ApplyPlan` is
    // re-checked in `apply`, so the two never need to see each other's latest state.
    tokio::join!(
        placement_loop(&context, stop.clone()),
        drive_loop(&context, stop.clone()),
        retention_loop(&context, stop.clone()),
        status_loop(&context, stop.clone()),
        schedule_loop(&context, stop.clone()),
        notification_loop(&context, stop.clone()),
        batch_loop.run(&proposer, &metrics, stop)
    );
}

/// What every tick of the leader's loops works with.
struct LeaderContext<'a> {
    node_id: u64,
    host_id: &'a str,
    whereabouts: &'a Whereabouts,
    identity: &'a Identity,
    leadership: Leadership,
    machine: &'a StateHandle,
    proposer: &'a Proposer,
    /// Worker reports go through here, many to a Raft entry.
    reports: &'a ReportBatcher,
    providers: &'a ProviderSet,
    config: &'a LeaderConfig,
    metrics: &'a NodeMetrics,
    keyring: Option<&'a crate::secrets::Keyring>,
    sources: &'a Arc<crate::source::Sources>,
    source_reach: &'a SourceReach,
    artifacts: &'a Arc<crate::artifacts::Collector>,
}

/// Every tick, or at once after a full plan (more may be waiting): run the scheduler and
/// commit its plan.
async fn placement_loop(context: &LeaderContext<'_>, mut stop: watch::Receiver<bool>) {
    let mut leadership = context.leadership.clone();
    let mut ticker = tokio::time::interval(Duration::from_millis(context.config.tick_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut again = false;
    loop {
        if leadership.term().is_none() && leadership.acquired(&mut stop).await.is_none() {
            return;
        }
        if !again {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
        } else if *stop.borrow() {
            return;
        }
        let Some(term) = leadership.term() else {
            again = false;
            continue;
        };
        match context.place(term).await {
            // A full plan that was accepted: more jobs may be waiting, go again at once.
            Ok(accepted) => again = accepted >= context.config.policy.max_placements,
            Err(e) => {
                again = false;
                tracing::warn!(error = %e, "placing jobs");
            }
        }
    }
}

/// Every `retention_interval_ms`: remove what the retention policies make due.
async fn retention_loop(context: &LeaderContext<'_>, stop: watch::Receiver<bool>) {
    every_interval(context, context.config.retention_interval_ms, stop, |term| async move {
        match context.expire(term).await {
            Ok(0) | Err(LeaderError::Deposed { .. }) => {}
            Ok(named) => tracing::info!(pipelines = named, "retention removed finished work"),
            Err(e) => tracing::warn!(error = %e, "enforcing retention"),
        }
        match context.expire_artifacts(term).await {
            Ok(0) | Err(LeaderError::Deposed { .. }) => {}
            Ok(named) => tracing::info!(jobs = named, "expired artifacts removed"),
            Err(e) => tracing::warn!(error = %e, "expiring artifacts"),
        }
    })
    .await
}

/// Every second: post the commit statuses owed to forges (`statuses.rs`).
async fn status_loop(context: &LeaderContext<'_>, stop: watch::Receiver<bool>) {
    let pauses = outgoing::ForgePauses::default();
    let pauses = &pauses;
    every_interval(context, STATUS_INTERVAL_MS, stop, |term| async move {
        match context.report_statuses(term, pauses).await {
            Ok(_) | Err(LeaderError::Deposed { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "reporting commit statuses"),
        }
    })
    .await
}

/// Every second: deliver the notifications owed (`notifications.rs`).
async fn notification_loop(context: &LeaderContext<'_>, stop: watch::Receiver<bool>) {
    let pauses = outgoing::ForgePauses::default();
    let pauses = &pauses;
    every_interval(context, STATUS_INTERVAL_MS, stop, |term| async move {
        match context.send_notifications(term, pauses).await {
            Ok(_) | Err(LeaderError::Deposed { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "delivering notifications"),
        }
    })
    .await
}

/// Every second: fire the schedules whose time has come (`schedules.rs`).
async fn schedule_loop(context: &LeaderContext<'_>, stop: watch::Receiver<bool>) {
    every_interval(context, STATUS_INTERVAL_MS, stop, |term| async move {
        match context.fire_schedules(term).await {
            Ok(_) | Err(LeaderError::Deposed { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "firing schedules"),
        }
    })
    .await
}

/// How often the leader posts owed commit statuses.
const STATUS_INTERVAL_MS: u64 = 1_000;

/// Every tick: drive each assignment's worker, remove orphans, follow measured capacity.
async fn drive_loop(context: &LeaderContext<'_>, stop: watch::Receiver<bool>) {
    every_interval(context, context.config.tick_ms, stop, |term| async move {
        match context.drive_tick(term).await {
            Ok(()) | Err(LeaderError::Deposed { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "leader tick stopped early"),
        }
    })
    .await
}

/// Runs `tick` with the term every `interval_ms` while this node leads, until `stop`: the
/// shape of every leader loop that has no reason to go again at once.
async fn every_interval<F, Fut>(context: &LeaderContext<'_>, interval_ms: u64, mut stop: watch::Receiver<bool>, tick: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut leadership = context.leadership.clone();
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if leadership.term().is_none() && leadership.acquired(&mut stop).await.is_none() {
            return;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(term) = leadership.term() else { continue };
        tick(term).await;
    }
}
