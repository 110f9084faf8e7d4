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
        /// restart-all, membership, lost-disk, clock-skew, retried-forward, lost-disk-quorum
        /// (or `none`).
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
        /// The exactly-once matrix, run by hand (about 25 minutes): at 3 and at 5 nodes, each
        /// of clock-skew, lost-disk, retried-forward and lost-disk-quorum alone (40 s), kills
        /// and partitions on separate hosts (40 s), and every fault mixed (120 s); reports
        /// under `<out>/<nodes>n-<n>` and the table of verdicts in `<out>/matrix.md`.
        #[arg(long, conflicts_with = "short")]
        matrix: bool,
    },
}

/// Every fault the harness has, for the mixed runs.
const ALL_FAULTS: &str = "kill,kill-majority,pause,partition,halves,bridge,restart-all,membership,lost-disk,clock-skew,retried-forward,lost-disk-quorum";

/// One run of a fixed list: faults, seed, seconds, separate hosts.
struct Planned {
    faults: &'static str,
    seed: u64,
    secs: u64,
    separate_hosts: bool,
}

/// CI's short mode.
fn short_runs() -> Vec<Planned> {
    vec![
        Planned {
            faults: "kill,lost-disk,retried-forward,lost-disk-quorum",
            seed: 11,
            secs: 40,
            separate_hosts: true,
        },
        Planned {
            faults: "pause,partition,bridge,kill-majority,clock-skew,retried-forward",
            seed: 12,
            secs: 40,
            separate_hosts: false,
        },
        Planned {
            faults: ALL_FAULTS,
            seed: 13,
            secs: 55,
            separate_hosts: false,
        },
    ]
}

/// The exactly-once matrix: each fault of issue 17 alone, separate hosts, and the mix.
fn matrix_runs() -> Vec<Planned> {
    let alone = |faults, seed| Planned {
        faults,
        seed,
        secs: 40,
        separate_hosts: false,
    };
    vec![
        alone("clock-skew", 21),
        alone("lost-disk", 22),
        alone("retried-forward", 23),
        alone("lost-disk-quorum", 24),
        Planned {
            faults: "kill,partition",
            seed: 25,
            secs: 40,
            separate_hosts: true,
        },
        Planned {
            faults: ALL_FAULTS,
            seed: 26,
            secs: 120,
            separate_hosts: false,
        },
    ]
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
        matrix,
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
    let planned = |list: Vec<Planned>, nodes: u64, prefix: &str| {
        list.into_iter()
            .enumerate()
            .map(|(i, p)| RunConfig {
                nodes,
                time_limit: Duration::from_secs(p.secs),
                faults: parse_faults(p.faults).expect("fixed"),
                seed: p.seed,
                separate_hosts: p.separate_hosts,
                out: out.join(format!("{prefix}{}", i + 1)),
                ..base.clone()
            })
            .collect::<Vec<_>>()
    };
    let runs: Vec<RunConfig> = if short {
        planned(short_runs(), base.nodes, "short-")
    } else if matrix {
        let mut runs = planned(matrix_runs(), 3, "3n-");
        runs.extend(planned(matrix_runs(), 5, "5n-"));
        runs
    } else {
        vec![base.clone()]
    };
    let mut summaries = Vec::new();
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
        summaries.push((dir, result.summary));
    }
    if matrix {
        let table = flotilla_jepsen::report::matrix_table(&summaries);
        std::fs::write(out.join("matrix.md"), &table)?;
        eprintln!("{table}");
    }
    if !all_valid {
        std::process::exit(1);
    }
    Ok(())
}
