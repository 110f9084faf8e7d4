//! The leader's NATS JetStream publisher: every event the cluster applies, once, in order.
//!
//! Runs on every node and acts only while this node leads. It reads the node's event journal
//! after the replicated mark (`State::events_published_through`), publishes each event to
//! `flotilla.<cluster>.<category>.<id>.<event>` with `Nats-Msg-Id` = the event id, and records
//! its progress in the replicated state about once a second. Publishes are pipelined: a batch
//! of up to `READ_BATCH_EVENTS` is handed to the connection at once and the acks are awaited
//! in order (one event per round trip fell behind the journal under heavy output). Order is
//! kept all the same: every event of a batch after the first carries
//! `Nats-Expected-Last-Msg-Id` = the event before it, so JetStream refuses it unless that one
//! was stored; the next batch starts only after every ack of this one, and after a failure
//! the publisher resumes after the last event acknowledged in order. A new
//! leader resumes after the recorded mark and republishes at most a second's worth of events,
//! which JetStream drops as duplicates of their message ids within the stream's duplicate
//! window. If NATS is down the cluster goes on; the backlog is the bounded journal, and the
//! publisher catches up when NATS returns (if events were evicted meanwhile, the gap is logged and counted).

use crate::leader::Leadership;
use crate::observe::metrics::NodeMetrics;
use crate::raft::proposer::{Proposer, wall_clock_ms};
use async_nats::jetstream::{self, message::PublishMessage, stream};
use flotilla_raft_store::{JournalCursor, JournaledEvent, StateHandle};
use flotilla_state_machine::{Command, EventId, Proposal};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Events read from the journal per step.
const READ_BATCH_EVENTS: usize = 256;

#[derive(Clone, Debug)]
pub struct PublisherConfig {
    pub url: String,
    pub cluster_name: String,
    /// How often progress is recorded in the replicated state while events flow.
    pub record_every_ms: u64,
    /// Time limit for connecting and for each publish ack.
    pub timeout_ms: u64,
    /// JetStream's duplicate window of the stream (created if missing).
    pub duplicate_window_ms: u64,
    /// Wait after a failure before trying NATS again.
    pub retry_ms: u64,
}

impl PublisherConfig {
    pub fn new(url: String, cluster_name: String) -> Self {
        PublisherConfig {
            url,
            cluster_name,
            record_every_ms: 1_000,
            timeout_ms: 5_000,
            duplicate_window_ms: 120_000,
            retry_ms: 1_000,
        }
    }

    /// The stream holding this cluster's events.
    pub fn stream_name(&self) -> String {
        format!("FLOTILLA_{}", self.cluster_name.replace(['.', '-'], "_"))
    }

    /// `flotilla.<cluster>.tenant.<tenant>.<category>.<id>.<event>` for the events of a
    /// tenant's work (`tenant`: its pipeline's or job's), so that NATS permissions can give
    /// each tenant its own subjects; `flotilla.<cluster>.cluster.<category>.<id>.<event>` for
    /// the cluster's, its pools' and the audit trail. Dots in names become `_` so each part
    /// stays one subject token; in a tenant's name `~` (a character names cannot hold), so
    /// no two tenants share a subject. An event about work whose tenant is no longer known
    /// (retention removed its pipeline before it was published) goes to
    /// `flotilla.<cluster>.removed.…`: neither a tenant's subjects nor the cluster's.
    pub fn subject(&self, event: &flotilla_state_machine::Event, tenant: Option<&str>) -> String {
        let subject = event.subject();
        let about_work = event.job().is_some() || event.pipeline().is_some();
        let scope = match tenant {
            Some(t) => format!("tenant.{}", t.replace('.', "~")),
            None if about_work => "removed".to_string(),
            None => "cluster".to_string(),
        };
        format!(
            "flotilla.{}.{scope}.{}.{}.{}",
            subject_token(&self.cluster_name),
            subject.category,
            subject_token(&subject.id),
            event.kind()
        )
    }
}

pub struct Publisher {
    leadership: Leadership,
    machine: StateHandle,
    proposer: Proposer,
    metrics: Arc<NodeMetrics>,
    config: PublisherConfig,
}

impl Publisher {
    pub fn new(
        leadership: Leadership,
        machine: StateHandle,
        proposer: Proposer,
        metrics: Arc<NodeMetrics>,
        config: PublisherConfig,
    ) -> Self {
        Publisher {
            leadership,
            machine,
            proposer,
            metrics,
            config,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut cursor = JournalCursor::at_tail(self.machine.journal().clone());
        let mut session: Option<jetstream::Context> = None;
        // This node's progress while it leads; forgotten when it stops leading.
        let mut published: Option<EventId> = None;
        let mut recorded: Option<EventId> = None;
        let mut last_record = Instant::now();
        let mut leadership = self.leadership.clone();
        loop {
            if *stop.borrow() {
                return;
            }
            let Some(term) = self.leadership.term() else {
                published = None;
                recorded = None;
                self.metrics.events_publish_lag.set(0);
                if leadership.acquired(&mut stop).await.is_none() {
                    return;
                }
                continue;
            };
            let mark = self.machine.read().state.events_published_through();
            cursor.seek(published.max(mark).unwrap_or(EventId::START));
            self.metrics
                .events_publish_lag
                .set(i64::try_from(cursor.journal().count_after(cursor.after())).unwrap_or(i64::MAX));

            if published > recorded
                && (last_record.elapsed() >= Duration::from_millis(self.config.record_every_ms))
                && let Some(through) = published
            {
                let proposal = Proposal::new(wall_clock_ms(), Command::RecordEventsPublished { through });
                match self.proposer.commit_here(proposal).await {
                    Ok(_) => recorded = Some(through),
                    Err(e) => tracing::debug!(error = %e, "recording publish progress failed; retrying"),
                }
                last_record = Instant::now();
            }

            let js = match &session {
                Some(js) => js.clone(),
                None => match self.connect().await {
                    Ok(js) => {
                        tracing::info!(url = %self.config.url, stream = %self.config.stream_name(), "publishing events to NATS");
                        session = Some(js.clone());
                        js
                    }
                    Err(e) => {
                        self.metrics.events_publish_errors.inc();
                        tracing::warn!(error = %e, url = %self.config.url, "NATS unavailable; events wait in the journal");
                        if sleep_or_stop(&mut stop, self.config.retry_ms).await {
                            return;
                        }
                        continue;
                    }
                },
            };

            let after = cursor.after();
            let batch = match cursor.next_batch(READ_BATCH_EVENTS) {
                Ok(batch) => batch,
                Err(gap) => {
                    self.metrics.events_publish_gaps.inc();
                    tracing::error!(after = %after, floor = %gap.floor, "events were evicted before they were published; resuming at the oldest held");
                    published = Some(gap.floor);
                    continue;
                }
            };
            if batch.is_empty() {
                let wait = Duration::from_millis(self.config.record_every_ms);
                tokio::select! {
                    _ = cursor.appended() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                continue;
            }
            let mut sent = Vec::with_capacity(batch.len());
            let mut failure = None;
            for (i, item) in batch.iter().enumerate() {
                if !self.leadership.holds(term) {
                    break;
                }
                let previous = i.checked_sub(1).map(|p| batch[p].id);
                match self.send(&js, item, previous).await {
                    Ok(ack) => sent.push((item.id, ack)),
                    Err(e) => {
                        failure = Some((item.id, e));
                        break;
                    }
                }
            }
            for (id, ack) in sent {
                match ack.await {
                    Ok(ack) => {
                        published = Some(id);
                        self.metrics.events_published.inc();
                        if ack.duplicate {
                            self.metrics.events_publish_duplicates.inc();
                        }
                    }
                    Err(e) => {
                        failure = failure.or(Some((id, e.into())));
                        break;
                    }
                }
            }
            if let Some((event, e)) = failure {
                self.metrics.events_publish_errors.inc();
                tracing::warn!(error = %e, event = %event, "publishing to NATS failed; reconnecting");
                session = None;
                if sleep_or_stop(&mut stop, self.config.retry_ms).await {
                    return;
                }
            }
        }
    }

    async fn connect(&self) -> anyhow::Result<jetstream::Context> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let client = tokio::time::timeout(
            timeout,
            async_nats::ConnectOptions::new()
                .connection_timeout(timeout)
                .name("flotilla-node")
                .connect(self.config.url.as_str()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {} timed out", self.config.url))??;
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let cluster = subject_token(&self.config.cluster_name);
        js.get_or_create_stream(stream::Config {
            name: self.config.stream_name(),
            subjects: vec![format!("flotilla.{cluster}.>")],
            duplicate_window: Duration::from_millis(self.config.duplicate_window_ms),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating stream {}: {e}", self.config.stream_name()))?;
        Ok(js)
    }

    /// Hands one event to the connection and returns the future of its ack. `previous` is the
    /// event that must already be in the stream for JetStream to store this one.
    async fn send(
        &self,
        js: &jetstream::Context,
        item: &JournaledEvent,
        previous: Option<EventId>,
    ) -> anyhow::Result<jetstream::context::PublishAckFuture> {
        let body = crate::api::StreamedEvent {
            id: item.id.to_string(),
            term: item.term,
            event: &item.event,
        };
        let payload = serde_json::to_vec(&body)?;
        let mut message = PublishMessage::build()
            .message_id(item.id.to_string())
            .payload(payload.into());
        if let Some(previous) = previous {
            message = message.expected_last_message_id(previous.to_string());
        }
        let subject = {
            let data = self.machine.read();
            let tenant = crate::api::records::event_tenant(&data.state, self.machine.disk(), &item.event);
            self.config.subject(&item.event, tenant.as_deref())
        };
        Ok(js.send_publish(subject, message).await?)
    }
}

/// `text` as one NATS subject token: the separators and wildcards become `_`.
fn subject_token(text: &str) -> String {
    text.replace(['.', ' ', '*', '>'], "_")
}

/// Sleeps `ms`; `true` if the node is stopping.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, ms: u64) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_state_machine::{Event, JobId};

    #[test]
    fn subjects_keep_one_token_per_part() {
        let config = PublisherConfig::new("nats://127.0.0.1:4222".into(), "ci.east".into());
        assert_eq!(config.stream_name(), "FLOTILLA_ci_east");
        let started = Event::JobStarted {
            job: JobId(7),
            attempt: 1,
        };
        assert_eq!(
            config.subject(&started, Some("web")),
            "flotilla.ci_east.tenant.web.job.j7.JobStarted"
        );
        // Two tenants whose names differ by a dot and an underscore keep apart.
        assert_ne!(
            config.subject(&started, Some("a.b")),
            config.subject(&started, Some("a_b"))
        );
        assert_eq!(
            config.subject(&started, None),
            "flotilla.ci_east.removed.job.j7.JobStarted",
            "a job whose tenant is gone is published to no tenant's subjects nor the cluster's"
        );
        let pool = Event::PoolRegistered { pool: "gpu.big".into() };
        assert_eq!(
            config.subject(&pool, None),
            "flotilla.ci_east.cluster.capacity.gpu_big.PoolRegistered"
        );
    }
}
