//! The console under a large history: fills the cluster with pipelines (unless it holds enough),
//! then reads each console page and BFF route one request at a time and reports p50/p95/max
//! latency and bytes, beside two baselines measured in the same run: the REST list of the same
//! page size (`GET /v1/pipelines?limit=50`) and the liveness probe (the floor of a request).
//! A page's weight is its HTML plus the stylesheet and script it loads.

use crate::BaseClient;
use clap::Args;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct ConsoleArgs {
    /// Pipelines the cluster should hold before measuring; the difference is submitted first
    /// (one job each; the nodes need a pool that runs them, such as a `sim` pool).
    #[arg(long, default_value_t = 100_000)]
    pub pipelines: u64,
    /// Concurrent submissions while filling.
    #[arg(long, default_value_t = 64)]
    pub fill_clients: usize,
    /// Requests per route measured (one at a time, after 10 unmeasured).
    #[arg(long, default_value_t = 200)]
    pub requests: u64,
    /// Also write the result as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// One route's figures.
#[derive(serde::Serialize)]
struct RouteResult {
    route: String,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
    bytes: u64,
    /// p95 against the REST list's p95 in the same run.
    p95_vs_rest_list: f64,
}

pub async fn run(servers: &[String], base: &BaseClient, args: &ConsoleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.requests > 0, "--requests must be at least 1");
    anyhow::ensure!(args.fill_clients > 0, "--fill-clients must be at least 1");
    let http = base.builder(true)?.timeout(Duration::from_secs(60)).build()?;
    let server = &servers[0];
    let held = count_pipelines(&http, server).await?;
    if held < args.pipelines {
        fill(&http, servers, args.pipelines - held, args.fill_clients).await?;
    }
    let newest = count_pipelines(&http, server).await?;
    println!(
        "the cluster holds {newest} pipelines; reading every route {} times from {server}",
        args.requests
    );

    // Ids to read: spread over the whole history (most of it settled and archived on disk).
    let ids: Vec<u64> = (0..args.requests).map(|i| 1 + (i * 7919) % newest.max(1)).collect();
    let job_ids = job_ids_of(&http, server, &ids[..ids.len().min(50)]).await?;
    let mid = newest / 2;
    type RouteFn = Box<dyn Fn(u64) -> String>;
    let routes: Vec<(&str, RouteFn)> = vec![
        ("GET /v1/health/live (floor)", Box::new(|_| "/v1/health/live".into())),
        (
            "GET /v1/pipelines?limit=50 (REST list)",
            Box::new(|_| "/v1/pipelines?limit=50".into()),
        ),
        ("page /ui/pipelines", Box::new(|_| "/ui/pipelines".into())),
        (
            "page /ui/pipelines?after=<middle>",
            Box::new(move |_| format!("/ui/pipelines?after={mid}")),
        ),
        (
            "page /ui/pipelines?state=SUCCEEDED",
            Box::new(|_| "/ui/pipelines?state=SUCCEEDED".into()),
        ),
        ("page /ui/pipelines/{id}", {
            let ids = ids.clone();
            Box::new(move |i| format!("/ui/pipelines/{}", ids[i as usize % ids.len()]))
        }),
        ("page /ui/jobs/{id}", {
            let jobs = job_ids.clone();
            Box::new(move |i| format!("/ui/jobs/{}", jobs[i as usize % jobs.len()]))
        }),
        ("page /ui/cluster", Box::new(|_| "/ui/cluster".into())),
        ("page /ui/pools", Box::new(|_| "/ui/pools".into())),
        ("page /ui/events", Box::new(|_| "/ui/events".into())),
        (
            "BFF /ui/api/pipelines",
            Box::new(|_| "/ui/api/pipelines?limit=50".into()),
        ),
        ("BFF /ui/api/pipelines/{id}", {
            let ids = ids.clone();
            Box::new(move |i| format!("/ui/api/pipelines/{}", ids[i as usize % ids.len()]))
        }),
        ("BFF /ui/api/cluster", Box::new(|_| "/ui/api/cluster".into())),
    ];
    let mut measured = Vec::new();
    for (name, path_of) in &routes {
        let (hist, bytes) = measure(&http, server, args.requests, path_of.as_ref()).await?;
        measured.push((name.to_string(), hist, bytes));
    }
    let rest_p95 = measured[1].1.value_at_quantile(0.95) as f64;
    let results: Vec<RouteResult> = measured
        .iter()
        .map(|(route, h, bytes)| RouteResult {
            route: route.clone(),
            p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            p95_ms: h.value_at_quantile(0.95) as f64 / 1000.0,
            max_ms: h.max() as f64 / 1000.0,
            bytes: *bytes,
            p95_vs_rest_list: h.value_at_quantile(0.95) as f64 / rest_p95.max(1.0),
        })
        .collect();
    let assets: u64 = {
        let css = get(&http, server, "/ui/assets/console.css").await?.1;
        let js = get(&http, server, "/ui/assets/console.js").await?.1;
        css + js
    };
    println!(
        "{:<42} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "route", "p50 ms", "p95 ms", "max ms", "bytes", "p95/REST"
    );
    for r in &results {
        println!(
            "{:<42} {:>9.2} {:>9.2} {:>9.2} {:>9} {:>8.2}",
            r.route, r.p50_ms, r.p95_ms, r.max_ms, r.bytes, r.p95_vs_rest_list
        );
    }
    println!("stylesheet and script: {assets} bytes, loaded by every page (add them to a page's bytes for its weight)");
    if let Some(path) = &args.json {
        let out = serde_json::json!({ "pipelines": newest, "requests": args.requests, "assets_bytes": assets, "routes": results });
        std::fs::write(path, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(())
}

async fn get(http: &reqwest::Client, server: &str, path: &str) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let resp = http.get(format!("{server}{path}")).send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    let took = started.elapsed();
    anyhow::ensure!(
        status.is_success(),
        "GET {path}: {status} {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    Ok((took, body.len() as u64))
}

async fn measure(
    http: &reqwest::Client,
    server: &str,
    requests: u64,
    path_of: &dyn Fn(u64) -> String,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut hist = Histogram::<u64>::new(3)?;
    for i in 0..10 {
        get(http, server, &path_of(i)).await?;
    }
    let mut bytes = 0;
    for i in 0..requests {
        let (took, n) = get(http, server, &path_of(i)).await?;
        hist.record(took.as_micros().max(1) as u64)?;
        bytes = bytes.max(n);
    }
    Ok((hist, bytes))
}

/// The highest pipeline id the cluster has handed out (ids are dense from 1).
async fn count_pipelines(http: &reqwest::Client, server: &str) -> anyhow::Result<u64> {
    // Walk the pages from the end: ids are given in order, so the newest is the highest.
    let mut after = 0u64;
    let mut highest = 0u64;
    for _ in 0..10_000 {
        let url = format!("{server}/v1/pipelines?limit=1000&after={after}");
        let v: serde_json::Value = http.get(&url).send().await?.error_for_status()?.json().await?;
        if let Some(last) = v["items"].as_array().and_then(|items| items.last()) {
            highest = last["id"].as_u64().unwrap_or(highest);
        }
        match v["next_after"].as_u64() {
            Some(next) => after = next,
            None => return Ok(highest),
        }
    }
    anyhow::bail!("more than 10,000,000 pipelines: not walked")
}

async fn job_ids_of(http: &reqwest::Client, server: &str, pipelines: &[u64]) -> anyhow::Result<Vec<u64>> {
    let mut jobs = Vec::new();
    for p in pipelines {
        let v: serde_json::Value = http
            .get(format!("{server}/v1/pipelines/{p}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        jobs.extend(v["jobs"].as_array().into_iter().flatten().filter_map(|j| j.as_u64()));
    }
    anyhow::ensure!(!jobs.is_empty(), "the pipelines read have no jobs");
    Ok(jobs)
}

/// Submits `n` one-job pipelines with `clients` in flight, printing progress.
async fn fill(http: &reqwest::Client, servers: &[String], n: u64, clients: usize) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({
        "name": "console-bench",
        "jobs": [{ "name": "noop", "steps": ["true"], "resources": { "cpu_millis": 1, "memory_mib": 1 } }]
    }))?;
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, next, body) = (http.clone(), next.clone(), body.clone());
        let url = format!("{}/v1/pipelines", servers[c % servers.len()]);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(resp.status().as_u16() == 201, "submit: {}", resp.status());
                if c == 0 && i % 10_000 < clients as u64 {
                    eprintln!("  submitted about {i} of {n}");
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("filled: {n} pipelines in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
