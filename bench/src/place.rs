//! `flotilla bench place`: the scheduler at scale, end to end (the C1M benchmark's shape).
//!
//! Registers `--pools` pools on the `sim` provider (the nodes need `--sim-duration-ms`), each
//! with room for its share of the jobs, submits `--jobs` jobs in pipelines of
//! `--jobs-per-pipeline` with `--clients` concurrent submitters, and counts placements from
//! the pools' live workers until every job is placed. The simulated workers run for
//! `--job-duration-ms` (long by default), so a placed job stays counted. Placements per second
//! are measured from the first submission to the last placement, through the real write
//! path: REST, Raft quorum fsync, `ApplyPlan` re-checked in `apply`. Then it waits until every
//! job is RUNNING (its worker created and reported started through Raft by the leader's drive
//! loop) and reports that time too: a placement is a decision, a running job is the outcome.

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Nomad's published C1M: 1,000,000 containers on 5,000 hosts in under 5 minutes.
const NOMAD_C1M_PLACEMENTS_PER_S: f64 = 3_300.0;

#[derive(Args, Clone)]
pub struct PlaceArgs {
    #[arg(long, default_value_t = 5_000)]
    pub pools: u64,
    #[arg(long, default_value_t = 1_000_000)]
    pub jobs: u64,
    #[arg(long, default_value_t = 1_000)]
    pub jobs_per_pipeline: u64,
    /// Concurrent submitters (and pool registrations).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Prefix of the pools' names and value of their `bench` label (jobs require it).
    #[arg(long, default_value = "c1m")]
    pub prefix: String,
    /// How long each simulated worker runs (`SIM_DURATION_MS`).
    #[arg(long, default_value_t = 3_600_000)]
    pub job_duration_ms: u64,
    /// Give up (and fail) after this long.
    #[arg(long, default_value_t = 1_800)]
    pub timeout_s: u64,
    /// Write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let resp = http
        .post(url)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    anyhow::ensure!(
        status == 200 || status == 201,
        "POST {url}: {status}: {}",
        text.chars().take(300).collect::<String>()
    );
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Runs `count` tasks numbered 0.. on `clients` workers.
async fn in_parallel<F, Fut>(clients: usize, count: u64, task: F) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (next, task) = (next.clone(), task.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok::<(), anyhow::Error>(());
                    }
                    task(i).await?;
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// Jobs placed so far: live workers of the benchmark's pools.
async fn placed(http: &reqwest::Client, server: &str, prefix: &str) -> anyhow::Result<u64> {
    let v: Value = http.get(format!("{server}/v1/pools")).send().await?.json().await?;
    let own = format!("{prefix}-");
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["spec"]["name"].as_str().is_some_and(|n| n.starts_with(&own)))
        .map(|p| p["workers"].as_u64().unwrap_or(0))
        .sum())
}

/// Jobs RUNNING in `server`'s applied state, from its `/metrics`.
async fn running(http: &reqwest::Client, server: &str) -> anyhow::Result<u64> {
    let text = http.get(format!("{server}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("flotilla_jobs{state=\"RUNNING\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

pub async fn run(servers: &[String], base: &crate::BaseClient, args: &PlaceArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.pools > 0 && args.jobs > 0 && args.jobs_per_pipeline > 0,
        "--pools, --jobs and --jobs-per-pipeline must be at least 1"
    );
    let servers: Arc<Vec<String>> = Arc::new(servers.to_vec());
    let http = base
        .builder(true)?
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_secs(120))
        .build()?;
    let per_pool = args.jobs.div_ceil(args.pools);

    println!(
        "registering {} sim pools with room for {per_pool} jobs each",
        args.pools
    );
    let started = Instant::now();
    {
        let (http, servers, prefix) = (http.clone(), servers.clone(), args.prefix.clone());
        in_parallel(args.clients, args.pools, move |i| {
            let (http, servers, prefix) = (http.clone(), servers.clone(), prefix.clone());
            async move {
                let pool = json!({
                    "name": format!("{prefix}-{i}"), "provider": "sim", "max_workers": per_pool,
                    "capacity": { "cpu_millis": per_pool, "memory_mib": per_pool }, "labels": { "bench": prefix }
                });
                post(
                    &http,
                    &format!("{}/v1/pools", servers[i as usize % servers.len()]),
                    &pool,
                )
                .await
                .map(|_| ())
            }
        })
        .await?;
    }
    println!("  {:.1} s", started.elapsed().as_secs_f64());

    let pipelines = args.jobs.div_ceil(args.jobs_per_pipeline);
    println!(
        "submitting {} jobs in {pipelines} pipelines with {} clients",
        args.jobs, args.clients
    );
    let t0 = Instant::now();
    let submitter = {
        let (http, servers, a) = (http.clone(), servers.clone(), args.clone());
        tokio::spawn(in_parallel(a.clients, pipelines, move |p| {
            let (http, servers, a) = (http.clone(), servers.clone(), a.clone());
            async move {
                let first = p * a.jobs_per_pipeline;
                let jobs: Vec<Value> = (first..(first + a.jobs_per_pipeline).min(a.jobs))
                    .map(|j| {
                        json!({
                            "name": format!("j{j}"), "steps": ["sim"], "resources": { "cpu_millis": 1, "memory_mib": 1 },
                            "labels": { "bench": a.prefix }, "env": { "SIM_DURATION_MS": a.job_duration_ms.to_string() }
                        })
                    })
                    .collect();
                let body = json!({ "name": format!("{}-{p}", a.prefix), "jobs": jobs });
                post(
                    &http,
                    &format!("{}/v1/pipelines", servers[p as usize % servers.len()]),
                    &body,
                )
                .await
                .map(|_| ())
            }
        }))
    };

    let deadline = t0 + Duration::from_secs(args.timeout_s);
    let mut submitter = Some(submitter);
    let mut submitted_s = None;
    let mut last_report = Instant::now();
    let placed_all_s = loop {
        if submitter.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = submitter.take()
        {
            h.await.context("submitter")?.context("submitting pipelines")?;
            let s = t0.elapsed().as_secs_f64();
            submitted_s = Some(s);
            println!("  all submitted after {s:.1} s");
        }
        let n = placed(&http, &servers[0], &args.prefix).await.unwrap_or(0);
        if n >= args.jobs {
            break t0.elapsed().as_secs_f64();
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            println!(
                "  placed {n} of {} after {:.0} s",
                args.jobs,
                t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out with {n} of {} placed", args.jobs);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if let Some(h) = submitter {
        h.await.context("submitter")?.context("submitting pipelines")?;
        submitted_s = Some(t0.elapsed().as_secs_f64());
    }
    let submitted_s = submitted_s.unwrap_or(placed_all_s);
    let rate = args.jobs as f64 / placed_all_s;
    println!(
        "placed {} jobs on {} pools in {placed_all_s:.1} s: {rate:.0} placements/s end to end",
        args.jobs, args.pools
    );
    println!(
        "  submissions took {submitted_s:.1} s ({:.0} jobs/s)",
        args.jobs as f64 / submitted_s
    );
    println!(
        "  ratio to Nomad's C1M (3,300 placements/s): {:.2}",
        rate / NOMAD_C1M_PLACEMENTS_PER_S
    );

    println!("waiting for every job to be RUNNING (workers created and started)");
    let mut last_report = Instant::now();
    let running_all_s = loop {
        let n = running(&http, &servers[0]).await.unwrap_or(0);
        if n >= args.jobs {
            break t0.elapsed().as_secs_f64();
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            println!(
                "  running {n} of {} after {:.0} s",
                args.jobs,
                t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out with {n} of {} running", args.jobs);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let running_rate = args.jobs as f64 / running_all_s;
    println!(
        "all {} jobs RUNNING after {running_all_s:.1} s: {running_rate:.0} jobs started/s end to end",
        args.jobs
    );
    println!(
        "  ratio to Nomad's C1M: {:.2}",
        running_rate / NOMAD_C1M_PLACEMENTS_PER_S
    );
    if let Some(path) = &args.json {
        let doc = json!({
            "pools": args.pools, "jobs": args.jobs, "jobs_per_pipeline": args.jobs_per_pipeline, "clients": args.clients,
            "submitted_s": submitted_s, "placed_all_s": placed_all_s, "placements_per_s": rate,
            "ratio_to_nomad_c1m": rate / NOMAD_C1M_PLACEMENTS_PER_S,
            "running_all_s": running_all_s, "started_per_s": running_rate,
            "started_ratio_to_nomad_c1m": running_rate / NOMAD_C1M_PLACEMENTS_PER_S
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
