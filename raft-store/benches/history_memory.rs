//! What finished work costs a node's memory, and its restart, now that settled pipelines are
//! archived to disk.
//!
//! The same pipelines (`--pipelines` of `--jobs-per-pipeline` jobs each) are applied to the
//! `StateMachineStore` a node runs, each mode in a fresh process so that neither inherits the
//! other's heap:
//!
//! - `live`: the pipelines are submitted and stay PENDING: their records are held in memory,
//!   as every finished pipeline's were before archiving (the same records, plus their place
//!   in the pending queue);
//! - `archived`: each is submitted and cancelled, so it settles at once and is archived: the
//!   state keeps a compact record, RocksDB the rest.
//!
//! Each run reports the growth of its resident memory per job; the archived run also builds
//! a snapshot, reopens the store (a restart) and reports the time and memory of that.
//!
//! `cargo bench -p flotilla-raft-store --bench history_memory -- --pipelines 1000000`; under
//! `cargo test` it runs once on 2,000 pipelines as a smoke test.

mod common;
use common::{arg, child, entry, field, rss_kib};
use flotilla_raft_store::{Entry, StoreConfig, open};
use flotilla_state_machine::*;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use std::time::Instant;

/// Entries handed to `apply` at once, as openraft hands them over in batches.
const APPLY_BATCH: usize = 256;

/// The entries of pipeline `n` (1-based) after the pool: its submission, and its cancel if
/// `cancel`. Built as they are applied, so the run never holds them all.
fn pipeline_entries(n: u64, jobs_per_pipeline: u64, cancel: bool, next_index: &mut u64) -> Vec<Entry> {
    let jobs = (0..jobs_per_pipeline)
        .map(|j| JobSpec::simple(&format!("job-{j}"), "make test", Resources::new(100, 64, 0)))
        .collect();
    let mut out = vec![entry(
        *next_index,
        Command::SubmitPipeline {
            tenant: format!("team-{}", n % 10),
            idempotency_key: None,
            spec: PipelineSpec {
                name: format!("pipeline-{n}"),
                jobs,
            },
            source: None,
            rerun_of: None,
        },
    )];
    *next_index += 1;
    if cancel {
        out.push(entry(
            *next_index,
            Command::CancelPipeline {
                pipeline: PipelineId(n),
            },
        ));
        *next_index += 1;
    }
    out
}

fn run(mode: &str, pipelines: u64, jobs_per_pipeline: u64) {
    let archived = mode == "archived";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig::new(dir.path());
        let (log, mut sm) = open(&config).expect("open");
        let pool = PoolSpec {
            name: "main".into(),
            provider: ProviderKind::Process,
            capacity: Resources::new(1_000, 1_024, 0),
            max_workers: 1,
            labels: Default::default(),
            settings: Default::default(),
        };
        let mut next_index = 1u64;
        let first = vec![entry(next_index, Command::RegisterPool { spec: pool })];
        next_index += 1;
        sm.apply(futures::stream::iter(first.into_iter().map(|e| Ok((e, None)))))
            .await
            .expect("apply");
        let before = rss_kib();
        let started = Instant::now();
        let mut n = 1u64;
        while n <= pipelines {
            let mut batch = Vec::with_capacity(APPLY_BATCH);
            while batch.len() < APPLY_BATCH && n <= pipelines {
                batch.extend(pipeline_entries(n, jobs_per_pipeline, archived, &mut next_index));
                n += 1;
            }
            sm.apply(futures::stream::iter(batch.into_iter().map(|e| Ok((e, None)))))
                .await
                .expect("apply");
        }
        let apply_s = started.elapsed().as_secs_f64();
        let grown = rss_kib().saturating_sub(before);
        let jobs = pipelines * jobs_per_pipeline;
        let handle = sm.handle();
        {
            let data = handle.read();
            let (live, kept) = (data.state.jobs().count() as u64, data.state.archive().jobs());
            let expected = if archived { (0, jobs) } else { (jobs, 0) };
            assert_eq!((live, kept), expected, "jobs live and archived");
        }
        let per_job = grown as f64 * 1024.0 / jobs as f64;
        if !archived {
            println!("result live rss_growth_kib={grown} bytes_per_job={per_job:.1} apply_s={apply_s:.2}");
            return;
        }
        // Every record is readable by key.
        let last = handle.disk().job(JobId(jobs)).expect("read").expect("archived");
        assert_eq!(last.state, JobState::Cancelled);
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        drop((log, sm, handle));
        let reopen_before = rss_kib();
        let reopened = Instant::now();
        let (_log, sm) = open(&config).expect("reopen");
        let reopen_ms = reopened.elapsed().as_secs_f64() * 1000.0;
        let reopen_grown = rss_kib().saturating_sub(reopen_before);
        assert_eq!(sm.handle().read().state.archive().jobs(), jobs, "restored");
        let disk_kib = dir_kib(dir.path());
        println!(
            "result archived rss_growth_kib={grown} bytes_per_job={per_job:.1} apply_s={apply_s:.2} \
             reopen_ms={reopen_ms:.1} reopen_rss_growth_kib={reopen_grown} disk_kib={disk_kib}"
        );
    });
}

/// The size of the files under `dir`, in KiB.
fn dir_kib(dir: &std::path::Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total / 1024
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Under `cargo test` the bench runs once, small.
    let smoke = !args.iter().any(|a| a == "--bench");
    let pipelines = arg(&args, "--pipelines", if smoke { 2_000 } else { 1_000_000 });
    let per = arg(&args, "--jobs-per-pipeline", 1).max(1);
    if let Some(i) = args.iter().position(|a| a == "--mode") {
        match args.get(i + 1).map(String::as_str) {
            Some(mode @ ("live" | "archived")) => run(mode, pipelines, per),
            other => panic!("unknown mode {other:?}"),
        }
        return;
    }
    let live = child("live", &[("--pipelines", pipelines), ("--jobs-per-pipeline", per)]);
    let archived = child("archived", &[("--pipelines", pipelines), ("--jobs-per-pipeline", per)]);
    let (l, a) = (field(&live, "bytes_per_job"), field(&archived, "bytes_per_job"));
    println!("{pipelines} pipelines x {per} jobs");
    println!("  resident memory per job, held live:      {l:>10.1} bytes");
    println!("  resident memory per job, archived:       {a:>10.1} bytes");
    println!("  ratio (archived / live):                 {:>10.3}", a / l.max(1.0));
    println!(
        "  restart after archiving: {:.1} ms, {:.1} MiB grown; data directory {:.1} MiB",
        field(&archived, "reopen_ms"),
        field(&archived, "reopen_rss_growth_kib") / 1024.0,
        field(&archived, "disk_kib") / 1024.0
    );
}
