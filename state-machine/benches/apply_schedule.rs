//! Micro-benchmarks of the pure core: `State::apply` for the commands on the hot path,
//! `schedule()` over a large pending queue, and a page of one small tenant's pipelines read
//! from the tenant index against a scan. `cargo bench -p flotilla-state-machine` runs them;
//! `cargo test --workspace --all-targets` runs each once as a smoke test.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flotilla_state_machine::scheduler::{SchedulerPolicy, schedule};
use flotilla_state_machine::*;
use std::hint::black_box;

struct Log {
    state: State,
    index: u64,
}

impl Log {
    fn new() -> Log {
        Log {
            state: State::default(),
            index: 0,
        }
    }

    fn apply(&mut self, command: Command) -> Response {
        self.index += 1;
        self.state
            .apply(
                ApplyContext {
                    log_index: self.index,
                    term: 1,
                },
                &Proposal::new(1_000 + self.index, command),
            )
            .0
    }
}

fn pool(name: &str) -> Command {
    let spec = PoolSpec {
        name: name.into(),
        provider: ProviderKind::Process,
        capacity: Resources::new(64_000, 262_144, 0),
        max_workers: 64,
        labels: Default::default(),
        settings: Default::default(),
    };
    Command::RegisterPool { spec }
}

fn submission(i: u64) -> Command {
    submission_of(i, "bench")
}

fn submission_of(i: u64, tenant: &str) -> Command {
    let job = |name: &str| JobSpec::simple(name, "true", Resources::new(500, 512, 0));
    let mut test = job("test");
    test.needs = vec!["build".into()];
    let spec = PipelineSpec {
        name: format!("p{i}"),
        jobs: vec![job("build"), test, job("lint")],
    };
    Command::SubmitPipeline {
        tenant: tenant.into(),
        idempotency_key: Some(format!("k{i}")),
        spec,
        source: None,
        rerun_of: None,
    }
}

/// A state with `pools` pools and `pipelines` submitted three-job pipelines, all pending.
fn loaded(pools: usize, pipelines: u64) -> Log {
    let mut log = Log::new();
    for p in 0..pools {
        log.apply(pool(&format!("pool-{p}")));
    }
    for i in 0..pipelines {
        log.apply(submission(i));
    }
    log
}

fn bench_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("submit_3_job_pipeline_into_10k_jobs", |b| {
        let base = loaded(10, 3_333);
        let mut i = 1_000_000;
        b.iter_batched(
            || base.state.clone(),
            |mut state| {
                i += 1;
                let outcome = state.apply(
                    ApplyContext {
                        log_index: 20_000,
                        term: 1,
                    },
                    &Proposal::new(2_000_000, submission(i)),
                );
                // Returned, so the state is dropped outside the measurement.
                (state, black_box(outcome))
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("worker_lifecycle_one_job", |b| {
        b.iter_batched(
            || {
                let mut log = loaded(1, 1);
                let plan = schedule(&log.state, &SchedulerPolicy::default(), 10_000);
                log.apply(Command::ApplyPlan {
                    placements: plan.placements,
                });
                log
            },
            |mut log| {
                let job = JobId(1);
                let fencing = log.state.job(job).and_then(|j| j.fencing()).expect("placed");
                log.apply(Command::WorkerCreated {
                    job,
                    fencing,
                    worker_id: "w".into(),
                });
                log.apply(Command::WorkerStarted { job, fencing });
                log.apply(Command::AppendLog {
                    job,
                    fencing,
                    offset: 0,
                    data: b"hello\n".to_vec(),
                });
                let outcome = log.apply(Command::WorkerExited {
                    job,
                    fencing,
                    exit_code: 0,
                    jitter_permille: 0,
                });
                (log, black_box(outcome))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_schedule(c: &mut Criterion) {
    let mut group = c.benchmark_group("schedule");
    group.sample_size(10);
    // Under `cargo test` the benches run once as a smoke test, built with debug assertions:
    // `apply` then checks every invariant after each command, so building the largest queue
    // would take most of an hour. The figures come from `cargo bench` (release), which runs all.
    let cases: &[(usize, u64)] = if cfg!(debug_assertions) {
        &[(10, 1_000), (100, 2_000), (5_000, 2_000)]
    } else {
        &[(10, 1_000), (100, 10_000), (5_000, 10_000), (5_000, 100_000)]
    };
    for &(pools, pipelines) in cases {
        let log = loaded(pools, pipelines);
        // `scan` ranks every pool for every placement (no per-class pool index): the baseline
        // the index is measured against, in the same run. Both give the same plan.
        for (variant, classes) in [("indexed", SchedulerPolicy::default().max_indexed_classes), ("scan", 0)] {
            let policy = SchedulerPolicy {
                max_placements: 1_000,
                max_indexed_classes: classes,
                ..SchedulerPolicy::default()
            };
            let placed = schedule(&log.state, &policy, 10_000).placements.len();
            group.throughput(Throughput::Elements(placed as u64));
            group.bench_function(format!("{}_pending_jobs_{pools}_pools_{variant}", pipelines * 3), |b| {
                b.iter(|| black_box(schedule(&log.state, &policy, 10_000)))
            });
        }
    }
    group.finish();
}

fn bench_tenant_page(c: &mut Criterion) {
    let mut group = c.benchmark_group("tenant_page");
    // Debug builds check every invariant after each apply (see `bench_schedule`).
    let pipelines: u64 = if cfg!(debug_assertions) { 2_000 } else { 100_000 };
    // One pipeline in a thousand is the small tenant's, spread through the ids.
    let mut log = Log::new();
    log.apply(pool("pool-0"));
    for i in 0..pipelines {
        log.apply(submission_of(i, if i % 1_000 == 999 { "small" } else { "big" }));
    }
    let state = &log.state;
    let page = 100;
    // The same page both ways (asserted), in the same run: the index reads the tenant's ranges,
    // the scan (how a tenant-scoped list was served before) walks every pipeline after the cursor.
    let indexed = || {
        state
            .index()
            .tenant_pipelines(&["small"], None, PipelineId(0), page + 1)
    };
    let scan = || {
        state
            .pipelines_after(PipelineId(0))
            .filter(|p| p.tenant == "small")
            .map(|p| p.id)
            .take(page + 1)
            .collect::<Vec<_>>()
    };
    assert_eq!(indexed(), scan());
    // Every submission was accepted: the page holds the small tenant's pipelines.
    assert_eq!(indexed().len(), (pipelines as usize / 1_000).min(page + 1));
    group.bench_function(format!("small_tenant_of_{pipelines}_pipelines_indexed"), |b| {
        b.iter(|| black_box(indexed()))
    });
    group.bench_function(format!("small_tenant_of_{pipelines}_pipelines_scan"), |b| {
        b.iter(|| black_box(scan()))
    });
    group.finish();
}

criterion_group!(benches, bench_apply, bench_schedule, bench_tenant_page);
criterion_main!(benches);
