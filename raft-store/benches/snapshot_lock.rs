//! What a snapshot build costs the applies and reads that run meanwhile.
//!
//! A state of `--jobs` finished jobs sits behind a `std::sync::RwLock`, as the state machine
//! store keeps it. One thread applies a small entry every millisecond (taking the write
//! lock), another reads a job every millisecond (taking the read lock), and a snapshot is
//! built in the middle of the run with each of three lock patterns:
//!
//! - `whole build`: the read lock held while the state is encoded, written and fsynced (how
//!   snapshots were built before `encode_state`);
//! - `encode only`: the read lock held while the state is encoded in memory, the write and
//!   fsync after it is released (how they were built before the state's maps were persistent);
//! - `clone only`: the read lock held while the state is cloned (its persistent maps share
//!   every node, so this takes microseconds), the encoding, write and fsync after it is
//!   released (how `StateMachineStore` builds them now).
//!
//! Each pattern's p99 of apply and read latency while the snapshot is built is reported next
//! to the p99 of the same run's quiet phase before it.
//!
//! The jobs are finished (cancelled), so their pipelines are archived and the state keeps a
//! compact record of each, as a node does; with `--live` they stay PENDING, held whole in
//! memory (what every finished job cost before archiving, and what live jobs cost now).
//!
//! `cargo bench -p flotilla-raft-store --bench snapshot_lock -- --jobs 1000000 [--live]`;
//! under `cargo test` it runs once on 20,000 jobs as a smoke test.

use flotilla_raft_store::{SnapshotHeader, encode_state, write_snapshot};
use flotilla_state_machine::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

const JOBS_PER_PIPELINE: u64 = 1_000;
const QUIET_MS: u64 = 1_000;

fn apply(state: &mut State, index: &mut u64, command: Command) -> Response {
    *index += 1;
    state
        .apply(
            ApplyContext {
                log_index: *index,
                term: 1,
            },
            &Proposal::new(1_000 + *index, command),
        )
        .0
}

/// A state holding `jobs` jobs in pipelines of 1,000: finished (cancelled, so archived), or
/// pending if `live`.
fn large_state(jobs: u64, live: bool) -> (State, u64) {
    let mut state = State::default();
    let mut index = 0;
    let pool = PoolSpec {
        name: "main".into(),
        provider: ProviderKind::Process,
        capacity: Resources::new(1_000, 1_024, 0),
        max_workers: 1,
        labels: Default::default(),
        settings: Default::default(),
    };
    apply(&mut state, &mut index, Command::RegisterPool { spec: pool });
    for p in 0..jobs.div_ceil(JOBS_PER_PIPELINE) {
        let spec = PipelineSpec {
            name: format!("p{p}"),
            jobs: (0..JOBS_PER_PIPELINE)
                .map(|j| JobSpec::simple(&format!("j{j}"), "true", Resources::new(100, 64, 0)))
                .collect(),
        };
        let submitted = apply(
            &mut state,
            &mut index,
            Command::SubmitPipeline {
                tenant: "bench".into(),
                idempotency_key: None,
                spec,
                source: None,
                rerun_of: None,
            },
        );
        let Response::Submitted { pipeline, .. } = submitted else {
            panic!("submission refused: {submitted:?}");
        };
        if !live {
            apply(&mut state, &mut index, Command::CancelPipeline { pipeline });
        }
    }
    (state, index)
}

/// The p99 and the longest of `samples`.
fn p99_max(samples: &mut [Duration]) -> (Duration, Duration) {
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    samples.sort();
    (
        samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
        samples[samples.len() - 1],
    )
}

/// p99s of the quiet phase and of the snapshot's, and the longest wait during the snapshot
/// (one blocked call is under 1% of the samples when the lock is released early, so the p99
/// alone would hide it).
struct Phase {
    lock_held: Duration,
    apply_quiet: Duration,
    apply_during: (Duration, Duration),
    read_quiet: Duration,
    read_during: (Duration, Duration),
}

/// Runs the two load threads, builds one snapshot after a quiet second with the lock held
/// for the whole build or for the encoding only, and returns the p99s.
/// What the snapshot build holds the state's read lock for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockPattern {
    WholeBuild,
    EncodeOnly,
    CloneOnly,
}

impl LockPattern {
    fn label(self) -> &'static str {
        match self {
            LockPattern::WholeBuild => "whole build (before)",
            LockPattern::EncodeOnly => "encode only (before)",
            LockPattern::CloneOnly => "clone only (now)",
        }
    }
}

fn run(state: Arc<RwLock<State>>, mut index: u64, pattern: LockPattern, dir: &std::path::Path) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = |mut f: Box<dyn FnMut() + Send>| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            // Bounded: at most 60 s of samples.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let t = Instant::now();
                f();
                out.push((t, t.elapsed()));
                std::thread::sleep(Duration::from_millis(1));
            }
            out
        })
    };
    let writer_state = state.clone();
    let applier = samples(Box::new(move || {
        let mut s = writer_state.write().unwrap();
        index += 1;
        let through = EventId::new(index, 0);
        s.apply(
            ApplyContext {
                log_index: index,
                term: 1,
            },
            &Proposal::new(u64::MAX / 2, Command::RecordEventsPublished { through }),
        );
    }));
    let reader_state = state.clone();
    let reader = samples(Box::new(move || {
        let s = reader_state.read().unwrap();
        std::hint::black_box(s.job(JobId(7)));
    }));
    std::thread::sleep(Duration::from_millis(QUIET_MS));
    let path = dir.join(format!("{pattern:?}.snap"));
    let header = SnapshotHeader {
        last_log_id: None,
        last_membership: Default::default(),
    };
    let started = Instant::now();
    let data = state.read().unwrap();
    let lock_held = match pattern {
        LockPattern::WholeBuild => {
            write_snapshot(&path, &header, &encode_state(&data).unwrap()).unwrap();
            let held = started.elapsed();
            drop(data);
            held
        }
        LockPattern::EncodeOnly => {
            let encoded = encode_state(&data).unwrap();
            drop(data);
            let held = started.elapsed();
            write_snapshot(&path, &header, &encoded).unwrap();
            held
        }
        LockPattern::CloneOnly => {
            let copy = data.clone();
            drop(data);
            let held = started.elapsed();
            write_snapshot(&path, &header, &encode_state(&copy).unwrap()).unwrap();
            held
        }
    };
    let ended = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let split = |all: Vec<(Instant, Duration)>| {
        let quiet_end = started;
        let (mut quiet, mut during) = (Vec::new(), Vec::new());
        for (t, d) in all {
            if t < quiet_end {
                quiet.push(d);
            } else if t <= ended {
                during.push(d);
            }
        }
        (p99_max(&mut quiet).0, p99_max(&mut during))
    };
    let (apply_quiet, apply_during) = split(applier.join().unwrap());
    let (read_quiet, read_during) = split(reader.join().unwrap());
    Phase {
        lock_held,
        apply_quiet,
        apply_during,
        read_quiet,
        read_during,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let jobs = args
        .windows(2)
        .find(|w| w[0] == "--jobs")
        .map(|w| w[1].parse::<u64>().expect("--jobs takes a number"))
        .unwrap_or(if benching { 1_000_000 } else { 20_000 });
    let live = args.iter().any(|a| a == "--live");
    let built = Instant::now();
    let (state, index) = large_state(jobs, live);
    let kind = if live { "pending (live)" } else { "finished (archived)" };
    eprintln!("state of {jobs} {kind} jobs built in {:.1?}", built.elapsed());
    let dir = tempfile::tempdir().expect("temporary directory");
    let state = Arc::new(RwLock::new(state));
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    println!(
        "| lock pattern | lock held (ms) | apply p99 quiet / during, longest during (ms) | read p99 quiet / during, longest during (ms) |"
    );
    println!("|---|---:|---:|---:|");
    let patterns = [LockPattern::WholeBuild, LockPattern::EncodeOnly, LockPattern::CloneOnly];
    for (n, pattern) in (0u64..).zip(patterns) {
        // Each run applies from its own index range.
        let p = run(state.clone(), index + 1_000_000 * n, pattern, dir.path());
        println!(
            "| {} | {} | {} / {}, {} | {} / {}, {} |",
            pattern.label(),
            ms(p.lock_held),
            ms(p.apply_quiet),
            ms(p.apply_during.0),
            ms(p.apply_during.1),
            ms(p.read_quiet),
            ms(p.read_during.0),
            ms(p.read_during.1),
        );
    }
}
