//! `flotilla dev`: a local cluster for trying Flotilla, on 127.0.0.1 ports, in the foreground.
//!
//! The data directory is kept, so running `flotilla dev` again resumes the same cluster. The
//! nodes ask for tokens, as everywhere: the admin token is made on the first run, kept in the
//! data directory (`admin-token`, mode 0600) and pre-shared with every node. They talk TLS,
//! as everywhere: a cluster CA is made on the first run and kept beside it (`tls/ca.crt`,
//! `tls/ca.key`), and so is the key of its secrets (`secrets.key`, mode 0600).

use crate::client::Client;
use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct DevArgs {
    /// Number of nodes (1, 3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Node N listens for Raft on BASE+N and for the API on BASE+1000+N.
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
    /// Where the nodes keep their data and logs.
    #[arg(long, default_value = ".flotilla-dev")]
    data_dir: PathBuf,
    /// The flotilla-node binary; by default the one next to this program.
    #[arg(long)]
    node_binary: Option<PathBuf>,
    /// Run this pipeline file, print its progress and logs, then stop the cluster; the exit
    /// status says whether the pipeline succeeded.
    #[arg(long)]
    run: Option<PathBuf>,
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    /// Asks every node to stop (SIGTERM), then waits for it.
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if ![1, 3, 5].contains(&args.nodes) {
        bail!("--nodes must be 1, 3 or 5");
    }
    let binary = match &args.node_binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no parent directory")?
            .join("flotilla-node"),
    };
    if !binary.exists() {
        bail!(
            "{} not found; build it with `cargo build --bin flotilla-node` or pass --node-binary",
            binary.display()
        );
    }
    std::fs::create_dir_all(&args.data_dir)?;
    // The cluster's admin token, pre-shared with every node: made on the first run, kept
    // with the data (mode 0600) for the next.
    let token_file = args.data_dir.join("admin-token");
    if !token_file.exists() {
        flotilla_cli::write_private(&token_file, &format!("{}\n", flotilla_cli::token_secret()))
            .with_context(|| format!("writing {}", token_file.display()))?;
    }
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading {}", token_file.display()))?
        .trim()
        .to_string();
    let tls_dir = args.data_dir.join("tls");
    let (ca_file, ca_key_file) = (tls_dir.join("ca.crt"), tls_dir.join("ca.key"));
    if !ca_file.exists() {
        crate::tls::run(&crate::tls::TlsCmd::CaCreate {
            out: tls_dir.clone(),
            name: "flotilla-dev".into(),
            days: 3650,
        })?;
    }
    // The secrets' key-encryption key, shared by every node.
    let secrets_key_file = args.data_dir.join("secrets.key");
    if !secrets_key_file.exists() {
        flotilla_cli::write_private(&secrets_key_file, &format!("{}\n", flotilla_cli::secrets_key()))
            .with_context(|| format!("writing {}", secrets_key_file.display()))?;
    }
    let addr = |n: u64, offset: u16| format!("127.0.0.1:{}", args.base_port + offset + n as u16);
    let mut nodes = Nodes(Vec::new());
    for n in 1..=args.nodes {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(args.data_dir.join(format!("node-{n}.log")))?;
        let child = Command::new(&binary)
            .args([
                "--id",
                &n.to_string(),
                "--raft-addr",
                &addr(n, 0),
                "--api-addr",
                &addr(n, 1000),
            ])
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("node-{n}")))
            .arg("--process-provider")
            .arg("--process-work-dir")
            .arg(args.data_dir.join("workers"))
            .arg("--admin-token-file")
            .arg(&token_file)
            .arg("--tls-ca-file")
            .arg(&ca_file)
            .arg("--tls-ca-key-file")
            .arg(&ca_key_file)
            .arg("--secrets-key-file")
            .arg(&secrets_key_file)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        nodes.0.push(child);
    }
    let servers: Vec<String> = (1..=args.nodes).map(|n| addr(n, 1000)).collect();
    let first = Client::new(&servers[0], Some(&token), Some(&ca_file))?;
    let all = Client::new(&servers.join(","), Some(&token), Some(&ca_file))?;
    wait("node 1 to answer", || async {
        first.get("/v1/health/live").await.is_ok()
    })
    .await?;
    let status = first.get("/v1/cluster").await?;
    if status["members"].as_array().is_none_or(|m| m.is_empty()) {
        eprintln!(
            "bootstrapping a new {}-node cluster in {}",
            args.nodes,
            args.data_dir.display()
        );
        first.post("/v1/cluster/init", &json!({})).await?;
        wait("node 1 to lead", || async {
            first.get("/v1/health/ready").await.is_ok()
        })
        .await?;
        for n in 2..=args.nodes {
            let body = json!({ "id": n, "raft_addr": addr(n, 0), "api_addr": addr(n, 1000) });
            wait(&format!("node {n} to join"), || async {
                first.post("/v1/cluster/members", &body).await.is_ok()
            })
            .await?;
        }
    } else {
        eprintln!("resuming the cluster in {}", args.data_dir.display());
    }
    wait("a leader", || async { all.get("/v1/health/ready").await.is_ok() }).await?;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let pool = json!({
        "name": "local", "provider": "process", "max_workers": 4,
        "capacity": { "cpu_millis": cpus * 1000, "memory_mib": 4096 }
    });
    all.post("/v1/pools", &pool)
        .await
        .context("registering the local process pool")?;

    if let Some(file) = &args.run {
        let (body, content_type) = crate::commands::pipeline_file(file)?;
        let submitted = all.post_raw("/v1/pipelines", body, content_type, &[]).await?;
        let id = submitted["pipeline"]
            .as_u64()
            .context("the server returned no pipeline id")?;
        println!("pipeline {id} submitted to a {}-node cluster", args.nodes);
        let state = crate::wait::follow(&all, id).await?;
        drop(nodes);
        anyhow::ensure!(state == "SUCCEEDED", "pipeline {id} ended {state}");
        return Ok(());
    }
    println!(
        "Flotilla dev cluster is up: {} nodes, process pool `local`.",
        args.nodes
    );
    println!("  export FLOTILLA_ADDR={}", servers.join(","));
    println!(
        "  export FLOTILLA_CA_FILE={}   # the cluster CA",
        std::path::absolute(&ca_file).unwrap_or(ca_file.clone()).display()
    );
    println!(
        "  export FLOTILLA_TOKEN=$(cat {})   # the cluster's admin token",
        token_file.display()
    );
    println!("  flotilla cluster status");
    println!("  flotilla pipeline submit -f examples/hello.yaml --wait");
    println!("  flotilla pipeline list");
    println!(
        "Console: https://{}/ui (sign in with the admin token; the browser must trust the CA above, or accept it once)",
        servers[0]
    );
    println!(
        "Node logs: {}/node-N.log. Ctrl-C stops the cluster; its data stays for next time.",
        args.data_dir.display()
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("stopping");
    drop(nodes);
    Ok(())
}

async fn wait<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("timed out waiting for {what}")
}
