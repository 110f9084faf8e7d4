//! Samples the peers' clocks once a second for `cluster_clock.rs`: `GET /v1/cluster` on each
//! voter's API answers its `now_ms`, measured against the middle of the round trip.

use super::cluster_clock::{ClusterClock, MAX_SAMPLE_RTT_MS, SAMPLE_INTERVAL_MS, Sample, WARN_OFFSET_MS};
use crate::Raft;
use crate::raft::proposer::wall_clock_ms;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Least time between two warnings about this node's own clock.
const WARN_INTERVAL_MS: u64 = 60_000;

/// Samples every voter but `me`, then publishes the correction, until `stop` turns true.
pub async fn run(
    me: u64,
    raft: Raft,
    clock: Arc<ClusterClock>,
    api: crate::tls::ApiTransport,
    mut stop: watch::Receiver<bool>,
) {
    #[derive(Deserialize)]
    struct View {
        now_ms: u64,
    }
    let http = api.client(MAX_SAMPLE_RTT_MS);
    let mut warned_at_ms = 0u64;
    loop {
        let metrics = crate::raft::metrics(&raft);
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        let peers: Vec<(u64, String)> = membership
            .nodes()
            .filter(|(id, _)| **id != me && voters.contains(id))
            .map(|(id, node)| (*id, api.url(&node.api_addr, "/v1/cluster")))
            .collect();
        clock.retain(&members);
        let asks = peers.iter().map(|(id, url)| {
            let http = &http;
            async move {
                let sent_ms = wall_clock_ms();
                let answer = http.get(url).send().await.ok()?.json::<View>().await.ok()?;
                Some((*id, Sample::measure(sent_ms, answer.now_ms, wall_clock_ms())?))
            }
        });
        for (id, sample) in futures::future::join_all(asks).await.into_iter().flatten() {
            clock.record(id, sample);
        }
        let now_ms = wall_clock_ms();
        if let Some(offset_ms) = clock.update(me, &voters, now_ms)
            && offset_ms.abs() > WARN_OFFSET_MS
            && now_ms.saturating_sub(warned_at_ms) >= WARN_INTERVAL_MS
        {
            warned_at_ms = now_ms;
            tracing::warn!(
                offset_ms,
                "this node's clock is off the voters' median by more than {WARN_OFFSET_MS} ms; the times it stamps are corrected by the median"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(SAMPLE_INTERVAL_MS)) => {}
            _ = stop.changed() => return,
        }
    }
}
