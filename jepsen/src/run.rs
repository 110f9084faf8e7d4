//! One run: form the cluster, run clients and the nemesis for the time limit, heal, wait for
//! every acknowledged pipeline to finish, collect the final state from every node, check, and
//! write the report.

use crate::checker::{self, Verdict};
use crate::cluster::{Cluster, ClusterConfig, leftover_workers};
use crate::firewall::Firewall;
use crate::history::{OpType, Recorder, pair};
use crate::nemesis::{Fault, Nemesis};
use crate::report;
use crate::workload::Workload;
use anyhow::Context;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub nodes: u64,
    pub time_limit: Duration,
    pub faults: Vec<Fault>,
    pub concurrency: u32,
    pub seed: u64,
    pub out: PathBuf,
    pub node_bin: PathBuf,
    pub base_port: u16,
    /// Every node as on a host of its own (see `ClusterConfig::separate_hosts`).
    pub separate_hosts: bool,
}

/// How long the heal phase leaves leadership with one node before handing it to the next,
/// when every node is on a host of its own: a job's worker is driven only by a leader on its
/// host, so each host's node must lead for its jobs to finish and its workers to be removed.
const HOST_TURN_MS: u64 = 3_000;

/// Hands leadership to the next node in turn (`turn` counts the turns taken).
async fn next_host_turn(cluster: &tokio::sync::Mutex<Cluster>, turn: &mut u64, last: &mut Instant) {
    if last.elapsed() < Duration::from_millis(HOST_TURN_MS) {
        return;
    }
    let c = cluster.lock().await;
    let to = *turn % c.config.nodes + 1;
    *turn += 1;
    *last = Instant::now();
    if !c.transfer_leader(to).await {
        eprintln!("flotilla-jepsen: leadership did not move to node {to} for its host's workers");
    }
}

pub struct RunResult {
    pub valid: bool,
    pub summary: Value,
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

pub async fn run(mut config: RunConfig) -> anyhow::Result<RunResult> {
    std::fs::create_dir_all(&config.out).with_context(|| format!("creating {}", config.out.display()))?;
    // Absolute: jobs write their markers from their own working directories.
    config.out = std::fs::canonicalize(&config.out)?;
    let recorder = Arc::new(Recorder::new(Some(&config.out.join("history.jsonl")))?);
    let firewall = Arc::new(Firewall::new()?);
    let mut cluster = Cluster::new(ClusterConfig {
        nodes: config.nodes,
        node_bin: config.node_bin.clone(),
        dir: config.out.clone(),
        base_port: config.base_port,
        separate_hosts: config.separate_hosts,
    })?;
    // On separate hosts a worker holds its slot until a leader on its host drives it, so each
    // host gets slots of its own: otherwise the workers of hosts whose nodes do not lead fill
    // the pool and the leader's host idles.
    let hosts = if config.separate_hosts { config.nodes } else { 1 };
    let pool = json!({ "name": "main", "provider": "process", "capacity": { "cpu_millis": 2000 * hosts, "memory_mib": 4096 }, "max_workers": 4 * hosts });
    cluster.form(pool).await.context("forming the cluster")?;
    let apis: Vec<String> = (1..=config.nodes).map(|id| cluster.api(id)).collect();
    let workers = cluster.workers_dirs();
    let http = cluster.http.clone();
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    eprintln!(
        "flotilla-jepsen: {} nodes formed; {} s of load and faults {:?}",
        config.nodes,
        config.time_limit.as_secs(),
        config.faults
    );

    let until = Instant::now() + config.time_limit;
    let workload = Workload {
        recorder: recorder.clone(),
        http: http.clone(),
        apis: apis.clone(),
        markers: config.out.join("markers"),
        jobs: Default::default(),
    };
    let mut clients = Vec::new();
    for p in 0..config.concurrency {
        clients.push(tokio::spawn(workload.clone().client(
            i64::from(p),
            config.seed.wrapping_mul(1000).wrapping_add(u64::from(p)),
            until,
        )));
    }
    let nemesis = Nemesis {
        cluster: cluster.clone(),
        firewall: firewall.clone(),
        recorder: recorder.clone(),
        faults: config.faults.clone(),
        seed: config.seed,
    };
    nemesis.run(until).await?;
    for c in clients {
        c.await?;
    }

    // Heal: lift every fault, restart what is down, and let the cluster settle. What cannot be
    // restored is a violation (`cluster-healed`); the other checkers still judge what answers.
    eprintln!("flotilla-jepsen: healing");
    firewall.heal()?;
    let mut heal_problems: Vec<String> = Vec::new();
    {
        let mut c = cluster.lock().await;
        for id in 1..=config.nodes {
            c.signal(id, false);
            if !c.alive(id) {
                c.spawn(id)?;
            }
        }
        match c.wait_leader(Duration::from_secs(60)).await {
            Err(e) => heal_problems.push(format!("no leader after healing: {e:#}")),
            Ok(_) => {
                let deadline = Instant::now() + Duration::from_secs(60);
                while let Err(e) = c.ensure_members().await {
                    if Instant::now() >= deadline {
                        heal_problems.push(format!("could not restore the membership after healing: {e:#}"));
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    let ops = recorder.ops();
    let acknowledged: Vec<u64> = pair(&ops)
        .iter()
        .filter(|c| c.invoke.f == "submit" && c.done.kind == OpType::Ok)
        .filter_map(|c| c.done.value["pipeline"].as_u64())
        .collect();
    let (mut turn, mut last_turn) = (0, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(180);
    while heal_problems.is_empty() {
        let api = {
            let c = cluster.lock().await;
            match c.wait_leader(Duration::from_secs(30)).await {
                Ok(leader) => c.api(leader),
                Err(e) => {
                    heal_problems.push(format!("no leader while acknowledged pipelines finish: {e:#}"));
                    break;
                }
            }
        };
        let mut running = 0;
        for p in &acknowledged {
            let v = get_json(&http, &format!("{api}/v1/pipelines/{p}?consistency=linearizable")).await;
            if v.as_ref().is_none_or(|v| v["state"] == "RUNNING") {
                running += 1;
            }
        }
        if running == 0 {
            break;
        }
        if Instant::now() >= deadline {
            heal_problems.push(format!(
                "{running} acknowledged pipelines still not finished 180 s after healing"
            ));
            break;
        }
        if config.separate_hosts {
            next_host_turn(&cluster, &mut turn, &mut last_turn).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Workers are removed once their exit is committed; give the reconciler time to finish
    // (on separate hosts, each host's node in turn: every host's node leads at least once).
    let deadline = Instant::now() + Duration::from_secs(if config.separate_hosts { 60 } else { 30 });
    let mut turns_left = if config.separate_hosts { config.nodes } else { 0 };
    while (leftover_workers(&workers) != (vec![], vec![]) || turns_left > 0) && Instant::now() < deadline {
        if config.separate_hosts {
            let before = turn;
            next_host_turn(&cluster, &mut turn, &mut last_turn).await;
            if turn != before {
                turns_left = turns_left.saturating_sub(1);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Quiet cluster: every node at the same applied index twice in a row.
    let mut digests: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut now = BTreeMap::new();
        for (i, api) in apis.iter().enumerate() {
            if let Some(v) = get_json(&http, &format!("{api}/v1/cluster/state-digest")).await {
                now.insert(
                    i as u64 + 1,
                    (
                        v["applied_index"].as_u64().unwrap_or(0),
                        v["digest"].as_str().unwrap_or("").to_string(),
                    ),
                );
            }
        }
        let settled = now.len() as u64 == config.nodes
            && now.values().map(|d| d.0).collect::<BTreeSet<_>>().len() == 1
            && now == digests;
        digests = now;
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    for id in (1..=config.nodes).filter(|id| !digests.contains_key(id)) {
        heal_problems.push(format!("node {id} did not answer after healing"));
    }

    let mut present: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut final_states: BTreeMap<u64, String> = BTreeMap::new();
    // Pipelines by name, read from the first node (the replicas agree: `replicas-identical`).
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    let mut created: BTreeMap<String, u64> = BTreeMap::new();
    for (i, api) in apis.iter().enumerate() {
        let mut ids = BTreeSet::new();
        let mut after = 0;
        let mut answered = false;
        while let Some(page) = get_json(&http, &format!("{api}/v1/pipelines?limit=1000&after={after}")).await {
            answered = true;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            for p in &items {
                ids.extend(p["id"].as_u64());
                if i == 0 {
                    if let Some(name) = p["name"].as_str() {
                        *names.entry(name.to_string()).or_default() += 1;
                        if let Some(at) = p["created_at_ms"].as_u64() {
                            created.insert(name.to_string(), at);
                        }
                    }
                    for j in p["job_states"].as_array().into_iter().flatten() {
                        if let (Some(id), Some(s)) = (j["id"].as_u64(), j["state"].as_str()) {
                            final_states.insert(id, s.to_string());
                        }
                    }
                }
            }
            match page["next_after"].as_u64() {
                Some(next) if !items.is_empty() => after = next,
                _ => break,
            }
        }
        // A node that does not answer is `cluster-healed`'s to report (above), not a node that
        // lost every pipeline.
        if answered {
            present.insert(i as u64 + 1, ids);
        }
    }
    let mut markers: BTreeMap<u64, u32> = BTreeMap::new();
    for line in std::fs::read_to_string(config.out.join("markers"))
        .unwrap_or_default()
        .lines()
    {
        if let Ok(job) = line.trim().parse() {
            *markers.entry(job).or_default() += 1;
        }
    }
    let (dirs, procs) = leftover_workers(&workers);
    cluster.lock().await.stop_all();

    let verdicts: Vec<Verdict> = vec![
        checker::linearizable::check(&ops),
        checker::monotonic_reads::check(&ops),
        checker::acknowledged::check(&ops, &present),
        checker::one_pipeline::check(&ops, &names),
        checker::stamped_time::check(&ops, &created, recorder.start_wall_ms),
        checker::exactly_once::check(&markers, &final_states),
        checker::capacity::check(&ops),
        checker::convergence::check(&digests),
        checker::orphans::check(&dirs, &procs),
        checker::poison::check(&ops),
        checker::healed::check(&heal_problems),
    ];
    let config_json = json!({
        "nodes": config.nodes, "separate_hosts": config.separate_hosts, "time_limit_s": config.time_limit.as_secs(), "concurrency": config.concurrency, "seed": config.seed,
        "faults": config.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
    });
    let summary = report::summary(&ops, &verdicts, config_json);
    std::fs::write(config.out.join("summary.json"), serde_json::to_vec_pretty(&summary)?)?;
    std::fs::write(config.out.join("timeline.svg"), report::timeline_svg(&ops))?;
    Ok(RunResult {
        valid: summary["valid"].as_bool().unwrap_or(false),
        summary,
    })
}
