//! A bound on the bytes per second this node sends to its peers as blob copies
//! (`--blob-copy-mib-per-s`), shared by every copy it sends at once (its pushes and the
//! fetches it serves). A copy is throughput work that nothing waits on at millisecond scale;
//! on a machine whose cores and disk the nodes share, a gigabyte copied at full speed takes
//! them from the commits of every other write for its whole length and shows as their tail
//! latency (`docs/benchmarks.md`). Spread over a few seconds more, the same copy leaves room
//! for them. CockroachDB bounds its snapshot and rebalancing transfers the same way.
//!
//! The pace is kept as a schedule: each chunk reserves the time its bytes take at the rate
//! after the previous reservation and waits for its start, so no window of time carries more
//! than the rate allows plus one chunk. Written here on tokio's clock (a few lines) rather
//! than with a rate-limiting crate on its own clock, so the tests run on paused time.

use futures::{Stream, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub struct CopyThrottle {
    /// `None`: no bound.
    bytes_per_s: Option<u64>,
    /// When the next chunk may start.
    next_start: Mutex<Instant>,
}

impl CopyThrottle {
    /// At most `mib_per_s` MiB a second; 0 for no bound.
    pub fn new(mib_per_s: u64) -> CopyThrottle {
        CopyThrottle {
            bytes_per_s: (mib_per_s > 0).then(|| mib_per_s.saturating_mul(1 << 20)),
            next_start: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` more may be sent.
    pub async fn take(&self, bytes: usize) {
        let Some(rate) = self.bytes_per_s else {
            return;
        };
        let takes = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let start = {
            let mut next = self.next_start.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*next).max(Instant::now());
            *next = start + takes;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// A blob's chunks, each sent no sooner than `throttle` allows.
pub fn paced<E>(
    throttle: Arc<CopyThrottle>,
    chunks: impl Stream<Item = Result<Vec<u8>, E>>,
) -> impl Stream<Item = Result<Vec<u8>, E>> {
    chunks.then(move |chunk| {
        let throttle = throttle.clone();
        async move {
            if let Ok(bytes) = &chunk {
                throttle.take(bytes.len()).await;
            }
            chunk
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn chunks_are_spaced_at_the_rate_and_copies_share_it() {
        let throttle = Arc::new(CopyThrottle::new(2));
        let began = Instant::now();
        // Four chunks of 1 MiB at 2 MiB/s: the first at once, the last 1.5 s later.
        for _ in 0..4 {
            throttle.take(1 << 20).await;
        }
        assert_eq!(began.elapsed(), Duration::from_millis(1500));
        // Two copies at once share the rate: eight more chunks end 4 s after the first four.
        let copy = |t: Arc<CopyThrottle>| async move {
            for _ in 0..4 {
                t.take(1 << 20).await;
            }
        };
        tokio::join!(copy(throttle.clone()), copy(throttle.clone()));
        assert_eq!(began.elapsed(), Duration::from_millis(5500));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_saved_up_for_a_burst() {
        let throttle = CopyThrottle::new(1);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let began = Instant::now();
        for _ in 0..3 {
            throttle.take(1 << 20).await;
        }
        assert_eq!(began.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_stream_keeps_its_chunks_and_their_order() {
        let throttle = Arc::new(CopyThrottle::new(1));
        let began = Instant::now();
        let chunks = futures::stream::iter(vec![Ok(vec![1u8; 1 << 20]), Err("broken"), Ok(vec![2u8; 1 << 19])]);
        let out: Vec<Result<Vec<u8>, &str>> = paced(throttle, chunks).collect().await;
        assert_eq!(out, vec![Ok(vec![1u8; 1 << 20]), Err("broken"), Ok(vec![2u8; 1 << 19])]);
        // The second chunk of bytes waited for the first's second.
        assert_eq!(began.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_bound_never_waits() {
        let throttle = CopyThrottle::new(0);
        let began = Instant::now();
        for _ in 0..100 {
            throttle.take(1 << 30).await;
        }
        assert_eq!(began.elapsed(), Duration::ZERO);
    }
}
