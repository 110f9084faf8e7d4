//! How long a follower goes between two messages from the same leader: the figure the
//! heartbeat interval and the election timeouts are sized from. A leader sends AppendEntries
//! at least every heartbeat interval; under load each one can wait behind the leader's own
//! work, the network and this node's runtime. If the longest of these gaps comes near the
//! election timeout, followers start to doubt a healthy leader (Pre-Vote then keeps them
//! from deposing it, but a real election follows once a quorum doubts it).
//!
//! Served as the histogram `flotilla_raft_leader_contact_gap_seconds` on `/metrics`.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The gaps, observed on each AppendEntries this node receives.
pub struct LeaderContact {
    last: Mutex<Option<Contact>>,
    gaps_s: Histogram,
}

/// One message: from which leader (its vote) and when it arrived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contact<V = flotilla_raft_store::Vote> {
    pub leader: V,
    pub at: Instant,
}

impl Default for LeaderContact {
    fn default() -> Self {
        LeaderContact {
            last: Mutex::new(None),
            // 5 ms to about 8 s, each bucket 1.5x the one before.
            gaps_s: Histogram::new(exponential_buckets(0.005, 1.5, 19)),
        }
    }
}

impl LeaderContact {
    /// A message from the leader holding `leader` arrived now.
    pub fn heard(&self, leader: flotilla_raft_store::Vote) {
        let now = Contact {
            leader,
            at: Instant::now(),
        };
        let previous = self.last.lock().expect("leader contact").replace(now);
        if let Some(gap) = gap(previous.as_ref(), &now) {
            self.gaps_s.observe(gap.as_secs_f64());
        }
    }

    /// The histogram, for the metrics registry (a clone shares its counts).
    pub fn histogram(&self) -> Histogram {
        self.gaps_s.clone()
    }
}

/// The gap between two messages, counted only when both came from the same leader: the first
/// message of a new leader (or after this node led) says nothing about heartbeats.
pub fn gap<V: PartialEq>(previous: Option<&Contact<V>>, now: &Contact<V>) -> Option<Duration> {
    let previous = previous?;
    (previous.leader == now.leader).then(|| now.at.saturating_duration_since(previous.at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_counted_between_messages_of_one_leader_only() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let first = Contact { leader: 1, at: at(0) };
        let same = Contact { leader: 1, at: at(120) };
        let other = Contact {
            leader: 2,
            at: at(5_000),
        };
        assert_eq!(gap(None, &first), None, "nothing before the first message");
        assert_eq!(gap(Some(&first), &same), Some(Duration::from_millis(120)));
        assert_eq!(gap(Some(&same), &other), None, "a new leader starts a new count");
    }
}
