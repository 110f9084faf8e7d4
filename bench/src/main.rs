//! `flotilla-bench`: the load generators of the benchmarks in `docs/benchmarks.md`, run by the
//! scripts beside this crate (`bench/*.sh`). A binary of its own, so the user's `flotilla`
//! carries no etcd client and no load generator.
//!
//! `submit` drives a Flotilla cluster's write path (REST → leader → Raft quorum fsync →
//! apply) with minimal pipelines; `etcd-put` drives an etcd cluster's v3 JSON gateway with the
//! same generator and the same concurrency, so the two are measured alike in the same run
//! (`bench/vs-etcd.sh`). `place` measures placements at C1M scale on the `sim` provider.

mod console;
mod load;
mod place;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use load::{LoadConfig, LoadResult};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "flotilla-bench",
    version,
    about = "Load generators for Flotilla's benchmarks"
)]
struct Cli {
    /// API addresses of the Flotilla nodes, comma-separated (round robin).
    #[arg(
        long,
        env = "FLOTILLA_ADDR",
        default_value = "127.0.0.1:8101,127.0.0.1:8102,127.0.0.1:8103"
    )]
    server: String,
    /// API token (`flt_...`) sent with every Flotilla request (the bench scripts export the
    /// cluster's pre-shared admin token). Not sent to etcd.
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster CA's certificates (PEM), trusted for the nodes' HTTPS (and an etcd's, if
    /// it serves TLS from the same CA).
    #[arg(long, env = "FLOTILLA_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: BenchCmd,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match flotilla_cli::token_headers(cli.token.as_deref()) {
        Ok(headers) => {
            let base = BaseClient {
                headers,
                ca_file: cli.ca_file.clone(),
            };
            run(&flotilla_cli::server_urls(&cli.server), &base, &cli.command).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Submit minimal pipelines (one job, 1 millicpu, 1 MiB, step `--step`) to every --server,
    /// round robin. The cluster needs a pool that fits them; a pool that runs one job at a
    /// time keeps the measurement on the write path.
    Submit {
        #[command(flatten)]
        load: LoadArgs,
        /// The job's one step (a shell command): `true` keeps the measurement on the write
        /// path; one that prints gives every job output (the retention soak).
        #[arg(long, default_value = "true")]
        step: String,
        /// Write one line per acknowledged submission, `<unix ms> <pipeline id> <unix ms sent>`,
        /// here (for the failover benchmarks: time to the first ack after a kill, writes lost).
        #[arg(long)]
        acks: Option<PathBuf>,
    },
    /// Place jobs on simulated pools at scale (C1M: 1,000,000 jobs on 5,000 pools) through the
    /// whole write path; prints placements per second and the ratio to Nomad's C1M. The
    /// nodes need `--sim-duration-ms`.
    Place(place::PlaceArgs),
    /// Read the web console's pages and BFF routes one at a time with a large history (filled
    /// first to --pipelines); prints p50/p95/max and bytes per route, and each p95 against the
    /// REST list's in the same run.
    Console(console::ConsoleArgs),
    /// Put values into etcd through its v3 JSON gateway: the baseline for side-by-side figures.
    EtcdPut {
        /// etcd client URLs, comma-separated (round robin), e.g. http://127.0.0.1:2379.
        #[arg(long)]
        endpoints: String,
        /// Bytes per value.
        #[arg(long, default_value_t = 256)]
        value_bytes: usize,
        #[command(flatten)]
        load: LoadArgs,
        /// Write one line per acknowledged put, `<unix ms> <revision> <unix ms sent>`, here (the
        /// revision orders puts as a pipeline id orders submissions: the availability
        /// benchmark).
        #[arg(long)]
        acks: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Arrivals per second over all clients (open loop); 0 runs closed loop (each client sends
    /// its next request when the previous one returns).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup_s: u64,
    /// Also write the result as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Give up on a request after this long (an error; the client takes the next arrival).
    /// Fault benchmarks keep it short, so a request stuck on a stopped member is one error,
    /// not a client lost for the rest of the window.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
}

impl LoadArgs {
    fn config(&self) -> anyhow::Result<LoadConfig> {
        anyhow::ensure!(self.clients > 0, "--clients must be at least 1");
        anyhow::ensure!(self.duration_s > 0, "--duration-s must be at least 1");
        anyhow::ensure!(self.timeout_ms > 0, "--timeout-ms must be at least 1");
        Ok(LoadConfig {
            clients: self.clients,
            rate_per_s: self.rate,
            duration: Duration::from_secs(self.duration_s),
            warmup: Duration::from_secs(self.warmup_s),
        })
    }
}

/// What every client of the generators starts from: the token's headers and the CA.
pub struct BaseClient {
    pub headers: reqwest::header::HeaderMap,
    pub ca_file: Option<PathBuf>,
}

impl BaseClient {
    /// A client builder trusting the CA and sending the headers (`with_token`) or none.
    pub fn builder(&self, with_token: bool) -> anyhow::Result<reqwest::ClientBuilder> {
        let builder = flotilla_cli::http_client_builder(self.ca_file.as_deref())?;
        Ok(if with_token {
            builder.default_headers(self.headers.clone())
        } else {
            builder
        })
    }
}

async fn run(servers: &[String], base: &BaseClient, command: &BenchCmd) -> anyhow::Result<()> {
    anyhow::ensure!(!servers.is_empty(), "--server names no address");
    let (target, args, result) = match command {
        BenchCmd::Place(args) => return place::run(servers, base, args).await,
        BenchCmd::Console(args) => return console::run(servers, base, args).await,
        BenchCmd::Submit { load: args, step, acks } => {
            let http = pooled_http(args, base.builder(true)?)?;
            let acked = AckLog::default();
            let acked_log = acked.clone();
            let urls: Arc<Vec<String>> = Arc::new(servers.iter().map(|s| format!("{s}/v1/pipelines")).collect());
            let body = serde_json::json!({
                "name": "bench",
                "jobs": [{ "name": "noop", "steps": [step], "resources": { "cpu_millis": 1, "memory_mib": 1 } }]
            });
            let body = Arc::new(serde_json::to_vec(&body)?);
            let result = load::run(&args.config()?, move |seq| {
                let (http, urls, body, acked) = (http.clone(), urls.clone(), body.clone(), acked_log.clone());
                async move {
                    let sent_ms = unix_ms();
                    let url = &urls[seq as usize % urls.len()];
                    let resp = http
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body.as_ref().clone())
                        .send()
                        .await;
                    let pipeline = check(resp, 201).await?;
                    let id = serde_json::from_slice::<serde_json::Value>(&pipeline)
                        .ok()
                        .and_then(|v| v["pipeline"].as_u64())
                        .unwrap_or(0);
                    acked.push(sent_ms, id);
                    Ok(())
                }
            })
            .await;
            if let Some(path) = acks {
                acked.write(path)?;
            }
            ("flotilla submit", args, result)
        }
        BenchCmd::EtcdPut {
            endpoints,
            value_bytes,
            load: args,
            acks,
        } => {
            let http = pooled_http(args, base.builder(false)?)?;
            let acked = AckLog::default();
            let acked_log = acked.clone();
            let urls: Vec<String> = endpoints
                .split(',')
                .map(|e| format!("{}/v3/kv/put", e.trim().trim_end_matches('/')))
                .collect();
            anyhow::ensure!(
                !urls.is_empty() && !endpoints.trim().is_empty(),
                "--endpoints names no etcd URL"
            );
            let urls = Arc::new(urls);
            let value = Arc::new(base64(&vec![b'x'; *value_bytes]));
            let result = load::run(&args.config()?, move |seq| {
                let (http, urls, value, acked) = (http.clone(), urls.clone(), value.clone(), acked_log.clone());
                async move {
                    let sent_ms = unix_ms();
                    let url = &urls[seq as usize % urls.len()];
                    let key = base64(format!("bench/{seq}").as_bytes());
                    let body = serde_json::json!({ "key": key, "value": value.as_str() });
                    let response = check(http.post(url).json(&body).send().await, 200).await?;
                    // The JSON gateway writes 64-bit integers as strings.
                    let revision = serde_json::from_slice::<serde_json::Value>(&response)
                        .ok()
                        .and_then(|v| v["header"]["revision"].as_str().and_then(|r| r.parse().ok()))
                        .unwrap_or(0);
                    acked.push(sent_ms, revision);
                    Ok(())
                }
            })
            .await;
            if let Some(path) = acks {
                acked.write(path)?;
            }
            ("etcd put", args, result)
        }
    };
    print_result(target, &result);
    if let Some(path) = &args.json {
        let doc = serde_json::json!({ "target": target, "result": result });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    anyhow::ensure!(result.ok > 0, "no request succeeded: {:?}", result.error_samples);
    Ok(())
}

/// One connection per client, kept alive; each request bounded by `--timeout-ms`.
fn pooled_http(args: &LoadArgs, builder: reqwest::ClientBuilder) -> anyhow::Result<reqwest::Client> {
    Ok(builder
        .pool_max_idle_per_host(args.clients)
        .timeout(Duration::from_millis(args.timeout_ms))
        .build()?)
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Acknowledged writes, `(acknowledged at, id, sent at)` in unix ms, in the order they
/// returned: a pipeline id or an etcd revision, both increasing with the order of commit.
#[derive(Clone, Default)]
struct AckLog(Arc<std::sync::Mutex<Vec<(u128, u64, u128)>>>);

impl AckLog {
    /// The write sent at `sent_ms` was acknowledged now as `id`.
    fn push(&self, sent_ms: u128, id: u64) {
        self.0.lock().expect("acks").push((unix_ms(), id, sent_ms));
    }

    /// One line per ack, `<acknowledged unix ms> <id> <sent unix ms>`.
    fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let lines: String = self
            .0
            .lock()
            .expect("acks")
            .iter()
            .map(|(at, id, sent)| format!("{at} {id} {sent}\n"))
            .collect();
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))
    }
}

/// The body of a response with the expected status; anything else is an error message.
async fn check(resp: Result<reqwest::Response, reqwest::Error>, expected: u16) -> Result<Vec<u8>, String> {
    let resp = resp.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status == expected {
        Ok(body.to_vec())
    } else {
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).chars().take(200).collect::<String>()
        ))
    }
}

fn print_result(target: &str, r: &LoadResult) {
    let rate = if r.rate_per_s == 0 {
        "closed loop".to_string()
    } else {
        format!("{}/s offered", r.rate_per_s)
    };
    println!(
        "{target}: {} clients, {rate}, {:.1} s measured",
        r.clients, r.measured_s
    );
    println!(
        "  ok {}  errors {}  dropped {}  throughput {:.1}/s",
        r.ok, r.errors, r.dropped, r.throughput_per_s
    );
    let l = &r.latency_ms;
    println!(
        "  latency ms  p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
        l.p50, l.p95, l.p99, l.max, l.mean
    );
    for e in &r.error_samples {
        println!("  error: {e}");
    }
}

/// Standard base64 with padding (etcd's JSON gateway takes bytes this way).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"bench/12"), "YmVuY2gvMTI=");
    }
}
