//! Follows this node's event journal to record what is known only when an entry is applied:
//! attempt run times (metric, on every node, so a new leader loses none) and the spans of a
//! traced pipeline that belong to apply (`raft.apply` on every node, `job.run` on the leader).

use crate::Raft;
use crate::observe::metrics::{NodeMetrics, OutcomeLabel};
use crate::observe::telemetry;
use flotilla_raft_store::{JournalCursor, JournaledEvent, StateHandle};
use flotilla_state_machine::{Event, State};
use opentelemetry::KeyValue;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// Events read per step.
const READ_BATCH_EVENTS: usize = 1024;

pub struct AppliedObserver {
    pub raft: Raft,
    pub machine: StateHandle,
    pub metrics: Arc<NodeMetrics>,
}

impl AppliedObserver {
    /// Runs until `stop` turns true, from the events applied after it starts.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut cursor = JournalCursor::at_tail(self.machine.journal().clone());
        loop {
            match cursor.next_batch(READ_BATCH_EVENTS) {
                // Evicted or replaced by a snapshot before it was read: go on from what is held.
                Err(gap) => cursor.seek(gap.floor),
                Ok(batch) if !batch.is_empty() => {
                    let leader = self.raft.is_leader();
                    let data = self.machine.read();
                    for item in &batch {
                        self.observe(item, &data.state, self.machine.disk(), leader);
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        more = cursor.appended() => if !more { return },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    fn observe(&self, item: &JournaledEvent, state: &State, disk: &flotilla_raft_store::DiskStore, leader: bool) {
        let node = KeyValue::new("flotilla.node", *self.raft.node_id() as i64);
        match &item.event {
            Event::PipelineRequested { pipeline, .. } => {
                let trace = state.pipeline(*pipeline).and_then(|p| p.trace_parent.as_deref());
                let now = SystemTime::now();
                let attributes = vec![
                    node,
                    KeyValue::new("raft.log_index", item.id.log_index as i64),
                    KeyValue::new("flotilla.pipeline", pipeline.to_string()),
                ];
                telemetry::record("raft.apply", trace, now, now, attributes);
            }
            Event::JobCompleted { job, attempt }
            | Event::JobFailed { job, attempt, .. }
            | Event::JobCancelled { job, attempt } => {
                let outcome = match item.event {
                    Event::JobCompleted { .. } => "succeeded",
                    Event::JobFailed { .. } => "failed",
                    _ => "cancelled",
                };
                // The last job of a pipeline is archived in the entry that finishes it.
                let Ok(Some(j)) = crate::api::records::job(state, disk, *job) else {
                    return;
                };
                let trace_parent = match state.trace_parent_of_job(*job) {
                    Some(t) => Some(t.to_string()),
                    None => disk.pipeline(j.pipeline).ok().flatten().and_then(|p| p.trace_parent),
                };
                let record = j.attempts.iter().find(|a| a.attempt == *attempt);
                let Some((started, finished)) = record.and_then(|r| r.started_at_ms.zip(r.finished_at_ms)) else {
                    return;
                };
                let seconds = finished.saturating_sub(started) as f64 / 1000.0;
                self.metrics
                    .job_duration_seconds
                    .get_or_create(&OutcomeLabel {
                        outcome: outcome.into(),
                    })
                    .observe(seconds);
                if leader {
                    let attributes = vec![
                        node,
                        KeyValue::new("flotilla.job", job.to_string()),
                        KeyValue::new("flotilla.attempt", i64::from(*attempt)),
                        KeyValue::new("flotilla.outcome", outcome),
                    ];
                    telemetry::record(
                        "job.run",
                        trace_parent.as_deref(),
                        telemetry::at_ms(started),
                        telemetry::at_ms(finished),
                        attributes,
                    );
                }
            }
            _ => {}
        }
    }
}
