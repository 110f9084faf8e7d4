//! The REST-backed commands: cluster, pipeline, job, pool.

use crate::CliCommand;
use crate::client::Client;
use crate::output::{self, Format, cell};
use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Bootstrap a new cluster on the first --server (run once, on one node).
    Init,
    /// Show members, leader, term and log indexes.
    Status,
    /// Add a node (as learner, then voter once caught up).
    Add {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        raft_addr: String,
        #[arg(long)]
        api_addr: String,
    },
    /// Remove a node from the cluster.
    Remove { id: u64 },
    /// Hand leadership to another voter.
    TransferLeader { id: u64 },
    /// Make a single-use join token (admin): a new node started with it (--join-token, and
    /// the printed --join-ca-sha256) fetches the cluster CA and is added, with no CA files or
    /// admin token of its own.
    #[command(name = "join-token")]
    JoinToken {
        /// Seconds the token may be used for (at most 86400).
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
    },
}

#[derive(Subcommand)]
pub enum PipelineCmd {
    /// Submit a pipeline file (YAML if it ends in .yaml or .yml, else JSON).
    Submit {
        #[arg(long, short)]
        file: PathBuf,
        /// Retrying with the same key returns the first submission instead of creating another.
        /// Without one, a key is drawn for this invocation (so the CLI's own resends to another
        /// server are safe); give one to make separate invocations the same submission.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The tenant to submit in. Default: `default`, or the token's only tenant when it
        /// is scoped to one.
        #[arg(long)]
        tenant: Option<String>,
        /// Follow the pipeline until it ends, then print its jobs' logs; exit 1 unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    Get {
        id: u64,
    },
    List(ListArgs),
    Cancel {
        id: u64,
    },
    /// Run a settled pipeline again (same spec and commit), linked to it; with --failed only
    /// the jobs that did not succeed and what depends on them.
    Rerun {
        id: u64,
        #[arg(long)]
        failed: bool,
    },
}

#[derive(Subcommand)]
pub enum JobCmd {
    Get {
        id: u64,
    },
    List {
        #[command(flatten)]
        list: ListArgs,
        #[arg(long)]
        pipeline: Option<u64>,
    },
    /// Print the job's committed output.
    Logs {
        id: u64,
        /// Keep printing output as it arrives, until the job has finished.
        #[arg(long, short)]
        follow: bool,
    },
    Cancel {
        id: u64,
    },
    /// Approve a manual job (AWAITING_APPROVAL) whose needs succeeded: it runs once placed.
    /// Takes a submitter of its tenant, or the job's `approval_role`.
    Approve {
        id: u64,
    },
    /// Why the job waits: what holds it back, in the scheduler's order, and each pool's verdict.
    Why {
        id: u64,
    },
    /// What the job kept as artifacts (digest, size, expiry, files); `--save` saves the
    /// archive (a tar compressed with zstd), `--extract` unpacks it into a directory. Either
    /// checks the bytes against the artifact's digest.
    Artifacts {
        id: u64,
        /// Save the archive to this file (it must not exist).
        #[arg(long, conflicts_with = "extract")]
        save: Option<std::path::PathBuf>,
        /// Unpack the files into this directory (created if missing).
        #[arg(long)]
        extract: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum PoolCmd {
    Register {
        #[arg(long)]
        name: String,
        /// process, docker, kubernetes or sim
        #[arg(long, default_value = "process")]
        provider: String,
        #[command(flatten)]
        capacity: ResourcesArgs,
        #[arg(long)]
        max_workers: u32,
        /// Pool label, `key=value`; repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Provider setting, `key=value` (the first `=` splits); repeatable. Kubernetes:
        /// node_selector, service_account, image_pull_secrets, tolerations.
        #[arg(long = "setting")]
        settings: Vec<String>,
    },
    List,
    /// Place nothing more on a pool (its running jobs finish), or with --undo place again
    /// (operator).
    Drain {
        name: String,
        #[arg(long)]
        undo: bool,
    },
    /// Remove a pool that runs no worker (drain it first; operator).
    Remove {
        name: String,
    },
}

/// An amount of each resource: a pool's capacity, a tenant's quota.
#[derive(Args)]
pub struct ResourcesArgs {
    #[arg(long)]
    pub cpu_millis: u64,
    #[arg(long)]
    pub memory_mib: u64,
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
}

impl ResourcesArgs {
    pub fn json(&self) -> Value {
        json!({ "cpu_millis": self.cpu_millis, "memory_mib": self.memory_mib, "gpus": self.gpus })
    }
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create the cluster's first admin token (once; `cluster init` does it too). Prints its
    /// secret, which is shown this once.
    Bootstrap {
        /// Use this secret (`flt_` and 64 hex digits) instead of a random one, read from the
        /// file (a deployment's pre-shared secret).
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Print a new random token secret (`flt_` and 64 hex digits), made here and sent
    /// nowhere: a deployment's pre-shared admin token (flotilla-node --admin-token-file).
    Generate,
    /// Create a token (admin). Prints its secret, which is shown this once.
    Create {
        #[arg(long)]
        name: String,
        /// viewer, submitter, operator or admin
        #[arg(long)]
        role: String,
        /// A tenant it may act in; repeatable; none: every tenant.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Lifetime in seconds; none: until revoked.
        #[arg(long)]
        ttl_s: Option<u64>,
    },
    /// List tokens (admin): names, roles, tenants and expiries, never secrets.
    List,
    /// Revoke a token (admin): no node accepts it from then on.
    Revoke { id: String },
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    state: Option<String>,
    /// Only this tenant's (within the token's tenants).
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Show items after this id (the `next_after` of the previous page).
    #[arg(long)]
    after: Option<u64>,
    /// Read through the leader's read index instead of this node's applied state.
    #[arg(long)]
    linearizable: bool,
}

impl ListArgs {
    /// The list's query string, every value percent-encoded.
    fn query(&self, extra: &[(&str, String)]) -> String {
        let mut url = reqwest::Url::parse("http://query.invalid/").expect("a constant URL");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &self.limit.to_string());
            if let Some(s) = &self.state {
                q.append_pair("state", s);
            }
            if let Some(t) = &self.tenant {
                q.append_pair("tenant", t);
            }
            if let Some(a) = self.after {
                q.append_pair("after", &a.to_string());
            }
            if self.linearizable {
                q.append_pair("consistency", "linearizable");
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url.query().unwrap_or_default().to_string()
    }
}

/// What the job's latest attempt did with its cache, if the job has one: restored or cold,
/// saved or why not.
fn cache_line(job: &Value) -> Option<String> {
    let key = job["spec"]["cache"]["key"].as_str()?;
    let note = job["attempts"].as_array().and_then(|a| a.last()).map(|a| &a["cache"])?;
    let restored = match note["restored"].as_str() {
        Some(digest) => format!("restored {}", &digest[..digest.len().min(12)]),
        None => "nothing restored".to_string(),
    };
    let saved = if let Some(size) = note["saved"]["stored"]["size_bytes"].as_u64() {
        format!("; saved, {size} bytes")
    } else if let Some(reason) = note["saved"]["not_saved"]["reason"].as_str() {
        format!("; not saved: {reason}")
    } else {
        String::new()
    };
    Some(format!("cache {key}: {restored}{saved}"))
}

pub async fn run(client: &Client, format: Format, command: &CliCommand) -> anyhow::Result<()> {
    let show = |v: &Value, table: &dyn Fn(&Value)| {
        if format == Format::Json {
            output::json(v)
        } else {
            table(v)
        }
    };
    match command {
        CliCommand::Cluster(cmd) => match cmd {
            ClusterCmd::Init => show(&client.post("/v1/cluster/init", &json!({})).await?, &|v| {
                println!(
                    "node {} founded cluster {}",
                    cell(&v["initialized"]),
                    cell(&v["cluster_id"])
                );
                match v["admin_token"].as_str() {
                    Some(token) => {
                        println!("admin token (shown once; keep it, e.g. export FLOTILLA_TOKEN=...):\n{token}")
                    }
                    None if v["admin_token_preshared"] == true => {
                        println!("the first admin token is the pre-shared one (--admin-token-file)")
                    }
                    None => println!("{}", cell(&v["admin_token_error"])),
                }
            }),
            ClusterCmd::Status => show(&client.get("/v1/cluster").await?, &cluster_table),
            ClusterCmd::Add {
                id,
                raft_addr,
                api_addr,
            } => {
                let body = json!({ "id": id, "raft_addr": raft_addr, "api_addr": api_addr });
                show(&client.post("/v1/cluster/members", &body).await?, &|_| {
                    println!("node {id} is a voter")
                });
            }
            ClusterCmd::TransferLeader { id } => {
                let v = client.post("/v1/cluster/transfer-leader", &json!({ "to": id })).await?;
                show(&v, &|_| println!("node {id} leads"));
            }
            ClusterCmd::Remove { id } => {
                let v = client
                    .request(Method::DELETE, &format!("/v1/cluster/members/{id}"), None, &[])
                    .await?;
                show(&v, &|_| println!("node {id} removed"));
            }
            ClusterCmd::JoinToken { ttl_s } => {
                let v = client
                    .post("/v1/cluster/join-tokens", &json!({ "ttl_s": ttl_s }))
                    .await?;
                show(&v, &|v| {
                    println!("join token (single use, valid {ttl_s} s; shown once):");
                    println!("  {}", cell(&v["join_token"]));
                    println!("start the new node with:");
                    println!(
                        "  --join {} --join-token {} --join-ca-sha256 {}",
                        client
                            .servers()
                            .first()
                            .map(String::as_str)
                            .unwrap_or("https://<member>:8001"),
                        cell(&v["join_token"]),
                        cell(&v["ca_sha256"])
                    );
                });
            }
        },
        CliCommand::Token(cmd) => match cmd {
            TokenCmd::Generate => println!("{}", flotilla_cli::token_secret()),
            TokenCmd::Bootstrap { secret_file } => {
                let body = match secret_file {
                    None => json!({}),
                    Some(path) => {
                        let secret = std::fs::read_to_string(path)
                            .with_context(|| format!("reading the secret from {}", path.display()))?;
                        json!({ "secret": secret.trim() })
                    }
                };
                let v = client.post("/v1/tokens/bootstrap", &body).await?;
                show(&v, &|v| {
                    println!("admin token {} (shown once):\n{}", cell(&v["id"]), cell(&v["token"]))
                });
            }
            TokenCmd::Create {
                name,
                role,
                tenants,
                ttl_s,
            } => {
                let mut body = json!({ "name": name, "role": role, "tenants": tenants });
                if let Some(ttl) = ttl_s {
                    body["ttl_ms"] = json!(ttl.saturating_mul(1000));
                }
                let v = client.post("/v1/tokens", &body).await?;
                show(&v, &|v| {
                    println!(
                        "token {} ({}, {}) (shown once):\n{}",
                        cell(&v["id"]),
                        cell(&v["name"]),
                        cell(&v["role"]),
                        cell(&v["token"])
                    )
                });
            }
            TokenCmd::List => show(&client.get("/v1/tokens").await?, &|v| {
                let rows: Vec<Vec<String>> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        let tenants: Vec<String> = t["tenants"].as_array().into_iter().flatten().map(cell).collect();
                        vec![
                            cell(&t["id"]),
                            cell(&t["name"]),
                            cell(&t["role"]),
                            if tenants.is_empty() {
                                "*".into()
                            } else {
                                tenants.join(",")
                            },
                            cell(&t["expires_at_ms"]),
                        ]
                    })
                    .collect();
                output::table(&["ID", "NAME", "ROLE", "TENANTS", "EXPIRES_AT_MS"], &rows);
            }),
            TokenCmd::Revoke { id } => {
                let v = client
                    .request(Method::DELETE, &format!("/v1/tokens/{id}"), None, &[])
                    .await?;
                show(&v, &|v| println!("token {} revoked", cell(&v["revoked"])));
            }
        },
        CliCommand::Pipeline(cmd) => match cmd {
            PipelineCmd::Submit {
                file,
                idempotency_key,
                tenant,
                wait,
            } => {
                let (body, content_type) = pipeline_file(file)?;
                // Always a key, drawn once for this invocation: the client resends the POST to
                // the next server when one times out, and the key makes that resend return the
                // first submission instead of creating a second pipeline.
                let key = idempotency_key.clone().unwrap_or_else(flotilla_cli::invocation_key);
                let mut headers = vec![("idempotency-key", key)];
                if let Some(tenant) = tenant {
                    headers.push(("x-flotilla-tenant", tenant.clone()));
                }
                let v = client.post_raw("/v1/pipelines", body, content_type, &headers).await?;
                show(&v, &|v| {
                    let dup = if v["duplicate"] == true {
                        " (already submitted with this key)"
                    } else {
                        ""
                    };
                    println!("pipeline {}{dup}", cell(&v["pipeline"]));
                    let rows: Vec<Vec<String>> = v["jobs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|j| vec![cell(&j["id"]), cell(&j["name"])])
                        .collect();
                    output::table(&["JOB", "NAME"], &rows);
                });
                if *wait {
                    let id = v["pipeline"].as_u64().context("the server returned no pipeline id")?;
                    let state = crate::wait::follow(client, id).await?;
                    anyhow::ensure!(state == "SUCCEEDED", "pipeline {id} ended {state}");
                }
            }
            PipelineCmd::Get { id } => show(&client.get(&format!("/v1/pipelines/{id}")).await?, &pipeline_table),
            PipelineCmd::List(list) => show(
                &client.get(&format!("/v1/pipelines?{}", list.query(&[]))).await?,
                &|v| {
                    let rows: Vec<Vec<String>> = v["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            vec![
                                cell(&p["id"]),
                                cell(&p["name"]),
                                cell(&p["tenant"]),
                                cell(&p["state"]),
                                p["jobs"].as_array().map_or(0, Vec::len).to_string(),
                            ]
                        })
                        .collect();
                    output::table(&["ID", "NAME", "TENANT", "STATE", "JOBS"], &rows);
                    if let Some(next) = v["next_after"].as_u64() {
                        println!("more: --after {next}");
                    }
                },
            ),
            PipelineCmd::Cancel { id } => show(
                &client.post(&format!("/v1/pipelines/{id}/cancel"), &json!({})).await?,
                &|v| println!("cancelled jobs: {}", cell(&v["cancelled"])),
            ),
            PipelineCmd::Rerun { id, failed } => {
                // A key per invocation: the CLI's own resend to another server runs it once.
                let headers = [("idempotency-key", flotilla_cli::invocation_key())];
                let body = json!({ "failed_only": failed });
                let v = client
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/pipelines/{id}/rerun"),
                        Some(&body),
                        &headers,
                    )
                    .await?;
                show(&v, &|v| {
                    let names: Vec<String> = v["jobs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|j| cell(&j["name"]))
                        .collect();
                    println!("pipeline {} re-runs {id}: {}", cell(&v["pipeline"]), names.join(", "));
                });
            }
        },
        CliCommand::Job(cmd) => match cmd {
            JobCmd::Get { id } => show(&client.get(&format!("/v1/jobs/{id}")).await?, &|j| {
                output::table(&["ID", "NAME", "PIPELINE", "STATE", "ATTEMPT"], &[job_row(j)]);
                if !j["failure"].is_null() {
                    println!("failure: {}", j["failure"]);
                }
                if let Some(reason) = j["gate"]["skipped"]["reason"].as_str() {
                    println!("skipped: {reason}");
                }
                if let Some(by) = j["gate"]["approved"]["by"].as_str() {
                    println!("approved by {by}");
                }
                if let Some(line) = cache_line(j) {
                    println!("{line}");
                }
            }),
            JobCmd::List { list, pipeline } => {
                let extra: Vec<(&str, String)> = pipeline.iter().map(|p| ("pipeline", p.to_string())).collect();
                show(&client.get(&format!("/v1/jobs?{}", list.query(&extra))).await?, &|v| {
                    let rows: Vec<Vec<String>> = v["items"].as_array().into_iter().flatten().map(job_row).collect();
                    output::table(&["ID", "NAME", "PIPELINE", "STATE", "ATTEMPT"], &rows);
                });
            }
            JobCmd::Logs { id, follow: false } => print!("{}", client.get_text(&format!("/v1/jobs/{id}/logs")).await?),
            JobCmd::Logs { id, follow: true } => {
                client
                    .stream_to_stdout(&format!("/v1/jobs/{id}/logs?follow=true"))
                    .await?
            }
            JobCmd::Artifacts {
                id,
                save: None,
                extract: None,
            } => show(&client.get(&format!("/v1/jobs/{id}/artifacts")).await?, &|v| {
                println!(
                    "attempt {}: {} bytes (zstd), {} entries, digest {}",
                    cell(&v["attempt"]),
                    cell(&v["size_bytes"]),
                    cell(&v["entries"]),
                    cell(&v["digest"])
                );
                println!("expires at {}", crate::artifacts::time_ms(&v["expires_at_ms"]));
                let rows: Vec<Vec<String>> = v["files"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| vec![cell(&f["path"]), cell(&f["size_bytes"])])
                    .collect();
                output::table(&["PATH", "BYTES"], &rows);
                if v["files_truncated"].as_bool() == Some(true) {
                    println!("(more files than listed)");
                }
            }),
            JobCmd::Artifacts { id, save, extract } => {
                crate::artifacts::download(client, *id, save.as_deref(), extract.as_deref()).await?
            }
            JobCmd::Cancel { id } => show(
                &client.post(&format!("/v1/jobs/{id}/cancel"), &json!({})).await?,
                &|v| println!("cancelled jobs: {}", cell(&v["cancelled"])),
            ),
            JobCmd::Approve { id } => show(
                &client.post(&format!("/v1/jobs/{id}/approve"), &json!({})).await?,
                &|v| println!("job {} approved by {}", cell(&v["approved"]), cell(&v["by"])),
            ),
            JobCmd::Why { id } => show(&client.get(&format!("/v1/jobs/{id}/why-pending")).await?, &|v| {
                println!("{}", cell(&v["summary"]));
                let rows: Vec<Vec<String>> = v["pools"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let fits = if p["fits_now"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            "no"
                        };
                        vec![cell(&p["pool"]), fits.to_string(), cell(&p["reason"])]
                    })
                    .collect();
                if !rows.is_empty() {
                    output::table(&["POOL", "FITS NOW", "WHY NOT"], &rows);
                }
                if let Some(more) = v["pools_not_shown"].as_u64().filter(|n| *n > 0) {
                    println!("({more} more pools not shown)");
                }
            }),
        },
        CliCommand::Pool(cmd) => match cmd {
            PoolCmd::Register {
                name,
                provider,
                capacity,
                max_workers,
                labels,
                settings,
            } => {
                let label_map = key_values("--label", labels)?;
                let setting_map = key_values("--setting", settings)?;
                let body = json!({
                    "name": name, "provider": provider, "max_workers": max_workers, "labels": label_map, "settings": setting_map,
                    "capacity": capacity.json()
                });
                show(&client.post("/v1/pools", &body).await?, &|_| {
                    println!("pool {name} registered")
                });
            }
            PoolCmd::List => show(&client.get("/v1/pools").await?, &|v| {
                let rows: Vec<Vec<String>> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let s = &p["spec"];
                        vec![
                            cell(&s["name"]),
                            cell(&s["provider"]),
                            format!(
                                "{}/{}",
                                cell(&p["allocated"]["cpu_millis"]),
                                cell(&s["capacity"]["cpu_millis"])
                            ),
                            format!(
                                "{}/{}",
                                cell(&p["allocated"]["memory_mib"]),
                                cell(&s["capacity"]["memory_mib"])
                            ),
                            format!("{}/{}", cell(&p["workers"]), cell(&s["max_workers"])),
                            if s["host"].is_null() {
                                "*".to_string()
                            } else {
                                cell(&s["host"])
                            },
                            if p["draining"] == true { "draining" } else { "active" }.to_string(),
                            if p["problem"].is_null() {
                                String::new()
                            } else {
                                cell(&p["problem"])
                            },
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "POOL", "PROVIDER", "CPU(m)", "MEM(MiB)", "WORKERS", "HOST", "STATE", "PROBLEM",
                    ],
                    &rows,
                );
            }),
            PoolCmd::Drain { name, undo } => {
                let v = client
                    .post(&format!("/v1/pools/{name}/drain"), &json!({ "draining": !undo }))
                    .await?;
                show(&v, &|_| {
                    println!("pool {name} {}", if *undo { "takes jobs again" } else { "is draining" })
                });
            }
            PoolCmd::Remove { name } => {
                let v = client
                    .request(Method::DELETE, &format!("/v1/pools/{name}"), None, &[])
                    .await?;
                show(&v, &|_| println!("pool {name} removed"));
            }
        },
        CliCommand::Tenant(cmd) => crate::admin::tenant(client, format, cmd).await?,
        CliCommand::Limits(cmd) => crate::admin::limits(client, format, cmd).await?,
        CliCommand::Retention(cmd) => crate::retention::run(client, format, cmd).await?,
        CliCommand::Dev(_)
        | CliCommand::Tls(_)
        | CliCommand::Events(_)
        | CliCommand::Secret(_)
        | CliCommand::Repo(_)
        | CliCommand::Schedule(_)
        | CliCommand::Notifier(_)
        | CliCommand::Cache(_)
        | CliCommand::Login(_)
        | CliCommand::Logout => {
            unreachable!("handled in main")
        }
    }
    Ok(())
}

/// Reads a pipeline file and names its content type; the server validates and reports errors
/// with the field (and, for YAML, the line).
pub fn pipeline_file(file: &std::path::Path) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let yaml = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    Ok((body, if yaml { "application/yaml" } else { "application/json" }))
}

fn job_row(j: &Value) -> Vec<String> {
    vec![
        cell(&j["id"]),
        cell(&j["spec"]["name"]),
        cell(&j["pipeline"]),
        cell(&j["state"]),
        cell(&j["attempt"]),
    ]
}

fn cluster_table(v: &Value) {
    println!(
        "cluster {}: node {} (incarnation {}) is {}; leader {}; term {}; committed {}; applied {}",
        cell(&v["cluster_id"]),
        cell(&v["id"]),
        cell(&v["incarnation"]),
        cell(&v["state"]),
        cell(&v["leader"]),
        cell(&v["term"]),
        cell(&v["committed_index"]),
        cell(&v["applied_index"])
    );
    let rows: Vec<Vec<String>> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let role = if m["id"] == v["leader"] {
                "leader"
            } else if m["voter"] == true {
                "voter"
            } else {
                "learner"
            };
            vec![
                cell(&m["id"]),
                role.into(),
                cell(&m["raft_addr"]),
                cell(&m["api_addr"]),
                cell(&m["matched_index"]),
            ]
        })
        .collect();
    output::table(&["ID", "ROLE", "RAFT", "API", "MATCHED"], &rows);
}

fn pipeline_table(v: &Value) {
    println!(
        "pipeline {} {} ({}) is {}",
        cell(&v["id"]),
        cell(&v["name"]),
        cell(&v["tenant"]),
        cell(&v["state"])
    );
    let rows: Vec<Vec<String>> = v["job_states"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| vec![cell(&j["id"]), cell(&j["name"]), cell(&j["state"]), cell(&j["attempt"])])
        .collect();
    output::table(&["JOB", "NAME", "STATE", "ATTEMPT"], &rows);
}

/// `key=value` arguments of a repeatable flag as a JSON object.
fn key_values(flag: &str, items: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut map = serde_json::Map::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("{flag} {item:?} must be key=value"))?;
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::ListArgs;

    #[test]
    fn a_jobs_cache_reads_as_one_line() {
        use serde_json::json;
        let digest = "ab".repeat(32);
        let job = json!({ "spec": { "cache": { "key": "deps" } }, "attempts": [
            { "cache": { "restored": digest, "saved": { "stored": { "size_bytes": 42 } } } }] });
        assert_eq!(
            super::cache_line(&job).as_deref(),
            Some("cache deps: restored abababababab; saved, 42 bytes")
        );
        let job = json!({ "spec": { "cache": { "key": "deps" } }, "attempts": [
            { "cache": { "saved": { "not_saved": { "reason": "cache.paths[0] \"x\" does not exist" } } } }] });
        assert_eq!(
            super::cache_line(&job).as_deref(),
            Some("cache deps: nothing restored; not saved: cache.paths[0] \"x\" does not exist")
        );
        assert_eq!(super::cache_line(&json!({ "spec": {}, "attempts": [] })), None);
    }

    #[test]
    fn a_list_query_encodes_its_values() {
        let args = ListArgs {
            state: Some("RUNNING".into()),
            tenant: Some("a b&c".into()),
            limit: 5,
            after: Some(9),
            linearizable: true,
        };
        assert_eq!(
            args.query(&[("pipeline", "3".into())]),
            "limit=5&state=RUNNING&tenant=a+b%26c&after=9&consistency=linearizable&pipeline=3"
        );
    }
}
