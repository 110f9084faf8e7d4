//! Faults, one at a time: wait, inject, hold, heal. Each fault is recorded in the history as
//! `start-<fault>` / `stop-<fault>` by process -1, so checkers and the report know the windows.

use crate::cluster::{Cluster, node_ip};
use crate::firewall::Firewall;
use crate::history::{OpType, Recorder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub const NEMESIS: i64 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of one node (half the time the leader), restarted at the end of the window.
    Kill,
    /// `kill -9` of a majority, the leader among them: no quorum until they restart.
    KillMajority,
    /// SIGSTOP of one node (half the time the leader), SIGCONT at the end.
    Pause,
    /// One node (half the time the leader) cut off from all others.
    Partition,
    /// The cluster split into two random halves.
    Halves,
    /// Two sides that cannot reach each other, and one node (half the time the leader) that
    /// reaches both.
    Bridge,
    /// Every node killed at once and restarted.
    RestartAll,
    /// A follower removed from the cluster while it keeps running, then added back.
    Membership,
    /// One node (half the time the leader) restarted with its wall clock 5-30 s ahead or
    /// behind (libfaketime), half the time then made the leader; restarted with the true clock
    /// at the end of the window.
    ClockSkew,
    /// A follower killed, its data directory wiped, and restarted on the empty directory as
    /// the deployments restart a node; its old self is then removed and the new one added
    /// (as an operator does after the node's `409 data_lost`).
    LostDisk,
    /// The leader's answers to one follower's forwards dropped (its proposals are committed,
    /// their answers lost), then the rule lifted and that follower's connections to the
    /// leader aborted, so it retries, on a new connection, every proposal it forwarded. Only
    /// the client sessions keep a retried proposal from being applied twice.
    RetriedForward,
    /// A minority of followers paused, so that the leader and the others commit without them;
    /// then the leader killed and one up-to-date follower's disk lost in the same moment,
    /// and the lagging nodes resumed. The lagging nodes and the wiped node together are a
    /// majority: only the incarnation check keeps the wiped node from voting as the member
    /// it was and electing a leader that lacks acknowledged writes.
    LostDiskQuorum,
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "kill" => Fault::Kill,
            "kill-majority" => Fault::KillMajority,
            "bridge" => Fault::Bridge,
            "pause" => Fault::Pause,
            "partition" => Fault::Partition,
            "halves" => Fault::Halves,
            "restart-all" => Fault::RestartAll,
            "membership" => Fault::Membership,
            "lost-disk" => Fault::LostDisk,
            "clock-skew" => Fault::ClockSkew,
            "retried-forward" => Fault::RetriedForward,
            "lost-disk-quorum" => Fault::LostDiskQuorum,
            other => {
                return Err(format!(
                    "unknown fault {other:?} (kill, kill-majority, pause, partition, halves, bridge, restart-all, membership, lost-disk, clock-skew, retried-forward, lost-disk-quorum)"
                ));
            }
        })
    }
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::KillMajority => "kill-majority",
            Fault::Bridge => "bridge",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::Halves => "halves",
            Fault::RestartAll => "restart-all",
            Fault::Membership => "membership",
            Fault::LostDisk => "lost-disk",
            Fault::ClockSkew => "clock-skew",
            Fault::RetriedForward => "retried-forward",
            Fault::LostDiskQuorum => "lost-disk-quorum",
        }
    }
}

pub struct Nemesis {
    pub cluster: Arc<Mutex<Cluster>>,
    pub firewall: Arc<Firewall>,
    pub recorder: Arc<Recorder>,
    pub faults: Vec<Fault>,
    pub seed: u64,
}

impl Nemesis {
    pub async fn run(self, until: Instant) -> anyhow::Result<()> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        if self.faults.is_empty() {
            tokio::time::sleep_until(until).await;
            return Ok(());
        }
        // Faults take turns from a seeded starting point, so every enabled fault happens in
        // a run long enough for them all; targets and timings are drawn from the seed.
        let first = rng.random_range(0..self.faults.len());
        for turn in 0.. {
            tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..4_000))).await;
            let hold = Duration::from_millis(rng.random_range(3_000..6_000));
            if Instant::now() + hold >= until {
                break;
            }
            let fault = self.faults[(first + turn) % self.faults.len()];
            self.inject(fault, hold, &mut rng).await?;
        }
        Ok(())
    }

    async fn target(&self, rng: &mut StdRng) -> u64 {
        let cluster = self.cluster.lock().await;
        let n = cluster.config.nodes;
        if rng.random_bool(0.5)
            && let Some(l) = cluster.leader().await
        {
            return l;
        }
        rng.random_range(1..=n)
    }

    /// A node other than the leader, drawn from the seed.
    async fn follower(&self, n: u64, rng: &mut StdRng) -> u64 {
        let leader = self.cluster.lock().await.leader().await;
        let followers: Vec<u64> = (1..=n).filter(|i| Some(*i) != leader).collect();
        followers[rng.random_range(0..followers.len())]
    }

    /// Records a fault as skipped with its reason, and waits out its window.
    async fn skip(&self, start: &str, stop: &str, hold: Duration, why: &str) {
        self.recorder
            .record(NEMESIS, OpType::Info, start, None, json!({ "skipped": why }));
        tokio::time::sleep(hold).await;
        self.recorder.record(NEMESIS, OpType::Info, stop, None, json!({}));
    }

    /// Makes the membership whole before a disk is lost, or skips the fault. One lost disk is
    /// within a whole cluster's tolerance, not within that of a cluster an earlier fault left
    /// with fewer voters (a membership fault whose add did not finish): wiping one of two
    /// voters loses the quorum for good, as it would for any Raft cluster.
    async fn membership_whole(&self, start: &str, stop: &str, hold: Duration) -> bool {
        match self.cluster.lock().await.ensure_members().await {
            Ok(()) => true,
            Err(e) => {
                self.skip(start, stop, hold, &format!("membership not whole: {e:#}"))
                    .await;
                false
            }
        }
    }

    /// Once a leader is there, removes wiped node `node`'s old self and adds its new
    /// incarnation (as an operator does after its `409 data_lost`), then records the fault's end.
    async fn readd_wiped(&self, stop: &str, node: u64) {
        let readded = {
            let cluster = self.cluster.lock().await;
            match cluster.wait_leader(Duration::from_secs(15)).await {
                Ok(_) => cluster.ensure_members().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = &readded {
            eprintln!("flotilla-jepsen: adding the wiped node back: {e:#}");
        }
        self.recorder.record(
            NEMESIS,
            OpType::Info,
            stop,
            Some(node),
            json!({ "node": node, "readded": readded.is_ok() }),
        );
    }

    async fn inject(&self, fault: Fault, hold: Duration, rng: &mut StdRng) -> anyhow::Result<()> {
        let n = self.cluster.lock().await.config.nodes;
        let start = format!("start-{}", fault.name());
        let stop = format!("stop-{}", fault.name());
        match fault {
            Fault::Kill | Fault::Pause | Fault::Partition => {
                let target = self.target(rng).await;
                self.recorder
                    .record(NEMESIS, OpType::Info, &start, Some(target), json!({ "node": target }));
                match fault {
                    Fault::Kill => self.cluster.lock().await.kill(target),
                    Fault::Pause => self.cluster.lock().await.signal(target, true),
                    _ => {
                        let others: Vec<String> = (1..=n).filter(|i| *i != target).map(node_ip).collect();
                        self.firewall.partition(&[node_ip(target)], &others)?;
                    }
                }
                tokio::time::sleep(hold).await;
                match fault {
                    Fault::Kill => self.cluster.lock().await.spawn(target)?,
                    Fault::Pause => self.cluster.lock().await.signal(target, false),
                    _ => self.firewall.heal()?,
                }
                self.recorder
                    .record(NEMESIS, OpType::Info, &stop, Some(target), json!({ "node": target }));
            }
            Fault::Halves => {
                let mut ids: Vec<u64> = (1..=n).collect();
                shuffle(&mut ids, rng);
                let (a, b) = ids.split_at(ids.len() / 2);
                self.recorder.record(
                    NEMESIS,
                    OpType::Info,
                    &start,
                    None,
                    json!({ "minority": a, "majority": b }),
                );
                let ips = |s: &[u64]| s.iter().map(|i| node_ip(*i)).collect::<Vec<_>>();
                self.firewall.partition(&ips(a), &ips(b))?;
                tokio::time::sleep(hold).await;
                self.firewall.heal()?;
                self.recorder.record(NEMESIS, OpType::Info, &stop, None, json!({}));
            }
            Fault::KillMajority => {
                let leader = self.cluster.lock().await.leader().await;
                let mut ids: Vec<u64> = (1..=n).filter(|i| Some(*i) != leader).collect();
                shuffle(&mut ids, rng);
                let mut victims: Vec<u64> = leader.into_iter().chain(ids).take(n as usize / 2 + 1).collect();
                victims.sort_unstable();
                self.recorder
                    .record(NEMESIS, OpType::Info, &start, None, json!({ "nodes": victims }));
                for id in &victims {
                    self.cluster.lock().await.kill(*id);
                }
                tokio::time::sleep(hold).await;
                for id in &victims {
                    self.cluster.lock().await.spawn(*id)?;
                }
                self.recorder
                    .record(NEMESIS, OpType::Info, &stop, None, json!({ "nodes": victims }));
            }
            Fault::Bridge => {
                let bridge = self.target(rng).await;
                let mut others: Vec<u64> = (1..=n).filter(|i| *i != bridge).collect();
                shuffle(&mut others, rng);
                let (a, b) = others.split_at(others.len() / 2);
                self.recorder.record(
                    NEMESIS,
                    OpType::Info,
                    &start,
                    Some(bridge),
                    json!({ "bridge": bridge, "sides": [a, b] }),
                );
                let ips = |s: &[u64]| s.iter().map(|i| node_ip(*i)).collect::<Vec<_>>();
                self.firewall.partition(&ips(a), &ips(b))?;
                tokio::time::sleep(hold).await;
                self.firewall.heal()?;
                self.recorder
                    .record(NEMESIS, OpType::Info, &stop, Some(bridge), json!({ "bridge": bridge }));
            }
            Fault::Membership => {
                let target = self.follower(n, rng).await;
                self.recorder
                    .record(NEMESIS, OpType::Info, &start, Some(target), json!({ "node": target }));
                let removed = self.cluster.lock().await.remove_member(target).await;
                if let Err(e) = &removed {
                    eprintln!("flotilla-jepsen: membership fault: {e:#}");
                }
                tokio::time::sleep(hold).await;
                // Adding back may wait for a leader; the heal phase retries what fails here.
                if let Err(e) = self.cluster.lock().await.ensure_members().await {
                    eprintln!("flotilla-jepsen: adding members back: {e:#}");
                }
                self.recorder.record(
                    NEMESIS,
                    OpType::Info,
                    &stop,
                    Some(target),
                    json!({ "node": target, "removed": removed.is_ok() }),
                );
            }
            Fault::ClockSkew => {
                let target = self.target(rng).await;
                let magnitude_s: i64 = rng.random_range(5..=30);
                let skew_s = if rng.random_bool(0.5) {
                    magnitude_s
                } else {
                    -magnitude_s
                };
                let lead = rng.random_bool(0.5);
                self.recorder.record(
                    NEMESIS,
                    OpType::Info,
                    &start,
                    Some(target),
                    json!({ "node": target, "skew_s": skew_s, "lead": lead }),
                );
                self.cluster.lock().await.restart_skewed(target, Some(skew_s))?;
                if lead {
                    // Give it time to answer and to sample its peers, then hand it leadership.
                    tokio::time::sleep(Duration::from_millis(1_500)).await;
                    let moved = self.cluster.lock().await.transfer_leader(target).await;
                    if !moved {
                        eprintln!("flotilla-jepsen: clock-skew fault: leadership did not move to node {target}");
                    }
                }
                tokio::time::sleep(hold).await;
                self.cluster.lock().await.restart_skewed(target, None)?;
                self.recorder
                    .record(NEMESIS, OpType::Info, &stop, Some(target), json!({ "node": target }));
            }
            Fault::LostDisk => {
                if !self.membership_whole(&start, &stop, hold).await {
                    return Ok(());
                }
                let target = self.follower(n, rng).await;
                self.recorder
                    .record(NEMESIS, OpType::Info, &start, Some(target), json!({ "node": target }));
                self.cluster.lock().await.kill(target);
                tokio::time::sleep(hold / 2).await;
                let mut cluster = self.cluster.lock().await;
                cluster.wipe(target)?;
                cluster.spawn(target)?;
                drop(cluster);
                // The wiped node is refused by its peers while the cluster goes on without it.
                tokio::time::sleep(hold / 2).await;
                self.readd_wiped(&stop, target).await;
            }
            Fault::LostDiskQuorum => {
                if !self.membership_whole(&start, &stop, hold).await {
                    return Ok(());
                }
                let Some(leader) = self.cluster.lock().await.leader().await else {
                    self.skip(&start, &stop, hold, "no leader").await;
                    return Ok(());
                };
                let mut followers: Vec<u64> = (1..=n).filter(|i| *i != leader).collect();
                shuffle(&mut followers, rng);
                // (n - 1) / 2 lagging and one wiped: with the wiped node, a majority.
                let (lagging, rest) = followers.split_at((n as usize - 1) / 2);
                let wiped = rest[0];
                self.recorder.record(
                    NEMESIS,
                    OpType::Info,
                    &start,
                    Some(wiped),
                    json!({ "leader": leader, "lagging": lagging, "wiped": wiped }),
                );
                for id in lagging {
                    self.cluster.lock().await.signal(*id, true);
                }
                // Writes acknowledged now are on the leader and the unpaused followers alone.
                tokio::time::sleep(hold / 2).await;
                {
                    let mut cluster = self.cluster.lock().await;
                    cluster.kill(leader);
                    cluster.kill(wiped);
                    cluster.wipe(wiped)?;
                    cluster.spawn(wiped)?;
                }
                // The wiped node answers before the lagging ones wake up and stand.
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                for id in lagging {
                    self.cluster.lock().await.signal(*id, false);
                }
                tokio::time::sleep(hold / 2).await;
                // The old leader back, a quorum elects.
                self.cluster.lock().await.spawn(leader)?;
                self.readd_wiped(&stop, wiped).await;
            }
            Fault::RetriedForward => {
                let (leader, port) = {
                    let cluster = self.cluster.lock().await;
                    (cluster.leader().await, cluster.config.base_port)
                };
                let Some(leader) = leader else {
                    self.skip(&start, &stop, hold, "no leader").await;
                    return Ok(());
                };
                let target = self.follower(n, rng).await;
                self.recorder.record(
                    NEMESIS,
                    OpType::Info,
                    &start,
                    Some(target),
                    json!({ "node": target, "leader": leader }),
                );
                // Answers lost for a while: forwards pile up committed and unanswered. Then
                // the follower's connections break and its proposer retries them all on a new
                // one, within their deadline (the harness's --rpc-timeout-ms 5000; every hold
                // is under 6 s, half of it here).
                self.firewall.drop_answers(&node_ip(leader), port, &node_ip(target))?;
                tokio::time::sleep(hold / 2).await;
                self.firewall.heal()?;
                self.firewall
                    .abort_connections(&node_ip(target), &node_ip(leader), port)?;
                tokio::time::sleep(hold / 2).await;
                self.recorder
                    .record(NEMESIS, OpType::Info, &stop, Some(target), json!({ "node": target }));
            }
            Fault::RestartAll => {
                self.recorder.record(NEMESIS, OpType::Info, &start, None, json!({}));
                let mut cluster = self.cluster.lock().await;
                for id in 1..=n {
                    cluster.kill(id);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                for id in 1..=n {
                    cluster.spawn(id)?;
                }
                drop(cluster);
                tokio::time::sleep(hold).await;
                self.recorder.record(NEMESIS, OpType::Info, &stop, None, json!({}));
            }
        }
        Ok(())
    }
}

/// Fisher–Yates with the run's seeded generator.
fn shuffle(ids: &mut [u64], rng: &mut StdRng) {
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.random_range(0..=i));
    }
}
