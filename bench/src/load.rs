//! The load generator behind `flotilla bench`: open loop (arrivals at a fixed rate, latency
//! measured from each arrival's intended time, so a stalled server cannot hide its queue) or
//! closed loop (each client sends its next request when the previous one returns).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How hard and how long to push.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub clients: usize,
    /// Arrivals per second across all clients; `0` runs closed loop.
    pub rate_per_s: u64,
    pub duration: Duration,
    /// Operations that start in the first `warmup` are not counted.
    pub warmup: Duration,
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadResult {
    pub mode: &'static str,
    pub clients: usize,
    pub rate_per_s: u64,
    pub measured_s: f64,
    pub ok: u64,
    pub errors: u64,
    /// Open loop only: arrivals dropped because every client was busy (the generator could not
    /// keep the rate; the figure is then a lower bound of the latency under that rate).
    pub dropped: u64,
    pub throughput_per_s: f64,
    pub latency_ms: Percentiles,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

struct Tally {
    latency_us: Histogram<u64>,
    ok: u64,
    errors: u64,
    error_samples: Vec<String>,
}

impl Tally {
    fn record(&mut self, latency: Duration, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                let _ = self
                    .latency_us
                    .record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1));
            }
            Err(e) => {
                self.errors += 1;
                if self.error_samples.len() < 5 {
                    self.error_samples.push(e);
                }
            }
        }
    }
}

/// Runs `op(sequence)` under `config` and measures it.
pub async fn run<F, Fut>(config: &LoadConfig, op: F) -> LoadResult
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let histogram = Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
    let tally = Arc::new(Mutex::new(Tally {
        latency_us: histogram,
        ok: 0,
        errors: 0,
        error_samples: Vec::new(),
    }));
    let op = Arc::new(op);
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let end = measure_from + config.duration;
    let clients = config.clients.max(1);
    let mut dropped = 0;
    if config.rate_per_s == 0 {
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                let (op, tally) = (op.clone(), tally.clone());
                tokio::spawn(async move {
                    let mut seq = client as u64;
                    while Instant::now() < end {
                        let began = Instant::now();
                        let outcome = op(seq).await;
                        if began >= measure_from {
                            tally.lock().expect("tally").record(began.elapsed(), outcome);
                        }
                        seq += clients as u64;
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
    } else {
        // Bounded: a few arrivals per client may wait; beyond that they are dropped and counted.
        let (tx, rx) = tokio::sync::mpsc::channel::<(u64, Instant)>(clients * 4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (op, tally, rx) = (op.clone(), tally.clone(), rx.clone());
                tokio::spawn(async move {
                    loop {
                        let next = rx.lock().await.recv().await;
                        let Some((seq, intended)) = next else { return };
                        let outcome = op(seq).await;
                        if intended >= measure_from {
                            tally.lock().expect("tally").record(intended.elapsed(), outcome);
                        }
                    }
                })
            })
            .collect();
        let interval = Duration::from_secs_f64(1.0 / config.rate_per_s as f64);
        let mut seq = 0u64;
        loop {
            let intended = start + interval.mul_f64(seq as f64);
            if intended >= end {
                break;
            }
            tokio::time::sleep_until(intended.into()).await;
            if tx.try_send((seq, intended)).is_err() && intended >= measure_from {
                dropped += 1;
            }
            seq += 1;
        }
        drop(tx);
        for w in workers {
            let _ = w.await;
        }
    }
    let measured_s = Instant::now()
        .min(end)
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(f64::MIN_POSITIVE);
    let t = tally.lock().expect("tally");
    let ms = |us: u64| us as f64 / 1000.0;
    let h = &t.latency_us;
    let latency_ms = if h.is_empty() {
        Percentiles::default()
    } else {
        Percentiles {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    };
    LoadResult {
        mode: if config.rate_per_s == 0 { "closed" } else { "open" },
        clients,
        rate_per_s: config.rate_per_s,
        measured_s,
        ok: t.ok,
        errors: t.errors,
        dropped,
        throughput_per_s: t.ok as f64 / measured_s,
        latency_ms,
        error_samples: t.error_samples.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_loop_counts_from_the_intended_time_and_reports_errors() {
        let config = LoadConfig {
            clients: 2,
            rate_per_s: 200,
            duration: Duration::from_millis(500),
            warmup: Duration::from_millis(100),
        };
        let result = run(&config, |seq| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if seq % 10 == 0 {
                Err(format!("op {seq} refused"))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(result.mode, "open");
        assert!(result.ok > 50 && result.errors > 5, "{result:?}");
        assert!(
            result.latency_ms.p50 >= 5.0,
            "latency includes the operation: {result:?}"
        );
        assert!(result.error_samples[0].contains("refused"));
    }

    #[tokio::test]
    async fn closed_loop_runs_every_client_back_to_back() {
        let config = LoadConfig {
            clients: 3,
            rate_per_s: 0,
            duration: Duration::from_millis(300),
            warmup: Duration::ZERO,
        };
        let result = run(&config, |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        })
        .await;
        assert_eq!(result.mode, "closed");
        assert_eq!(result.errors, 0);
        assert!(result.ok >= 30, "3 clients x ~30 ops: {result:?}");
        assert!(result.latency_ms.max >= 10.0);
    }
}
