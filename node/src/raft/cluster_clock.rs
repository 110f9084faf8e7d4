//! The time the leader stamps on entries: the median of the voters' clocks, not its own.
//!
//! Every entry's `now_ms` comes from the leader (`Proposer::commit_here`), and the state's clock
//! is the largest time ever applied. A leader whose clock ran ahead by Δ would move the
//! cluster's clock ahead by Δ for good (every backoff and timeout shifted, idempotency keys
//! expired early). So every node samples its peers' clocks once a second (`GET /v1/cluster`
//! answers `now_ms`; the offset is measured against the middle of the round trip), and the
//! time it stamps is its own clock corrected by the **median offset of the voters** with a
//! fresh sample, itself counted at offset 0. With a majority of voters sampled, one node's
//! clock (or a minority's) cannot move the stamped time: it is within the median voter's clock
//! plus half a round trip plus the drift since the sample (at most `MAX_SAMPLE_AGE_MS` old).
//! Of two middle values the earlier is taken, so an even split never moves time forward.
//! Without a majority of fresh samples (a leader just elected in a cluster that just started, or
//! one cut off from its peers, which commits nothing anyway) the leader stamps nothing: its
//! writes are refused as "no leader yet" and retried, for at most a sampling round.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A peer's sample older than this does not count.
pub const MAX_SAMPLE_AGE_MS: u64 = 10_000;
/// Pause between two rounds of sampling the peers' clocks.
pub const SAMPLE_INTERVAL_MS: u64 = 1_000;
/// Longest round trip a sample may take; a slower answer says too little about the offset.
pub const MAX_SAMPLE_RTT_MS: u64 = 1_000;
/// A node whose own clock is this far from the voters' median says so (once a minute).
pub const WARN_OFFSET_MS: i64 = 500;

/// One measurement of a peer's clock against this node's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The peer's clock minus this node's, at the middle of the round trip.
    pub offset_ms: i64,
    pub rtt_ms: u64,
    /// This node's clock when the answer arrived.
    pub at_ms: u64,
}

impl Sample {
    /// The sample of a peer that answered `peer_now_ms` to a request sent at `sent_ms` and
    /// answered at `received_ms` (this node's clock); `None` for a round trip too slow to say
    /// much (or a clock that went back meanwhile).
    pub fn measure(sent_ms: u64, peer_now_ms: u64, received_ms: u64) -> Option<Sample> {
        let rtt_ms = received_ms.checked_sub(sent_ms)?;
        if rtt_ms > MAX_SAMPLE_RTT_MS {
            return None;
        }
        let middle = sent_ms + rtt_ms / 2;
        let offset_ms = i64::try_from(i128::from(peer_now_ms) - i128::from(middle)).ok()?;
        Some(Sample {
            offset_ms,
            rtt_ms,
            at_ms: received_ms,
        })
    }
}

/// The offset to apply to this node's clock (node `me`) to get the median of the `voters'`
/// clocks, from the fresh samples among `samples`; `None` without a majority of the voters.
pub fn quorum_offset_ms(me: u64, voters: &BTreeSet<u64>, samples: &BTreeMap<u64, Sample>, now_ms: u64) -> Option<i64> {
    let mut offsets: Vec<i64> = voters
        .iter()
        .filter_map(|v| {
            if *v == me {
                return Some(0);
            }
            samples
                .get(v)
                .filter(|s| now_ms.saturating_sub(s.at_ms) <= MAX_SAMPLE_AGE_MS)
                .map(|s| s.offset_ms)
        })
        .collect();
    if offsets.len() * 2 <= voters.len() {
        return None;
    }
    offsets.sort_unstable();
    // The lower median: of two middle values, the earlier clock.
    Some(offsets[(offsets.len() - 1) / 2])
}

/// `wall_ms` corrected by `offset_ms`, within the range of `u64`.
pub fn corrected_ms(wall_ms: u64, offset_ms: i64) -> u64 {
    u64::try_from((i128::from(wall_ms) + i128::from(offset_ms)).max(0)).unwrap_or(u64::MAX)
}

/// The samples this node took of its peers, and the correction they give, read on every
/// stamp without a lock.
#[derive(Debug, Default)]
pub struct ClusterClock {
    samples: Mutex<BTreeMap<u64, Sample>>,
    offset_ms: AtomicI64,
    /// When the correction was computed (this node's clock); 0: never.
    offset_at_ms: AtomicU64,
}

impl ClusterClock {
    pub fn record(&self, peer: u64, sample: Sample) {
        self.lock().insert(peer, sample);
    }

    /// Forgets peers that are no longer members.
    pub fn retain(&self, members: &BTreeSet<u64>) {
        self.lock().retain(|id, _| members.contains(id));
    }

    /// Computes the correction from the samples (node `me` among `voters`, at `now_ms`) and
    /// publishes it; returns it (`None`: no majority sampled, the own clock is used).
    pub fn update(&self, me: u64, voters: &BTreeSet<u64>, now_ms: u64) -> Option<i64> {
        let offset = quorum_offset_ms(me, voters, &self.lock(), now_ms);
        match offset {
            Some(o) => {
                self.offset_ms.store(o, Ordering::Relaxed);
                self.offset_at_ms.store(now_ms.max(1), Ordering::Relaxed);
            }
            None => self.offset_at_ms.store(0, Ordering::Relaxed),
        }
        offset
    }

    /// The time to stamp: `wall_ms` corrected by the published offset while it is fresh;
    /// `None` when there is no fresh correction.
    pub fn corrected(&self, wall_ms: u64) -> Option<u64> {
        let at = self.offset_at_ms.load(Ordering::Relaxed);
        if at == 0 || wall_ms.saturating_sub(at) > MAX_SAMPLE_AGE_MS {
            return None;
        }
        Some(corrected_ms(wall_ms, self.offset_ms.load(Ordering::Relaxed)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Sample>> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn sample(offset_ms: i64, at_ms: u64) -> Sample {
        Sample {
            offset_ms,
            rtt_ms: 2,
            at_ms,
        }
    }

    #[test]
    fn a_leader_an_hour_ahead_stamps_the_others_time() {
        let voters = BTreeSet::from([1, 2, 3]);
        let samples = BTreeMap::from([(2, sample(-HOUR_MS, 100)), (3, sample(-HOUR_MS + 4, 100))]);
        assert_eq!(quorum_offset_ms(1, &voters, &samples, 200), Some(-HOUR_MS + 4));
        // One of three peers skewed changes nothing: the median is a sound clock.
        let samples = BTreeMap::from([(2, sample(HOUR_MS, 100)), (3, sample(3, 100))]);
        assert_eq!(quorum_offset_ms(1, &voters, &samples, 200), Some(3));
    }

    #[test]
    fn an_even_split_takes_the_earlier_clock() {
        let voters = BTreeSet::from([1, 2, 3]);
        // Node 3 unsampled: two clocks, an hour apart; time does not move forward.
        let samples = BTreeMap::from([(2, sample(HOUR_MS, 100))]);
        assert_eq!(quorum_offset_ms(1, &voters, &samples, 200), Some(0));
        let samples = BTreeMap::from([(2, sample(-HOUR_MS, 100))]);
        assert_eq!(quorum_offset_ms(1, &voters, &samples, 200), Some(-HOUR_MS));
    }

    #[test]
    fn without_a_majority_of_fresh_samples_there_is_no_correction() {
        let voters = BTreeSet::from([1, 2, 3, 4, 5]);
        let samples = BTreeMap::from([(2, sample(-HOUR_MS, 100)), (3, sample(-HOUR_MS, 100))]);
        assert_eq!(quorum_offset_ms(1, &voters, &samples, 200), Some(-HOUR_MS));
        // The same samples, too old.
        assert_eq!(
            quorum_offset_ms(1, &voters, &samples, 100 + MAX_SAMPLE_AGE_MS + 1),
            None
        );
        // Fewer than a majority.
        let samples = BTreeMap::from([(2, sample(-HOUR_MS, 100))]);
        assert_eq!(quorum_offset_ms(1, &voters, &samples, 200), None);
        // A non-voter's sample does not count.
        let samples = BTreeMap::from([(9, sample(-HOUR_MS, 100)), (8, sample(-HOUR_MS, 100))]);
        assert_eq!(quorum_offset_ms(1, &voters, &samples, 200), None);
    }

    #[test]
    fn a_sample_is_measured_at_the_middle_of_its_round_trip() {
        assert_eq!(
            Sample::measure(1_000, 5_010, 1_020),
            Some(Sample {
                offset_ms: 4_000,
                rtt_ms: 20,
                at_ms: 1_020
            })
        );
        assert_eq!(Sample::measure(1_000, 5_000, 1_000 + MAX_SAMPLE_RTT_MS + 1), None);
        assert_eq!(Sample::measure(1_000, 5_000, 999), None);
        assert_eq!(corrected_ms(10, -20), 0);
        assert_eq!(corrected_ms(u64::MAX - 1, 5), u64::MAX);
        assert_eq!(corrected_ms(1_000, -HOUR_MS), 0);
    }

    #[test]
    fn the_published_correction_applies_while_fresh() {
        let clock = ClusterClock::default();
        let voters = BTreeSet::from([1, 2, 3]);
        let now = 10 * HOUR_MS as u64;
        assert_eq!(clock.corrected(now), None, "nothing sampled: nothing to stamp");
        clock.record(2, sample(-HOUR_MS, now));
        clock.record(3, sample(-HOUR_MS, now));
        assert_eq!(clock.update(1, &voters, now), Some(-HOUR_MS));
        assert_eq!(clock.corrected(now + 5), Some(now + 5 - HOUR_MS as u64));
        // Not refreshed for too long: no correction.
        assert_eq!(clock.corrected(now + MAX_SAMPLE_AGE_MS + 1), None);
        clock.retain(&BTreeSet::from([1]));
        assert_eq!(clock.update(1, &voters, now), None);
        assert_eq!(clock.corrected(now), None);
        // A cluster of one needs no sample.
        assert_eq!(clock.update(1, &BTreeSet::from([1]), now), Some(0));
        assert_eq!(clock.corrected(now), Some(now));
    }
}
