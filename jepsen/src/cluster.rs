//! The cluster under test: real `flotilla-node` processes on this host, node `i` on its own
//! loopback address `127.0.0.(10+i)` so that traffic between two nodes can be cut by address
//! (nodes on loopback pin the source address of their Raft connections to their own).

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: u64,
    pub node_bin: PathBuf,
    pub dir: PathBuf,
    /// Raft listens on `base_port`, the API on `base_port + 1`, each on the node's address.
    pub base_port: u16,
    /// Every node as on a host of its own (`--host-id h<i>`, a process work directory of its
    /// own): a leader sees only the workers it created itself. Otherwise they share one.
    pub separate_hosts: bool,
}

pub struct Node {
    pub id: u64,
    pub ip: String,
    child: Option<Child>,
    pub paused: bool,
    /// Seconds this node's wall clock runs ahead (or behind) while it is skewed (libfaketime).
    pub clock_skew_s: Option<i64>,
}

pub struct Cluster {
    pub config: ClusterConfig,
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
}

/// A token secret as flotilla-node accepts one: `flt_` and 64 hex digits.
fn token_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("flt_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A TLS client configuration (rustls over ring) that trusts the certificates in `ca_file`
/// and nothing else.
fn trusting(ca_file: &Path) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("reading {}", ca_file.display()))?
    {
        roots.add(cert.with_context(|| format!("a certificate in {}", ca_file.display()))?)?;
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn node_ip(id: u64) -> String {
    format!("127.0.0.{}", 10 + id)
}

/// The host node `id` stands for when every node is on a host of its own.
pub fn host_id(id: u64) -> String {
    format!("h{id}")
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(config.dir.join("nodes"))?;
        let nodes = (1..=config.nodes)
            .map(|id| Node {
                id,
                ip: node_ip(id),
                child: None,
                paused: false,
                clock_skew_s: None,
            })
            .collect();
        // The cluster asks for tokens, as deployed: every node is given one pre-shared admin
        // token, and every request of the harness carries it. Redirects are not followed (the
        // token would be dropped on the way); a membership change that meets one is retried.
        let secret = token_secret();
        let token_file = config.dir.join("admin-token");
        std::fs::write(&token_file, format!("{secret}\n"))?;
        std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let mut headers = reqwest::header::HeaderMap::new();
        let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {secret}"))?;
        bearer.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, bearer);
        // TLS, as deployed: a cluster CA made by the product's own `flotilla tls ca-create`
        // (the CLI beside the node binary), given to every node; the harness trusts it alone.
        let tls_dir = config.dir.join("tls");
        if !tls_dir.join("ca.crt").exists() {
            let cli = config.node_bin.with_file_name("flotilla");
            let made = Command::new(&cli)
                .args(["tls", "ca-create", "--name", "jepsen", "--out"])
                .arg(&tls_dir)
                .stdout(Stdio::null())
                .status()
                .with_context(|| format!("running {} (built beside flotilla-node)", cli.display()))?;
            anyhow::ensure!(made.success(), "`flotilla tls ca-create` failed: {made}");
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(trusting(&tls_dir.join("ca.crt"))?)
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()?;
        Ok(Cluster { config, nodes, http })
    }

    pub fn api(&self, id: u64) -> String {
        format!("https://{}:{}", node_ip(id), self.config.base_port + 1)
    }

    /// The process work directory of node `id`.
    pub fn workers_dir(&self, id: u64) -> PathBuf {
        if self.config.separate_hosts {
            self.config.dir.join("hosts").join(host_id(id)).join("workers")
        } else {
            self.config.dir.join("workers")
        }
    }

    /// Every process work directory of the run (one, or one per node).
    pub fn workers_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = (1..=self.config.nodes).map(|id| self.workers_dir(id)).collect();
        dirs.dedup();
        dirs
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let dir = self.config.dir.join("nodes");
        let ip = node_ip(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("n{id}.log")))?;
        let child = Command::new(&self.config.node_bin)
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(dir.join(format!("n{id}")))
            .args(["--raft-addr", &format!("{ip}:{}", self.config.base_port)])
            .args(["--api-addr", &format!("{ip}:{}", self.config.base_port + 1)])
            .arg("--process-provider")
            .arg("--process-work-dir")
            .arg(self.workers_dir(id))
            .arg("--admin-token-file")
            .arg(self.config.dir.join("admin-token"))
            .arg("--tls-ca-file")
            .arg(self.config.dir.join("tls").join("ca.crt"))
            .arg("--tls-ca-key-file")
            .arg(self.config.dir.join("tls").join("ca.key"))
            .args(if self.config.separate_hosts {
                vec!["--host-id".to_string(), host_id(id)]
            } else {
                Vec::new()
            })
            .args([
                "--heartbeat-interval-ms",
                "200",
                "--election-timeout-min-ms",
                "1000",
                "--election-timeout-max-ms",
                "2000",
            ])
            .args(["--leader-tick-ms", "100", "--rpc-timeout-ms", "5000"])
            .envs(clock_skew_env(self.nodes[(id - 1) as usize].clock_skew_s))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.config.node_bin.display()))?;
        let node = self.node_mut(id);
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    pub fn alive(&self, id: u64) -> bool {
        self.nodes[(id - 1) as usize].child.is_some()
    }

    pub fn kill(&mut self, id: u64) {
        let node = self.node_mut(id);
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.paused = false;
    }

    /// Removes node `id`'s data directory (the node must be down): a lost disk.
    pub fn wipe(&mut self, id: u64) -> anyhow::Result<()> {
        anyhow::ensure!(!self.alive(id), "node {id} must be down to lose its disk");
        let dir = self.config.dir.join("nodes").join(format!("n{id}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
        Ok(())
    }

    /// Restarts node `id` with its wall clock `skew_s` seconds off (`None`: the true clock).
    pub fn restart_skewed(&mut self, id: u64, skew_s: Option<i64>) -> anyhow::Result<()> {
        anyhow::ensure!(
            skew_s.is_none() || Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: apt-get install -y faketime"
        );
        self.kill(id);
        self.node_mut(id).clock_skew_s = skew_s;
        self.spawn(id)
    }

    /// Asks the leader to hand leadership to node `to`; false if it did not.
    pub async fn transfer_leader(&self, to: u64) -> bool {
        let Some(leader) = self.leader().await else {
            return false;
        };
        self.http
            .post(format!("{}/v1/cluster/transfer-leader", self.api(leader)))
            .json(&json!({ "to": to }))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    pub fn signal(&mut self, id: u64, stop: bool) {
        let node = self.node_mut(id);
        if let Some(child) = &node.child {
            let sig = if stop { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
            node.paused = stop;
        }
    }

    async fn wait_http(&self, id: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self
                .http
                .get(format!("{}/v1/health/live", self.api(id)))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("node {id} never answered")
    }

    /// The body that adds node `id` to the cluster.
    fn member(&self, id: u64) -> Value {
        json!({ "id": id, "raft_addr": format!("{}:{}", node_ip(id), self.config.base_port), "api_addr": format!("{}:{}", node_ip(id), self.config.base_port + 1) })
    }

    /// Starts every node, bootstraps node 1, adds the others, registers the pool.
    pub async fn form(&mut self, pool: Value) -> anyhow::Result<()> {
        for id in 1..=self.config.nodes {
            self.spawn(id)?;
        }
        for id in 1..=self.config.nodes {
            self.wait_http(id).await?;
        }
        let r = self
            .http
            .post(format!("{}/v1/cluster/init", self.api(1)))
            .json(&json!({}))
            .send()
            .await?;
        anyhow::ensure!(r.status().as_u16() == 201, "init: {}", r.text().await?);
        // Node 1 alone is the cluster until the others are added.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v: Value = self
                .http
                .get(format!("{}/v1/cluster", self.api(1)))
                .send()
                .await?
                .json()
                .await?;
            if v["leader"].as_u64() == Some(1) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "node 1 never became leader after init");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for id in 2..=self.config.nodes {
            let body = self.member(id);
            let r = self
                .http
                .post(format!("{}/v1/cluster/members", self.api(1)))
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "adding node {id}: {}", r.text().await?);
        }
        let r = self
            .http
            .post(format!("{}/v1/pools", self.api(1)))
            .json(&pool)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "registering the pool: {}", r.text().await?);
        Ok(())
    }

    /// The leader a majority of live, unpaused nodes agree on.
    pub async fn leader(&self) -> Option<u64> {
        let mut votes: std::collections::BTreeMap<u64, usize> = Default::default();
        for n in self.nodes.iter().filter(|n| n.child.is_some() && !n.paused) {
            let Ok(r) = self
                .http
                .get(format!("{}/v1/cluster", self.api(n.id)))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            else {
                continue;
            };
            if let Ok(v) = r.json::<Value>().await
                && let Some(l) = v["leader"].as_u64()
            {
                *votes.entry(l).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .find(|(_, c)| *c as u64 > self.config.nodes / 2)
            .map(|(l, _)| l)
    }

    pub async fn wait_leader(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("no leader within {within:?}")
    }

    /// Removes node `id` from the cluster (through the leader).
    pub async fn remove_member(&self, id: u64) -> anyhow::Result<()> {
        let leader = self.leader().await.context("no leader to remove a member")?;
        let r = self
            .http
            .delete(format!("{}/v1/cluster/members/{id}", self.api(leader)))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "removing node {id}: {}", r.text().await?);
        Ok(())
    }

    /// Adds every node the leader does not list as a voter back to the cluster.
    pub async fn ensure_members(&self) -> anyhow::Result<()> {
        let leader = self.leader().await.context("no leader to add members")?;
        let status: Value = self
            .http
            .get(format!("{}/v1/cluster", self.api(leader)))
            .send()
            .await?
            .json()
            .await?;
        let voters: Vec<u64> = status["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["voter"] == true)
            .filter_map(|m| m["id"].as_u64())
            .collect();
        // A voter whose data directory was lost is refused by its peers: ask each voter whether
        // it is still the incarnation the membership records.
        let mut missing: Vec<u64> = (1..=self.config.nodes).filter(|id| !voters.contains(id)).collect();
        for id in voters.iter().copied().filter(|id| self.alive(*id)) {
            let recorded = status["members"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["id"] == id)
                .and_then(|m| m["incarnation"].as_str().map(str::to_string));
            let own: Option<Value> = match self.http.get(format!("{}/v1/cluster", self.api(id))).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            let own = own.as_ref().and_then(|v| v["incarnation"].as_str().map(str::to_string));
            if own.is_some() && own != recorded {
                self.remove_member(id).await?;
                missing.push(id);
            }
        }
        for id in missing {
            let body = self.member(id);
            let add = || {
                self.http
                    .post(format!("{}/v1/cluster/members", self.api(leader)))
                    .timeout(Duration::from_secs(60))
                    .json(&body)
                    .send()
            };
            let r = add().await?;
            if r.status().is_success() {
                continue;
            }
            let text = r.text().await?;
            // A learner (a membership fault's add that did not finish) whose disk was then
            // lost: its old self goes first, as for a voter.
            anyhow::ensure!(text.contains("\"data_lost\""), "adding node {id} back: {text}");
            self.remove_member(id).await?;
            let r = add().await?;
            anyhow::ensure!(r.status().is_success(), "adding node {id} back: {}", r.text().await?);
        }
        Ok(())
    }

    pub fn stop_all(&mut self) {
        for id in 1..=self.config.nodes {
            self.signal(id, false);
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Debian's libfaketime, which shifts one process's wall clock (and only the wall clock: the
/// node's timers run on the monotonic one).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The environment that runs a process with its wall clock `skew_s` seconds off.
fn clock_skew_env(skew_s: Option<i64>) -> Vec<(&'static str, String)> {
    match skew_s {
        None => Vec::new(),
        Some(s) => vec![
            ("LD_PRELOAD", LIBFAKETIME.to_string()),
            ("FAKETIME", format!("{s:+}s")),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ],
    }
}

/// Worker directories and worker processes of the process provider under `dirs`.
pub fn leftover_workers(dirs: &[PathBuf]) -> (Vec<String>, Vec<String>) {
    let mut left = (Vec::new(), Vec::new());
    for dir in dirs {
        let (d, p) = leftover_workers_in(dir);
        left.0.extend(d.into_iter().map(|n| format!("{}/{n}", dir.display())));
        left.1.extend(p);
    }
    left
}

fn leftover_workers_in(dir: &Path) -> (Vec<String>, Vec<String>) {
    let dirs = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('j'))
                .collect()
        })
        .unwrap_or_default();
    let pattern = format!("{}/j", dir.display());
    let procs = Command::new("pgrep")
        .args(["-a", "-f", &pattern])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default();
    (dirs, procs)
}
