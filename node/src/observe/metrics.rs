//! `GET /metrics`: the node's Prometheus metrics (OpenMetrics text, which Prometheus reads).
//!
//! Hot-path counters (API requests, provider calls) are atomics updated where they happen.
//! Everything derivable from state (Raft indexes, jobs by state, queue depth, pool usage,
//! breaker states) is read at scrape time, so it cannot drift from what the node holds.

use crate::Raft;
use flotilla_providers::{BreakerState, ProviderSet};
use flotilla_raft_store::StateHandle;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabel {
    priority: i64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabel {
    part: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

pub struct NodeMetrics {
    registry: Registry,
    pub api_requests: Family<RequestLabels, Counter>,
    pub api_latency_seconds: Family<RouteLabels, Histogram>,
    raft_term: Gauge,
    raft_is_leader: Gauge,
    raft_last_log_index: Gauge,
    raft_committed_index: Gauge,
    raft_applied_index: Gauge,
    raft_snapshot_index: Gauge,
    jobs: Family<StateLabel, Gauge>,
    archived_jobs: Gauge,
    /// What RocksDB holds in memory, by part (against `--storage-memtable-mib` and
    /// `--storage-block-cache-mib`).
    storage_memory_bytes: Family<PartLabel, Gauge>,
    queue_depth: Family<PriorityLabel, Gauge>,
    pool_workers: Family<PoolLabel, Gauge>,
    pool_allocated_cpu_millis: Family<PoolLabel, Gauge>,
    pool_capacity_cpu_millis: Family<PoolLabel, Gauge>,
    provider_calls: Family<ProviderLabel, Counter>,
    provider_failures: Family<ProviderLabel, Counter>,
    provider_breaker_open: Family<ProviderLabel, Gauge>,
    raft_appends: Counter,
    raft_append_wait_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    raft_wal_syncs: Counter,
    raft_snapshots_built: Counter,
    raft_snapshots_installed: Counter,
    raft_snapshot_lock_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    retention_pipelines_removed: Counter,
    retention_output_bytes_removed: Counter,
    artifact_bytes: Family<TenantLabel, Gauge>,
    /// Bytes of caches each tenant keeps (against `max_cache_bytes_per_tenant`).
    cache_bytes: Family<TenantLabel, Gauge>,
    /// Bytes of artifact blobs on this node's disk (set by `artifacts::run_sweeps`).
    pub artifact_blob_bytes: Gauge,
    pub scheduler_plan_seconds: Histogram,
    pub scheduler_placements: Counter,
    pub scheduler_rejected_placements: Counter,
    pub leader_report_batch_commands: Histogram,
    pub worker_create_seconds: Family<ProviderLabel, Histogram>,
    pub job_duration_seconds: Family<OutcomeLabel, Histogram>,
    pub events_published: Counter,
    pub events_publish_duplicates: Counter,
    pub events_publish_errors: Counter,
    pub events_publish_gaps: Counter,
    pub events_publish_lag: Gauge,
    /// Observed by the Raft service on each AppendEntries (`raft/leader_contact.rs`).
    pub raft_leader_contact: Arc<crate::raft::leader_contact::LeaderContact>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flotilla");
        let api_requests = Family::<RequestLabels, Counter>::default();
        let api_latency_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "api_requests",
            "REST requests answered, by route, method and status",
            api_requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "REST request latency until the response head",
            api_latency_seconds.clone(),
        );
        let mut m = NodeMetrics {
            api_requests,
            api_latency_seconds,
            raft_term: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_last_log_index: Gauge::default(),
            raft_committed_index: Gauge::default(),
            raft_applied_index: Gauge::default(),
            raft_snapshot_index: Gauge::default(),
            jobs: Family::default(),
            archived_jobs: Gauge::default(),
            storage_memory_bytes: Family::default(),
            queue_depth: Family::default(),
            pool_workers: Family::default(),
            pool_allocated_cpu_millis: Family::default(),
            pool_capacity_cpu_millis: Family::default(),
            provider_calls: Family::default(),
            provider_failures: Family::default(),
            provider_breaker_open: Family::default(),
            raft_appends: Counter::default(),
            raft_append_wait_seconds: Counter::default(),
            raft_wal_syncs: Counter::default(),
            raft_snapshots_built: Counter::default(),
            raft_snapshots_installed: Counter::default(),
            raft_snapshot_lock_seconds: Counter::default(),
            retention_pipelines_removed: Counter::default(),
            retention_output_bytes_removed: Counter::default(),
            artifact_bytes: Family::default(),
            cache_bytes: Family::default(),
            artifact_blob_bytes: Gauge::default(),
            scheduler_plan_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            scheduler_placements: Counter::default(),
            scheduler_rejected_placements: Counter::default(),
            leader_report_batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            worker_create_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16))),
            job_duration_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.1, 2.0, 18))),
            events_published: Counter::default(),
            events_publish_duplicates: Counter::default(),
            events_publish_errors: Counter::default(),
            events_publish_gaps: Counter::default(),
            events_publish_lag: Gauge::default(),
            raft_leader_contact: Default::default(),
            registry,
        };
        let r = &mut m.registry;
        r.register("raft_term", "Current Raft term", m.raft_term.clone());
        r.register(
            "artifact_bytes",
            "Bytes of artifacts each tenant keeps (compressed; replicated: every node says the same)",
            m.artifact_bytes.clone(),
        );
        r.register(
            "cache_bytes",
            "Bytes of caches each tenant keeps (compressed; replicated: every node says the same)",
            m.cache_bytes.clone(),
        );
        r.register(
            "artifact_blob_bytes",
            "Bytes of artifact blobs on this node's disk",
            m.artifact_blob_bytes.clone(),
        );
        r.register("raft_is_leader", "1 on the leader", m.raft_is_leader.clone());
        r.register(
            "raft_last_log_index",
            "Last index in this node's log",
            m.raft_last_log_index.clone(),
        );
        r.register(
            "raft_committed_index",
            "Highest index this node knows committed",
            m.raft_committed_index.clone(),
        );
        r.register(
            "raft_applied_index",
            "Highest index applied to this node's state",
            m.raft_applied_index.clone(),
        );
        r.register(
            "raft_snapshot_index",
            "Index of the newest snapshot",
            m.raft_snapshot_index.clone(),
        );
        r.register(
            "jobs",
            "Jobs by state in this node's applied state, live and archived",
            m.jobs.clone(),
        );
        r.register(
            "archived_jobs",
            "Jobs of settled pipelines, archived on disk (their records read by key, not held in memory)",
            m.archived_jobs.clone(),
        );
        r.register(
            "storage_memory_bytes",
            "Memory RocksDB holds: its memtables, its shared block cache and its table readers",
            m.storage_memory_bytes.clone(),
        );
        r.register(
            "scheduler_queue_depth",
            "PENDING jobs by priority",
            m.queue_depth.clone(),
        );
        r.register("pool_workers", "Live workers per pool", m.pool_workers.clone());
        r.register(
            "pool_allocated_cpu_millis",
            "CPU reserved per pool",
            m.pool_allocated_cpu_millis.clone(),
        );
        r.register(
            "pool_capacity_cpu_millis",
            "CPU capacity per pool",
            m.pool_capacity_cpu_millis.clone(),
        );
        r.register(
            "provider_calls",
            "Calls this node made to each provider (as leader)",
            m.provider_calls.clone(),
        );
        r.register(
            "provider_failures",
            "Failed provider calls, after retries",
            m.provider_failures.clone(),
        );
        r.register(
            "provider_breaker_open",
            "1 while a provider's circuit breaker is open or half-open",
            m.provider_breaker_open.clone(),
        );
        r.register(
            "raft_appends",
            "Log appends acknowledged after their fsync",
            m.raft_appends.clone(),
        );
        r.register(
            "raft_append_wait_seconds",
            "Total time appends waited for their fsync (divide by raft_appends for the mean)",
            m.raft_append_wait_seconds.clone(),
        );
        r.register(
            "raft_wal_syncs",
            "WAL fsyncs (one group commit covers many appends)",
            m.raft_wal_syncs.clone(),
        );
        r.register(
            "raft_snapshots_built",
            "Snapshots this node built",
            m.raft_snapshots_built.clone(),
        );
        r.register(
            "raft_snapshots_installed",
            "Snapshots this node received and installed",
            m.raft_snapshots_installed.clone(),
        );
        r.register(
            "raft_snapshot_lock_seconds",
            "Total time snapshot builds held the state's lock (encoding it; the disk write comes after)",
            m.raft_snapshot_lock_seconds.clone(),
        );
        r.register(
            "retention_pipelines_removed",
            "Finished pipelines the retention policies removed (replicated: every node counts the same)",
            m.retention_pipelines_removed.clone(),
        );
        r.register(
            "retention_output_bytes_removed",
            "Bytes of job output the retention policies removed",
            m.retention_output_bytes_removed.clone(),
        );
        r.register(
            "scheduler_plan_seconds",
            "From scheduling to the plan's commit (as leader)",
            m.scheduler_plan_seconds.clone(),
        );
        r.register(
            "scheduler_placements",
            "Placements accepted by apply",
            m.scheduler_placements.clone(),
        );
        r.register(
            "scheduler_rejected_placements",
            "Placements apply refused (stale plans)",
            m.scheduler_rejected_placements.clone(),
        );
        r.register(
            "leader_report_batch_commands",
            "Worker reports committed per Raft entry (as leader)",
            m.leader_report_batch_commands.clone(),
        );
        r.register(
            "worker_create_seconds",
            "Provider create call latency, by provider",
            m.worker_create_seconds.clone(),
        );
        r.register(
            "job_duration_seconds",
            "Run time of finished attempts (start to finish), by outcome",
            m.job_duration_seconds.clone(),
        );
        r.register(
            "events_published",
            "Events acknowledged by NATS JetStream (published as leader)",
            m.events_published.clone(),
        );
        r.register(
            "events_publish_duplicates",
            "Acks for events JetStream already held (replays after a leader change)",
            m.events_publish_duplicates.clone(),
        );
        r.register(
            "events_publish_errors",
            "Failed NATS connections and publishes",
            m.events_publish_errors.clone(),
        );
        r.register(
            "events_publish_gaps",
            "Times the publisher found events evicted before it published them",
            m.events_publish_gaps.clone(),
        );
        r.register(
            "events_publish_lag",
            "Applied events not yet acknowledged by NATS (on the leader)",
            m.events_publish_lag.clone(),
        );
        r.register(
            "raft_leader_contact_gap_seconds",
            "Time between two AppendEntries from the same leader, as this follower received them",
            m.raft_leader_contact.histogram(),
        );
        m
    }
}

impl NodeMetrics {
    pub fn new() -> Arc<NodeMetrics> {
        Arc::new(NodeMetrics::default())
    }

    /// Reads the state-derived values and encodes every metric.
    pub fn scrape(&self, raft: &Raft, machine: &StateHandle, providers: &ProviderSet) -> String {
        let m = crate::raft::metrics(raft);
        let set = |g: &Gauge, v: Option<u64>| {
            g.set(v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)));
        };
        set(&self.raft_term, Some(m.current_term));
        set(&self.raft_is_leader, Some(u64::from(m.current_leader == Some(m.id))));
        set(&self.raft_last_log_index, m.last_log_index);
        set(&self.raft_committed_index, m.local_committed.map(|l| l.index));
        set(&self.raft_applied_index, m.last_applied.map(|l| l.index));
        set(&self.raft_snapshot_index, m.snapshot.map(|l| l.index));
        match machine.disk().memory() {
            Ok(memory) => {
                for (part, bytes) in [
                    ("memtables", memory.memtables_bytes),
                    ("block_cache", memory.block_cache_bytes),
                    ("table_readers", memory.table_readers_bytes),
                ] {
                    set(
                        &self.storage_memory_bytes.get_or_create(&PartLabel { part }),
                        Some(bytes),
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading RocksDB's memory use"),
        }
        let store = machine.store_stats();
        let follow = |c: &Counter, v: u64| c.inc_by(v.saturating_sub(c.get()));
        follow(&self.raft_appends, store.appends);
        follow(&self.raft_wal_syncs, store.wal_syncs);
        follow(&self.raft_snapshots_built, store.snapshots_built);
        follow(&self.raft_snapshots_installed, store.snapshots_installed);
        let locked = store.snapshot_lock.as_secs_f64() - self.raft_snapshot_lock_seconds.get();
        if locked > 0.0 {
            self.raft_snapshot_lock_seconds.inc_by(locked);
        }
        let waited = store.append_wait.as_secs_f64() - self.raft_append_wait_seconds.get();
        if waited > 0.0 {
            self.raft_append_wait_seconds.inc_by(waited);
        }
        {
            // Counts kept by `apply` (the state's indexes): a scrape reads them, never the jobs.
            let data = machine.read();
            self.jobs.clear();
            self.archived_jobs.set(data.state.archive().jobs() as i64);
            // Live jobs from the index, archived ones from the archive's counts.
            let mut counts = data.state.index().job_counts().clone();
            for (s, n) in data.state.archive().job_counts() {
                *counts.entry(*s).or_default() += n;
            }
            for (s, n) in counts {
                self.jobs
                    .get_or_create(&StateLabel {
                        state: format!("{s:?}").to_uppercase(),
                    })
                    .set(n as i64);
            }
            let totals = data.state.retention().totals();
            follow(&self.retention_pipelines_removed, totals.pipelines_removed);
            follow(&self.retention_output_bytes_removed, totals.output_bytes_removed);
            self.artifact_bytes.clear();
            for (tenant, bytes) in data.state.artifacts().usage() {
                self.artifact_bytes
                    .get_or_create(&TenantLabel {
                        tenant: tenant.to_string(),
                    })
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            self.cache_bytes.clear();
            for (tenant, bytes) in data.state.caches().usage() {
                self.cache_bytes
                    .get_or_create(&TenantLabel {
                        tenant: tenant.to_string(),
                    })
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            self.queue_depth.clear();
            for (p, n) in data.state.pending_queue().depth_by_priority() {
                self.queue_depth
                    .get_or_create(&PriorityLabel {
                        priority: i64::from(*p),
                    })
                    .set(*n as i64);
            }
            for pool in data.state.pools() {
                let l = PoolLabel {
                    pool: pool.spec.name.clone(),
                };
                self.pool_workers.get_or_create(&l).set(i64::from(pool.workers));
                self.pool_allocated_cpu_millis
                    .get_or_create(&l)
                    .set(pool.allocated.cpu_millis as i64);
                self.pool_capacity_cpu_millis
                    .get_or_create(&l)
                    .set(pool.spec.capacity.cpu_millis as i64);
            }
        }
        for (kind, p) in providers.iter() {
            let l = ProviderLabel {
                provider: kind.to_string(),
            };
            // The guard counts; the counters here follow it.
            let (calls, failures) = p.stats();
            follow(&self.provider_calls.get_or_create(&l), calls);
            follow(&self.provider_failures.get_or_create(&l), failures);
            self.provider_breaker_open
                .get_or_create(&l)
                .set(i64::from(p.breaker_state() != BreakerState::Closed));
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
