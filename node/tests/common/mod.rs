//! Real `flotilla-node` processes on 127.0.0.1 ports, driven over REST.
//!
//! Waits poll with a deadline (bounded, never a timing assertion): a condition that does not
//! become true in time fails the test with what was last seen.

#![allow(dead_code)]

pub mod metrics_text;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(60);

/// The cluster CA of every test cluster this test binary starts (made once, in a directory
/// that outlives the process's clusters), as the deployments give one to each node.
pub struct TestCa {
    pub ca_file: PathBuf,
    pub ca_key_file: PathBuf,
    pub ca: flotilla_pki::ClusterCa,
}

pub fn test_ca() -> &'static TestCa {
    static CA: std::sync::OnceLock<TestCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("flotilla-test-ca")
            .tempdir()
            .unwrap()
            .keep();
        let (cert, key) = new_ca("test");
        let (ca_file, ca_key_file) = (dir.join("ca.crt"), dir.join("ca.key"));
        std::fs::write(&ca_file, &cert).unwrap();
        std::fs::write(&ca_key_file, &key).unwrap();
        std::fs::set_permissions(&ca_key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ca = flotilla_pki::ClusterCa::from_pem(&cert, &key, "the test CA").unwrap();
        TestCa {
            ca_file,
            ca_key_file,
            ca,
        }
    })
}

/// A new CA's certificate and key (PEM), valid for a year.
pub fn new_ca(name: &str) -> (String, String) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    flotilla_pki::create_ca(name, now_ms, 365 * 24 * 3600 * 1000).unwrap()
}

/// The node arguments that give it the test CA.
pub fn tls_args() -> Vec<String> {
    let ca = test_ca();
    vec![
        "--tls-ca-file".into(),
        ca.ca_file.to_string_lossy().into_owned(),
        "--tls-ca-key-file".into(),
        ca.ca_key_file.to_string_lossy().into_owned(),
    ]
}

/// An HTTP client builder trusting the test CA (what every test client of the API starts from).
pub fn client_builder() -> reqwest::ClientBuilder {
    let trusted = test_ca().ca.trusted().to_vec();
    reqwest::Client::builder().tls_backend_preconfigured(flotilla_pki::ClientTls::new(trusted).rustls_config())
}

/// A TLS connection to the API at `addr` (`127.0.0.1:port`), trusting the test CA: for tests
/// that write HTTP by hand.
pub async fn tls_connect(addr: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = flotilla_pki::ClientTls::new(test_ca().ca.trusted().to_vec()).rustls_config();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    let name = rustls_pki_types::ServerName::try_from(host).unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Channels to the nodes' Raft ports presenting a certificate of the test CA for node
/// `as_node`, as that node would.
pub fn peer_channels(as_node: u64) -> flotilla_node::raft::network::Channels {
    let ca = test_ca();
    let files = flotilla_node::tls::TlsFiles {
        ca_file: ca.ca_file.clone(),
        ca_key_file: ca.ca_key_file.clone(),
        extra_names: Vec::new(),
        from_join: None,
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let tls = flotilla_node::tls::NodeTls::start(&files, as_node, Vec::new(), now_ms).unwrap();
    flotilla_node::raft::network::Channels::new(2_000, None, Some(tls.raft_client().unwrap()))
}

/// A port that is free now, below the kernel's ephemeral range (32768+): a port from that range
/// can be taken by an outgoing connection between this check and the node's bind. Test
/// binaries run one at a time; within one, a counter keeps concurrent tests apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        22_000 + (std::process::id() % 400) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_768, "ran out of test ports");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct NodeProc {
    pub id: u64,
    pub raft_addr: String,
    pub api_addr: String,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    pub extra_args: Vec<String>,
    /// Environment variables set for the process beyond the test's own (e.g. libfaketime's).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl NodeProc {
    /// A node not started yet, of id `id`, with its data and log in `dir` and `extra_args`
    /// alone (no CA, no admin token): for a node that joins by other means.
    pub fn new(id: u64, dir: &std::path::Path, extra_args: Vec<String>) -> NodeProc {
        NodeProc {
            id,
            raft_addr: format!("127.0.0.1:{}", free_port()),
            api_addr: format!("127.0.0.1:{}", free_port()),
            data_dir: dir.join(format!("node-{id}")),
            log_file: dir.join(format!("node-{id}.log")),
            extra_args,
            env: Vec::new(),
            child: None,
        }
    }

    /// Waits up to `within` for the process to exit; its status, or `None` if it still runs.
    pub fn exit_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let status = self.child.as_mut()?.try_wait().unwrap();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the node logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// `https://` unless the node runs `--insecure-plaintext`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.extra_args.iter().any(|a| a == "--insecure-plaintext") {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}{}", self.api_addr, path)
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla-node"))
            .args(["--id", &self.id.to_string()])
            .args(["--data-dir", self.data_dir.to_str().unwrap()])
            .args(["--raft-addr", &self.raft_addr, "--api-addr", &self.api_addr])
            .args([
                "--heartbeat-interval-ms",
                "200",
                "--election-timeout-min-ms",
                "1000",
                "--election-timeout-max-ms",
                "2000",
            ])
            // The tests' process pools run jobs on this host.
            .arg("--process-provider")
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn flotilla-node");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown step of any kind.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        std::process::Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                c.wait().unwrap();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOP (`stop = true`) or SIGCONT: the process freezes or resumes, its sockets stay open.
    pub fn pause(&self, stop: bool) {
        let c = self.child.as_ref().expect("node is running");
        let signal = if stop { "-STOP" } else { "-CONT" };
        std::process::Command::new("kill")
            .args([signal, &c.id().to_string()])
            .status()
            .unwrap();
    }

    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the node's process, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("node is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a Raft request to one node must carry (`raft/addressing.rs`).
#[derive(Clone, Debug)]
pub struct RaftAddress {
    pub cluster_id: Option<String>,
    pub incarnation: flotilla_node::identity::Incarnation,
}

impl RaftAddress {
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        flotilla_node::raft::addressing::address(&mut request, self.cluster_id.as_deref(), self.incarnation);
        request
    }
}

pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    /// Sends the cluster's admin token with every request (when it was pre-shared).
    pub http: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    /// The cluster's admin token: pre-shared (`--admin-token-file`), or the one `cluster init`
    /// handed out; the helpers below send it.
    pub token: std::sync::OnceLock<String>,
    _dir: tempfile::TempDir,
}

/// Where a test cluster's first admin token comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminToken {
    /// A file every node is given (`--admin-token-file`), as the deployments do.
    Preshared,
    /// `cluster init`'s answer, as for an operator who forms a cluster by hand.
    FromInit,
}

/// A client of the harness: trusts `trusted`, sends `headers`, follows no redirect. Pooled
/// connections are dropped long before a node's header deadline closes them, so a request
/// never races a server closing its idle connection.
fn harness_client(
    trusted: &[rustls_pki_types::CertificateDer<'static>],
    headers: reqwest::header::HeaderMap,
) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(flotilla_pki::ClientTls::new(trusted.to_vec()).rustls_config())
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_millis(500))
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Headers that send `token` as `Authorization: Bearer` (none for no token).
pub fn bearer_headers(token: Option<&str>) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(secret) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {secret}").parse().unwrap(),
        );
    }
    headers
}

impl Cluster {
    /// Starts `n` nodes; node 1 bootstraps and the others are added as voters.
    pub async fn start(n: u64, extra_args: &[&str]) -> Cluster {
        let c = Cluster::spawn(n, extra_args).await;
        c.form().await;
        c
    }

    /// Starts `n` nodes, node `id` with the arguments `args_of(id, dir)` (`dir`: the cluster's
    /// temporary directory), and forms the cluster as `start` does.
    pub async fn start_each(n: u64, args_of: impl Fn(u64, &std::path::Path) -> Vec<String>) -> Cluster {
        let c = Cluster::spawn_each(n, args_of).await;
        c.form().await;
        c
    }

    /// Node 1 founds the cluster and adds the others as voters.
    pub async fn form(&self) {
        let r = self.post(1, "/v1/cluster/init", json!({})).await;
        assert_eq!(r.0, 201, "init: {}", r.1);
        if r.1["admin_token_preshared"] != true {
            let token = r.1["admin_token"]
                .as_str()
                .unwrap_or_else(|| panic!("init handed out no admin token: {}", r.1));
            let _ = self.token.set(token.to_string());
        }
        self.wait_leader_among(&[1]).await;
        for id in 2..=self.nodes.len() as u64 {
            let (raft, api) = (self.node(id).raft_addr.clone(), self.node(id).api_addr.clone());
            let r = self
                .post(
                    1,
                    "/v1/cluster/members",
                    json!({ "id": id, "raft_addr": raft, "api_addr": api }),
                )
                .await;
            assert!(r.0 == 201 || r.0 == 200, "add member {id}: {} {}", r.0, r.1);
        }
    }

    /// `start` with the first admin token from `admin`.
    pub async fn start_with(n: u64, extra_args: &[&str], admin: AdminToken) -> Cluster {
        let c = Cluster::spawn_admin(n, extra_args, admin).await;
        c.form().await;
        c
    }

    /// Starts `n` nodes and waits until each answers HTTP, without forming a cluster.
    pub async fn spawn(n: u64, extra_args: &[&str]) -> Cluster {
        Cluster::spawn_admin(n, extra_args, AdminToken::Preshared).await
    }

    async fn spawn_admin(n: u64, extra_args: &[&str], admin: AdminToken) -> Cluster {
        let args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let args_of = move |_: u64, dir: &std::path::Path| {
            let mut args = args.clone();
            // A cluster's workers live in a directory of its own unless the test names one:
            // worker names (`j<job>-a<attempt>`) restart with every new cluster.
            if !args.iter().any(|a| a == "--process-work-dir") {
                args.extend([
                    "--process-work-dir".to_string(),
                    dir.join("workers").to_string_lossy().into_owned(),
                ]);
            }
            args
        };
        Cluster::spawn_with(n, args_of, admin).await
    }

    /// `spawn` with each node's arguments from `args_of(id, dir)`; every node is given the
    /// cluster's pre-shared admin token.
    pub async fn spawn_each(n: u64, args_of: impl Fn(u64, &std::path::Path) -> Vec<String>) -> Cluster {
        Cluster::spawn_with(n, args_of, AdminToken::Preshared).await
    }

    /// `spawn_each` with the first admin token from `admin`. Every node is given the test CA
    /// unless its arguments say `--insecure-plaintext` or name a CA of their own.
    pub async fn spawn_with(
        n: u64,
        args_of: impl Fn(u64, &std::path::Path) -> Vec<String>,
        admin: AdminToken,
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let token = std::sync::OnceLock::new();
        let mut preshared_args = Vec::new();
        if admin == AdminToken::Preshared {
            use std::os::unix::fs::PermissionsExt;
            let secret = flotilla_node::auth::TokenSecret::generate().reveal().to_string();
            let file = dir.path().join("admin-token");
            std::fs::write(&file, format!("{secret}\n")).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            preshared_args = vec!["--admin-token-file".to_string(), file.to_string_lossy().into_owned()];
            token.set(secret).unwrap();
        }
        let nodes = (1..=n)
            .map(|id| NodeProc {
                id,
                raft_addr: format!("127.0.0.1:{}", free_port()),
                api_addr: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("node-{id}")),
                log_file: dir.path().join(format!("node-{id}.log")),
                extra_args: {
                    let own = args_of(id, dir.path());
                    let tls = if own.iter().any(|a| a == "--insecure-plaintext" || a == "--tls-ca-file") {
                        Vec::new()
                    } else {
                        tls_args()
                    };
                    preshared_args.iter().cloned().chain(tls).chain(own).collect()
                },
                env: Vec::new(),
                child: None,
            })
            .collect();
        let trusted = test_ca().ca.trusted().to_vec();
        let mut c = Cluster {
            nodes,
            http: harness_client(&trusted, bearer_headers(token.get().map(String::as_str))),
            anonymous: harness_client(&trusted, Default::default()),
            token,
            _dir: dir,
        };
        for node in &mut c.nodes {
            node.spawn();
        }
        for id in 1..=n {
            c.wait_http(id).await;
        }
        c
    }

    /// Makes the harness's clients trust `certificates` (instead of the test CA alone).
    pub fn trust(&mut self, certificates: Vec<rustls_pki_types::CertificateDer<'static>>) {
        self.http = harness_client(&certificates, bearer_headers(self.token.get().map(String::as_str)));
        self.anonymous = harness_client(&certificates, Default::default());
    }

    /// Restarts node `id` with an empty data directory and `args` instead of its former ones.
    pub fn wipe_and_restart(&mut self, id: u64, args: Vec<String>) {
        let node = self.node_mut(id);
        node.kill9();
        std::fs::remove_dir_all(&node.data_dir).expect("wipe the data directory");
        node.extra_args = args;
        node.spawn();
    }

    /// The cluster's temporary directory (data directories, logs, workers).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[(id - 1) as usize]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- node {} ---\n{}",
                    n.id,
                    std::fs::read_to_string(&n.log_file).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub async fn wait_http(&self, id: u64) {
        let url = self.node(id).url("/v1/health/live");
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {id} never answered\n{}", self.logs());
    }

    /// A client of its own (no pooled connection shared with the others) that sends the
    /// cluster's admin token.
    pub fn new_client(&self) -> reqwest::Client {
        client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(bearer_headers(self.token.get().map(String::as_str)))
            .build()
            .unwrap()
    }

    /// `request` with the cluster's admin token, once there is one.
    pub fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.token.get() {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends what `build` makes for `url` with the admin token, and again to the `Location` of
    /// a redirect (to the leader), at most 3 times. reqwest would follow it itself, but drops
    /// the Authorization header when the port changes, as every client should.
    async fn send_following(&self, url: String, build: impl Fn(&str) -> reqwest::RequestBuilder) -> (u16, Value) {
        let mut url = url;
        for _ in 0..4 {
            match self.authorized(build(&url)).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let location = r
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    match location {
                        Some(next) if status == 307 || status == 308 => url = next,
                        _ => return (status, r.json().await.unwrap_or(Value::Null)),
                    }
                }
                Err(e) => return (0, json!({ "transport_error": e.to_string() })),
            }
        }
        (0, json!({ "transport_error": "more than 3 redirects" }))
    }

    pub async fn get(&self, id: u64, path: &str) -> (u16, Value) {
        self.send_following(self.node(id).url(path), |url| self.http.get(url))
            .await
    }

    /// The text node `id` answers at `path` (job output, a console page), as the admin.
    pub async fn get_text(&self, id: u64, path: &str) -> String {
        self.authorized(self.http.get(self.node(id).url(path)))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The console page at `path` of node `id`, as a browser signed in with the admin token
    /// reads it.
    pub async fn console_page(&self, id: u64, path: &str) -> String {
        let token = self.token.get().expect("the cluster's admin token").clone();
        let r = self
            .anonymous
            .post(self.node(id).url("/ui/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&next=%2Fui%2Fcluster"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "signing in to the console");
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        self.anonymous
            .get(self.node(id).url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn put(&self, id: u64, path: &str, body: Value) -> (u16, Value) {
        self.send_following(self.node(id).url(path), |url| self.http.put(url).json(&body))
            .await
    }

    pub async fn delete(&self, id: u64, path: &str) -> (u16, Value) {
        self.send_following(self.node(id).url(path), |url| self.http.delete(url))
            .await
    }

    pub async fn post(&self, id: u64, path: &str, body: Value) -> (u16, Value) {
        self.post_with(id, path, body, &[]).await
    }

    pub async fn post_with(&self, id: u64, path: &str, body: Value, headers: &[(&str, &str)]) -> (u16, Value) {
        self.send_following(self.node(id).url(path), |url| {
            headers
                .iter()
                .fold(self.http.post(url).json(&body), |req, (k, v)| req.header(*k, *v))
        })
        .await
    }

    /// How node `id`'s peers address its Raft port: its incarnation and its cluster, as it
    /// reports them at `GET /v1/cluster`.
    pub async fn raft_address(&self, id: u64) -> RaftAddress {
        let (status, view) = self.get(id, "/v1/cluster").await;
        assert_eq!(status, 200, "node {id}'s identity: {view}");
        let incarnation = u64::from_str_radix(view["incarnation"].as_str().expect("an incarnation"), 16)
            .expect("the incarnation is hexadecimal");
        RaftAddress {
            cluster_id: view["cluster_id"].as_str().map(str::to_string),
            incarnation: flotilla_node::identity::Incarnation(incarnation),
        }
    }

    /// A gRPC request to node `id`'s Raft port addressed as its peers address it.
    pub async fn raft_request<T>(&self, id: u64, message: T) -> tonic::Request<T> {
        self.raft_address(id).await.request(message)
    }

    /// Polls until `check` holds for the value of GET `path` on node `id`.
    pub async fn wait_get(&self, id: u64, path: &str, what: &str, check: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut last = (0, Value::Null);
        while Instant::now() < deadline {
            last = self.get(id, path).await;
            if check(last.0, &last.1) {
                return last.1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "node {id}: {what} never happened; last GET {path}: {} {}\n{}",
            last.0,
            last.1,
            self.logs()
        );
    }

    /// Moves leadership to node `to` (of nodes 1..=3) and waits until all three agree. A
    /// transfer to a node that has just restarted can time out while it catches up (seen on a
    /// loaded CI machine): it is asked again until `WAIT` has passed.
    pub async fn lead(&self, to: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let via = self.wait_leader_among(&[1, 2, 3]).await;
            if via == to {
                break;
            }
            let (s, v) = self.post(via, "/v1/cluster/transfer-leader", json!({ "to": to })).await;
            if s == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "leadership never moved to node {to}: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(self.wait_leader_among(&[1, 2, 3]).await, to);
    }

    /// Waits until every live node among `ids` reports the same leader, also among `ids`.
    pub async fn wait_leader_among(&self, ids: &[u64]) -> u64 {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let mut leaders = Vec::new();
            for id in ids {
                leaders.push(self.get(*id, "/v1/cluster").await.1["leader"].as_u64());
            }
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && ids.contains(l)
            {
                return *l;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no common leader among {ids:?}\n{}", self.logs());
    }

    /// Waits until nodes 1..=n answer the same applied index and state digest (`what` names
    /// the moment in the failure message).
    pub async fn wait_digests_agree(&self, n: u64, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut digests = Vec::new();
            for id in 1..=n {
                let d = self.get(id, "/v1/cluster/state-digest").await.1;
                digests.push((d["applied_index"].as_u64(), d["digest"].as_str().map(str::to_string)));
            }
            if digests.windows(2).all(|w| w[0] == w[1]) && digests[0].1.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas disagree {what}: {digests:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn register_pool(&self, id: u64) {
        let pool = json!({ "name": "main", "provider": "process", "capacity": { "cpu_millis": 8000, "memory_mib": 16384 }, "max_workers": 16 });
        let r = self.post(id, "/v1/pools", pool).await;
        assert!(r.0 == 201 || r.0 == 200, "register pool: {} {}", r.0, r.1);
    }

    /// Submits a one-job pipeline and returns its id.
    pub async fn submit(&self, id: u64, name: &str, key: Option<&str>) -> (u16, Value) {
        let body = pipeline(name);
        match key {
            Some(k) => {
                self.post_with(id, "/v1/pipelines", body, &[("Idempotency-Key", k)])
                    .await
            }
            None => self.post(id, "/v1/pipelines", body).await,
        }
    }
}

pub fn pipeline(name: &str) -> Value {
    json!({ "name": name, "jobs": [job_spec("build", json!({ "steps": ["echo hi"] }))] })
}

/// One job of a pipeline spec, as JSON: a step `true`, 100 millicpu and 64 MiB, with each of
/// `fields` (an object: steps, needs, image, resources, constraints, retry...) set over them.
pub fn job_spec(name: &str, fields: Value) -> Value {
    let mut job = json!({ "name": name, "steps": ["true"], "resources": { "cpu_millis": 100, "memory_mib": 64 } });
    for (key, value) in fields.as_object().cloned().unwrap_or_default() {
        job[key] = value;
    }
    job
}

/// A `--secrets-key-file` in `dir` holding one fresh key, mode 0600; its path.
pub fn secrets_key_file(dir: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let bytes: [u8; 32] = rand::random();
    let key = format!("fsk_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let path = dir.join("secrets.key");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_string()
}
