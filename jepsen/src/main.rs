//! `flotilla-jepsen run`: one chaos run, or `--short`, the fixed-seed runs CI executes.

use anyhow::Context;
use clap::{Parser, Subcommand};
use flotilla_jepsen::nemesis::Fault;
use flotilla_jepsen::run::{RunConfig, run};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "flotilla-jepsen",
    version,
    about = "Chaos harness for Flotilla: faults, histories, checkers, reports"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs a cluster under load and faults, then checks the history. Exit status 1 when a
    /// checker finds a violation.
    Run {
        /// Nodes in the cluster (3 or 5).
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// Seconds of load and faults before healing (e.g. `60` or `60s`).
        #[arg(long, default_value = "60s", value_parser = parse_secs)]
        time_limit: Duration,
        /// Comma-separated faults: kill, kill-majority, pause, partition, halves, bridge,
        /// restart-all, membership, lost-disk, clock-skew, retried-forward (or `none`).
        #[arg(long, default_value = "kill,pause,partition")]
        faults: String,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        concurrency: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Report directory. Default `results/<unix time>`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The `flotilla-node` binary. Default: next to this one.
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Raft port of every node (the API uses the next one), on 127.0.0.11...
        #[arg(long, default_value_t = 17_000)]
        base_port: u16,
        /// Every node as on a host of its own: its own `--host-id` and process work directory,
        /// so a leader sees only the workers it created (the heal phase then hands leadership
        /// to each node in turn).
        #[arg(long)]
        separate_hosts: bool,
        /// CI's short mode: three fixed-seed runs (30 s of kills, lost disks and retried
        /// forwards on separate hosts; 40 s of pauses, partitions, bridges, majority kills,
        /// clock skew and retried forwards; 55 s of all faults mixed), reports under
        /// `<out>/short-<n>`.
        #[arg(long)]
        short: bool,
    },
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{s:?} is not a number of seconds"))
}

fn parse_faults(s: &str) -> anyhow::Result<Vec<Fault>> {
    if s == "none" {
        return Ok(vec![]);
    }
    s.split(',')
        .map(|f| f.trim().parse::<Fault>().map_err(anyhow::Error::msg))
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cmd::Run {
        nodes,
        time_limit,
        faults,
        concurrency,
        seed,
        out,
        node_bin,
        base_port,
        separate_hosts,
        short,
    } = Args::parse().command;
    anyhow::ensure!(nodes == 3 || nodes == 5, "--nodes must be 3 or 5");
    let node_bin = match node_bin {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("flotilla-node"),
    };
    anyhow::ensure!(
        node_bin.exists(),
        "{} not found; build it (cargo build --workspace --all-targets) or pass --node-bin",
        node_bin.display()
    );
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "results/{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ))
    });
    let base = RunConfig {
        nodes,
        time_limit,
        faults: parse_faults(&faults)?,
        concurrency,
        seed,
        out: out.clone(),
        node_bin,
        base_port,
        separate_hosts,
    };
    let runs: Vec<RunConfig> = if short {
        [
            ("kill,lost-disk,retried-forward", 11, 30, true),
            ("pause,partition,bridge,kill-majority,clock-skew,retried-forward", 12, 40, false),
            (
                "kill,kill-majority,pause,partition,halves,bridge,restart-all,membership,lost-disk,clock-skew,retried-forward",
                13,
                55,
                false,
            ),
        ]
        .iter()
        .enumerate()
        .map(|(i, (f, seed, secs, separate_hosts))| RunConfig {
            time_limit: Duration::from_secs(*secs),
            faults: parse_faults(f).expect("fixed"),
            seed: *seed,
            separate_hosts: *separate_hosts,
            out: out.join(format!("short-{}", i + 1)),
            ..base.clone()
        })
        .collect::<Vec<_>>()
    } else {
        vec![base]
    };
    let mut all_valid = true;
    for config in runs {
        let dir = config.out.clone();
        let result = run(config).await?;
        let s = &result.summary;
        eprintln!(
            "flotilla-jepsen: {} — {} (faults {}, ops {}); report in {}",
            if result.valid { "VALID" } else { "INVALID" },
            s["config"]["faults"],
            s["faults"],
            s["ops"],
            dir.display()
        );
        for v in s["checkers"].as_array().into_iter().flatten() {
            eprintln!(
                "  {:<32} {} {}",
                v["checker"].as_str().unwrap_or(""),
                if v["valid"] == true { "ok " } else { "BAD" },
                v["details"]
            );
        }
        all_valid &= result.valid;
    }
    if !all_valid {
        std::process::exit(1);
    }
    Ok(())
}
