//! What job output costs a node's memory, and its restart.
//!
//! The same entries (`--jobs` one-job pipelines, each run to success with `--output-kib` of
//! output in 64 KiB chunks) are applied twice, each in a fresh process so that neither run
//! inherits the other's heap:
//!
//! - `in memory`: to a `State` with a `MemoryDisk`, which holds output as the state itself
//!   did before output moved to disk (one byte vector per job);
//! - `on disk`: to the `StateMachineStore` a node runs, which writes output to RocksDB.
//!
//! Each run reports the growth of its resident memory over the entries; the disk run also
//! builds a snapshot, reopens the store (a restart) and reports the time and memory of that.
//!
//! `cargo bench -p flotilla-raft-store --bench output_memory -- --jobs 500 --output-kib 1024`;
//! under `cargo test` it runs once on 20 jobs of 256 KiB as a smoke test.

mod common;
use common::{arg, child, entry, field, rss_kib};
use flotilla_raft_store::{Entry, StoreConfig, open};
use flotilla_state_machine::*;
use openraft::EntryPayload;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use std::time::Instant;

const CHUNK_BYTES: usize = 64 * 1024;

/// The limits that let each job keep its output whole.
fn limits(output_bytes: u64) -> Limits {
    Limits {
        max_log_bytes_per_job: output_bytes.max(Limits::DEFAULT.max_log_bytes_per_job),
        ..Limits::DEFAULT
    }
}

/// Every entry of the run, in order: limits, a pool, then per job its submission, placement,
/// start, output chunks and exit.
fn entries(jobs: u64, output_bytes: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut push = |command: Command| {
        let index = out.len() as u64 + 1;
        out.push(entry(index, command));
        index
    };
    push(Command::UpdateLimits {
        limits: limits(output_bytes),
    });
    push(Command::RegisterPool {
        spec: PoolSpec {
            name: "main".into(),
            provider: ProviderKind::Process,
            capacity: Resources::new(1_000, 1_024, 0),
            max_workers: 1,
            labels: Default::default(),
            settings: Default::default(),
        },
    });
    let chunk: Vec<u8> = (0..CHUNK_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
    for n in 1..=jobs {
        push(Command::SubmitPipeline {
            tenant: "bench".into(),
            idempotency_key: None,
            spec: PipelineSpec {
                name: format!("p{n}"),
                jobs: vec![JobSpec::simple("j", "true", Resources::new(100, 64, 0))],
            },
            source: None,
            rerun_of: None,
        });
        let job = JobId(n);
        let plan = push(Command::ApplyPlan {
            placements: vec![Placement {
                job,
                attempt: 1,
                pool: "main".into(),
                worker_host: None,
            }],
        });
        let fencing = FencingToken {
            term: 1,
            log_index: plan,
        };
        push(Command::WorkerStarted { job, fencing });
        let mut offset = 0u64;
        while offset < output_bytes {
            let len = CHUNK_BYTES.min((output_bytes - offset) as usize);
            push(Command::AppendLog {
                job,
                fencing,
                offset,
                data: chunk[..len].to_vec(),
            });
            offset += len as u64;
        }
        push(Command::WorkerExited {
            job,
            fencing,
            exit_code: 0,
            jitter_permille: 0,
        });
    }
    out
}

fn in_memory(jobs: u64, output_bytes: u64) {
    let entries = entries(jobs, output_bytes);
    let mut state = State::default();
    let mut output = MemoryDisk::default();
    let before = rss_kib();
    for e in &entries {
        let EntryPayload::Normal(p) = &e.payload else { continue };
        let ctx = ApplyContext {
            log_index: e.log_id.index,
            term: 1,
        };
        let (r, _) = state.apply_with_disk(ctx, p, &mut output);
        assert!(r.rejection().is_none(), "refused: {r:?}");
    }
    drop(entries);
    let grown = rss_kib().saturating_sub(before);
    assert_eq!(output.bytes(), jobs * output_bytes, "every byte kept");
    println!("result in_memory rss_growth_kib={grown}");
}

fn on_disk(jobs: u64, output_bytes: u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig::new(dir.path());
        let entries = entries(jobs, output_bytes);
        let (log, mut sm) = open(&config).expect("open");
        let before = rss_kib();
        // In batches, as openraft hands them over.
        let mut rest = entries;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(64));
            let batch = std::mem::replace(&mut rest, tail);
            sm.apply(futures::stream::iter(batch.into_iter().map(|e| Ok((e, None)))))
                .await
                .expect("apply");
        }
        let grown = rss_kib().saturating_sub(before);
        let handle = sm.handle();
        // Every job ran to success, so its pipeline is archived: its output counted there.
        let stored: u64 = {
            let data = handle.read();
            let live: u64 = data.state.jobs().map(|j| j.log_bytes).sum();
            live + data.state.archive().iter().map(|(_, a)| a.output_bytes).sum::<u64>()
        };
        assert_eq!(stored, jobs * output_bytes, "every byte kept");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        drop((log, sm, handle));
        let reopen_before = rss_kib();
        let started = Instant::now();
        let (_log, sm) = open(&config).expect("reopen");
        let reopen_ms = started.elapsed().as_secs_f64() * 1000.0;
        let reopen_grown = rss_kib().saturating_sub(reopen_before);
        let handle = sm.handle();
        let last = JobId(jobs);
        let tail = handle
            .disk()
            .read(last, output_bytes.saturating_sub(10), output_bytes, 10)
            .expect("read");
        assert_eq!(tail.len() as u64, 10.min(output_bytes), "output readable after reopen");
        println!("result on_disk rss_growth_kib={grown} reopen_ms={reopen_ms:.1} reopen_rss_growth_kib={reopen_grown}");
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Under `cargo test` the bench runs once, small.
    let smoke = !args.iter().any(|a| a == "--bench");
    let jobs = arg(&args, "--jobs", if smoke { 20 } else { 500 });
    let output_kib = arg(&args, "--output-kib", if smoke { 256 } else { 1024 });
    if let Some(i) = args.iter().position(|a| a == "--mode") {
        let output_bytes = output_kib * 1024;
        match args.get(i + 1).map(String::as_str) {
            Some("in_memory") => in_memory(jobs, output_bytes),
            Some("on_disk") => on_disk(jobs, output_bytes),
            other => panic!("unknown mode {other:?}"),
        }
        return;
    }
    let memory = child("in_memory", &[("--jobs", jobs), ("--output-kib", output_kib)]);
    let disk = child("on_disk", &[("--jobs", jobs), ("--output-kib", output_kib)]);
    let (m, d) = (field(&memory, "rss_growth_kib"), field(&disk, "rss_growth_kib"));
    let total_mib = (jobs * output_kib) as f64 / 1024.0;
    println!("{jobs} jobs x {output_kib} KiB of output ({total_mib:.0} MiB in all)");
    println!(
        "  resident memory grown, output in the state:   {:>8.1} MiB",
        m / 1024.0
    );
    println!(
        "  resident memory grown, output in RocksDB:     {:>8.1} MiB",
        d / 1024.0
    );
    println!(
        "  ratio (on disk / in memory):                  {:>8.3}",
        d / m.max(1.0)
    );
    println!(
        "  reopen of the store after a snapshot:         {:>8.1} ms, {:.1} MiB resident",
        field(&disk, "reopen_ms"),
        field(&disk, "reopen_rss_growth_kib") / 1024.0
    );
}
