//! What a live (pending, scheduled, running) job costs the replicated state in heap bytes, at
//! C1M's shape: jobs in pipelines of 1,000 on many `sim` pools, each job as `flotilla-bench
//! place` submits it (one step, a constraint, an env variable). Every node holds this state,
//! so it is the floor under any replica's memory per live job.
//!
//! A counting global allocator gives the bytes held exactly (RSS would add the allocator's
//! slack and what it has not returned). Reported after each stage: all submitted (pending),
//! all placed (scheduled), all workers created and started (running).
//!
//! `cargo bench -p flotilla-state-machine --bench live_memory -- --jobs 1000000 --pools 5000`
//! measures; `cargo test --benches` runs a small case once as a smoke test.

use flotilla_state_machine::scheduler::{SchedulerPolicy, schedule};
use flotilla_state_machine::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes it has handed out and not yet got back.
struct Counting;

static HELD_BYTES: AtomicUsize = AtomicUsize::new(0);
/// The same allocations as glibc's malloc lays them out on 64-bit Linux (an 8-byte header,
/// 16-byte alignment, 32 bytes at least): what they cost in resident memory.
static CHUNK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        CHUNK_BYTES.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        CHUNK_BYTES.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            HELD_BYTES.fetch_add(new_size, Ordering::Relaxed);
            HELD_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
            CHUNK_BYTES.fetch_add(chunk(new_size), Ordering::Relaxed);
            CHUNK_BYTES.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes asked for and not freed, and what they take in malloc's chunks.
#[derive(Clone, Copy)]
struct Held {
    asked: usize,
    chunks: usize,
}

fn held() -> Held {
    Held {
        asked: HELD_BYTES.load(Ordering::Relaxed),
        chunks: CHUNK_BYTES.load(Ordering::Relaxed),
    }
}

struct Log {
    state: State,
    index: u64,
}

impl Log {
    fn apply(&mut self, command: Command) -> Response {
        self.index += 1;
        let ctx = ApplyContext {
            log_index: self.index,
            term: 1,
        };
        // Events go to the node's bounded journal, not the state: dropped here.
        self.state.apply(ctx, &Proposal::new(1_000 + self.index, command)).0
    }
}

/// The number after `name` in the arguments, else `default`.
fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse().unwrap_or_else(|_| panic!("{name} takes a number"))
        })
}

fn pool(name: String, per_pool: u64) -> Command {
    let spec = PoolSpec {
        name,
        provider: ProviderKind::Sim,
        capacity: Resources::new(per_pool, per_pool, 0),
        max_workers: u32::try_from(per_pool).unwrap_or(u32::MAX),
        labels: BTreeMap::from([("bench".to_string(), "c1m".to_string())]),
        settings: Default::default(),
    };
    Command::RegisterPool { spec }
}

/// One pipeline of `flotilla-bench place`'s jobs, numbered from `first`.
fn pipeline(p: u64, first: u64, count: u64) -> Command {
    let jobs = (first..first + count)
        .map(|j| {
            let mut job = JobSpec::simple(&format!("j{j}"), "sim", Resources::new(1, 1, 0));
            // Collected, so the bench builds against any map type the spec has had.
            job.constraints = [("bench".to_string(), "c1m".to_string())].into_iter().collect();
            job.env = [("SIM_DURATION_MS".to_string(), "600000".to_string())]
                .into_iter()
                .collect();
            job
        })
        .collect();
    Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: None,
        spec: PipelineSpec {
            name: format!("c1m-{p}"),
            jobs,
        },
        source: None,
        rerun_of: None,
    }
}

/// `asked/chunks` bytes per job grown since `base`.
fn per_job(now: Held, base: Held, jobs: u64) -> String {
    let per = |a: usize, b: usize| a.saturating_sub(b) as f64 / jobs as f64;
    format!("{:.0}/{:.0}", per(now.asked, base.asked), per(now.chunks, base.chunks))
}

fn main() {
    // `cargo test --benches` passes no arguments and builds with debug assertions, under which
    // `apply` checks every invariant after each command: a small case there.
    let smoke = cfg!(debug_assertions);
    let jobs = arg("--jobs", if smoke { 2_000 } else { 1_000_000 });
    let pools = arg("--pools", if smoke { 20 } else { 5_000 }).max(1);
    let per_pipeline = arg("--jobs-per-pipeline", 1_000).max(1);
    let per_pool = jobs.div_ceil(pools);

    let mut log = Log {
        state: State::default(),
        index: 0,
    };
    let limits = Limits {
        max_jobs_per_pipeline: log.state.limits().max_jobs_per_pipeline.max(per_pipeline as usize),
        ..log.state.limits().clone()
    };
    log.apply(Command::UpdateLimits { limits });
    for p in 0..pools {
        let response = log.apply(pool(format!("c1m-{p}"), per_pool));
        assert!(!matches!(response, Response::Rejected(_)), "pool: {response:?}");
    }
    let base = held();

    let mut submitted = 0;
    let mut p = 0;
    while submitted < jobs {
        let count = per_pipeline.min(jobs - submitted);
        let response = log.apply(pipeline(p, submitted, count));
        assert!(!matches!(response, Response::Rejected(_)), "submit: {response:?}");
        submitted += count;
        p += 1;
    }
    let pending = held();

    let policy = SchedulerPolicy {
        max_placements: 10_000,
        ..SchedulerPolicy::default()
    };
    let mut placed = 0u64;
    for _ in 0..=jobs {
        let plan = schedule(&log.state, &policy, 0);
        if plan.placements.is_empty() {
            break;
        }
        placed += plan.placements.len() as u64;
        log.apply(Command::ApplyPlan {
            placements: plan.placements,
        });
    }
    assert_eq!(placed, jobs, "every job is placed");
    let scheduled = held();

    for id in 1..=jobs {
        let job = JobId(id);
        let fencing = log.state.job(job).and_then(|j| j.fencing()).expect("placed");
        log.apply(Command::WorkerCreated {
            job,
            fencing,
            // As the providers name workers (`worker_name`).
            worker_id: format!("j{id}-a1"),
        });
        log.apply(Command::WorkerStarted { job, fencing });
    }
    let running = held();
    let live = log.state.jobs().filter(|j| j.state == JobState::Running).count() as u64;
    assert_eq!(live, jobs, "every job is running");

    // Settled pipelines of one job each (submitted, cancelled before placement, so archived at
    // once): what the state keeps of finished work once its records went to disk.
    let settled_pipelines = arg("--settled-pipelines", if smoke { 2_000 } else { 1_000_000 });
    let before_settled = held();
    for s in 0..settled_pipelines {
        let response = log.apply(Command::SubmitPipeline {
            tenant: "default".into(),
            idempotency_key: None,
            spec: PipelineSpec {
                name: format!("settled-{s}"),
                // Nothing schedules between the two commands: the job is PENDING when cancelled.
                jobs: vec![JobSpec::simple("build", "make", Resources::new(1, 1, 0))],
            },
            source: None,
            rerun_of: None,
        });
        let Response::Submitted { pipeline, .. } = response else {
            panic!("submit: {response:?}")
        };
        log.apply(Command::CancelPipeline { pipeline });
    }
    let settled = held();
    assert_eq!(
        log.state.archive().len() as u64,
        settled_pipelines,
        "every pipeline is archived"
    );

    println!(
        "live_memory jobs={jobs} pools={pools} jobs_per_pipeline={per_pipeline} \
         bytes_per_job(asked/in_chunks) pending={} scheduled={} running={} state_mib={:.1}",
        per_job(pending, base, jobs),
        per_job(scheduled, base, jobs),
        per_job(running, base, jobs),
        running.chunks as f64 / (1 << 20) as f64,
    );
    println!(
        "live_memory settled_pipelines={settled_pipelines} (one job each) bytes_per_pipeline(asked/in_chunks)={}",
        per_job(settled, before_settled, settled_pipelines.max(1)),
    );
}
