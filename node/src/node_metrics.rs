//! `GET /metrics`: the node's Prometheus metrics (OpenMetrics text, which Prometheus reads).
//!
//! Hot-path counters (API requests, provider calls) are atomics updated where they happen.
//! Everything derivable from state (Raft indexes, jobs by state, queue depth, pool usage,
//! breaker states) is read at scrape time, so it cannot drift from what the node holds.

use crate::Raft;
use flotilla_providers::{BreakerState, ProviderSet};
use flotilla_raft_store::StateHandle;
use flotilla_state_machine::JobState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
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
struct PoolLabel {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabel {
    provider: String,
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
    queue_depth: Family<PriorityLabel, Gauge>,
    pool_workers: Family<PoolLabel, Gauge>,
    pool_allocated_cpu_millis: Family<PoolLabel, Gauge>,
    pool_capacity_cpu_millis: Family<PoolLabel, Gauge>,
    provider_calls: Family<ProviderLabel, Counter>,
    provider_failures: Family<ProviderLabel, Counter>,
    provider_breaker_open: Family<ProviderLabel, Gauge>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("flotilla");
        let api_requests = Family::<RequestLabels, Counter>::default();
        let api_latency_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        registry.register("api_requests", "REST requests answered, by route, method and status", api_requests.clone());
        registry.register("api_request_duration_seconds", "REST request latency until the response head", api_latency_seconds.clone());
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
            queue_depth: Family::default(),
            pool_workers: Family::default(),
            pool_allocated_cpu_millis: Family::default(),
            pool_capacity_cpu_millis: Family::default(),
            provider_calls: Family::default(),
            provider_failures: Family::default(),
            provider_breaker_open: Family::default(),
            registry,
        };
        let r = &mut m.registry;
        r.register("raft_term", "Current Raft term", m.raft_term.clone());
        r.register("raft_is_leader", "1 on the leader", m.raft_is_leader.clone());
        r.register("raft_last_log_index", "Last index in this node's log", m.raft_last_log_index.clone());
        r.register("raft_committed_index", "Highest index this node knows committed", m.raft_committed_index.clone());
        r.register("raft_applied_index", "Highest index applied to this node's state", m.raft_applied_index.clone());
        r.register("raft_snapshot_index", "Index of the newest snapshot", m.raft_snapshot_index.clone());
        r.register("jobs", "Jobs by state in this node's applied state", m.jobs.clone());
        r.register("scheduler_queue_depth", "PENDING jobs by priority", m.queue_depth.clone());
        r.register("pool_workers", "Live workers per pool", m.pool_workers.clone());
        r.register("pool_allocated_cpu_millis", "CPU reserved per pool", m.pool_allocated_cpu_millis.clone());
        r.register("pool_capacity_cpu_millis", "CPU capacity per pool", m.pool_capacity_cpu_millis.clone());
        r.register("provider_calls", "Calls this node made to each provider (as leader)", m.provider_calls.clone());
        r.register("provider_failures", "Failed provider calls, after retries", m.provider_failures.clone());
        r.register("provider_breaker_open", "1 while a provider's circuit breaker is open or half-open", m.provider_breaker_open.clone());
        m
    }
}

impl NodeMetrics {
    pub fn new() -> Arc<NodeMetrics> {
        Arc::new(NodeMetrics::default())
    }

    /// Reads the state-derived values and encodes every metric.
    pub fn scrape(&self, raft: &Raft, state: &StateHandle, providers: &ProviderSet) -> String {
        let m = crate::metrics(raft);
        let set = |g: &Gauge, v: Option<u64>| {
            g.set(v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)));
        };
        set(&self.raft_term, Some(m.current_term));
        set(&self.raft_is_leader, Some(u64::from(m.current_leader == Some(m.id))));
        set(&self.raft_last_log_index, m.last_log_index);
        set(&self.raft_committed_index, m.local_committed.map(|l| l.index));
        set(&self.raft_applied_index, m.last_applied.map(|l| l.index));
        set(&self.raft_snapshot_index, m.snapshot.map(|l| l.index));
        {
            let data = state.read();
            let mut by_state: BTreeMap<JobState, i64> = BTreeMap::new();
            let mut by_priority: BTreeMap<i64, i64> = BTreeMap::new();
            for j in data.state.jobs() {
                *by_state.entry(j.state).or_default() += 1;
                if j.state == JobState::Pending {
                    *by_priority.entry(i64::from(j.spec.priority)).or_default() += 1;
                }
            }
            self.jobs.clear();
            for (s, n) in by_state {
                self.jobs.get_or_create(&StateLabel { state: format!("{s:?}").to_uppercase() }).set(n);
            }
            self.queue_depth.clear();
            for (p, n) in by_priority {
                self.queue_depth.get_or_create(&PriorityLabel { priority: p }).set(n);
            }
            for pool in data.state.pools() {
                let l = PoolLabel { pool: pool.spec.name.clone() };
                self.pool_workers.get_or_create(&l).set(i64::from(pool.workers));
                self.pool_allocated_cpu_millis.get_or_create(&l).set(pool.allocated.cpu_millis as i64);
                self.pool_capacity_cpu_millis.get_or_create(&l).set(pool.spec.capacity.cpu_millis as i64);
            }
        }
        for (kind, p) in providers.iter() {
            let l = ProviderLabel { provider: kind.to_string() };
            // The guard counts; the counters here follow it.
            let (calls, failures) = p.stats();
            let c = self.provider_calls.get_or_create(&l);
            c.inc_by(calls.saturating_sub(c.get()));
            let f = self.provider_failures.get_or_create(&l);
            f.inc_by(failures.saturating_sub(f.get()));
            self.provider_breaker_open.get_or_create(&l).set(i64::from(p.breaker_state() != BreakerState::Closed));
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
