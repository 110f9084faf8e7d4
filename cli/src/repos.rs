//! `flotilla repo ...`: a tenant's source repositories. `add` registers one (its webhook
//! secret and fetch token are tenant secrets, set first with `flotilla secret set`) and
//! prints the webhook path to give the forge; `show` lists its last deliveries and what came
//! of each; `run` starts its pipeline file at a branch, tag or commit by hand. `flotilla
//! schedule ...` runs a repository's pipeline file at the head of a branch on a cron schedule.

use crate::client::Client;
use crate::output::{self, Format, cell, show};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum RepoCmd {
    /// Register a repository (operator), or change its settings.
    Add {
        name: String,
        /// Where to fetch it: https://, http:// or git:// (no credentials in it).
        url: String,
        /// Who sends its webhooks: github, gitlab, gitea (Forgejo too) or git.
        #[arg(long, default_value = "github")]
        forge: String,
        /// The tenant secret holding the webhook's shared secret.
        #[arg(long)]
        webhook_secret: String,
        /// The tenant secret holding a token to fetch a private repository with.
        #[arg(long)]
        credentials: Option<String>,
        /// The pipeline file in the repository.
        #[arg(long, default_value = ".flotilla.yml")]
        pipeline_path: String,
        /// The forge's API root for commit statuses (default: derived from the URL; statuses
        /// are posted with --credentials).
        #[arg(long)]
        status_api: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The repositories of your tenants, each with its last delivery.
    List,
    /// A repository's settings and its last deliveries, newest first.
    Show {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Forget a repository (operator); its pipelines stay.
    Remove {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Run its pipeline file at a branch, a tag or a commit (submitter).
    Run {
        name: String,
        #[arg(long, conflicts_with = "tag")]
        branch: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// A full commit id (with --branch or --tag: the ref its jobs see).
        #[arg(long)]
        commit: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub(crate) fn tenant_header(tenant: &Option<String>) -> Vec<(&'static str, String)> {
    tenant.iter().map(|t| ("X-Flotilla-Tenant", t.clone())).collect()
}

/// `DELETE /v1/{route}/{name}` in the tenant, said as "<kind> NAME of tenant T is removed".
pub(crate) async fn remove(
    client: &Client,
    format: Format,
    route: &str,
    kind: &str,
    name: &str,
    tenant: &Option<String>,
) -> anyhow::Result<()> {
    let v = client
        .request(
            Method::DELETE,
            &format!("/v1/{route}/{name}"),
            None,
            &tenant_header(tenant),
        )
        .await?;
    show(format, &v, &|v| {
        println!(
            "{kind} {} of tenant {} is removed",
            cell(&v["name"]),
            cell(&v["tenant"])
        )
    });
    Ok(())
}

fn delivery_row(d: &Value) -> Vec<String> {
    let detail = if d["pipeline"].is_null() {
        cell(&d["reason"])
    } else {
        format!("pipeline {}", cell(&d["pipeline"]))
    };
    vec![cell(&d["id"]), cell(&d["event"]), cell(&d["outcome"]), detail]
}

pub async fn run(client: &Client, format: Format, cmd: &RepoCmd) -> anyhow::Result<()> {
    match cmd {
        RepoCmd::Add {
            name,
            url,
            forge,
            webhook_secret,
            credentials,
            pipeline_path,
            status_api,
            tenant,
        } => {
            let body = json!({
                "url": url, "forge": forge, "webhook_secret": webhook_secret,
                "credentials": credentials, "pipeline_path": pipeline_path, "status_api": status_api,
            });
            let v = client
                .request(
                    Method::PUT,
                    &format!("/v1/repos/{name}"),
                    Some(&body),
                    &tenant_header(tenant),
                )
                .await?;
            show(format, &v, &|v| {
                println!(
                    "repository {} of tenant {} is registered; point its webhook at <any node>{}",
                    cell(&v["name"]),
                    cell(&v["tenant"]),
                    cell(&v["webhook_path"])
                )
            });
        }
        RepoCmd::List => show(format, &client.get("/v1/repos?consistency=linearizable").await?, &|v| {
            let rows: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let last = &r["last_delivery"];
                    let last = if last.is_null() {
                        "-".to_string()
                    } else {
                        format!("{} {}", cell(&last["event"]), cell(&last["outcome"]))
                    };
                    vec![
                        cell(&r["tenant"]),
                        cell(&r["name"]),
                        cell(&r["forge"]),
                        cell(&r["url"]),
                        last,
                    ]
                })
                .collect();
            output::table(&["TENANT", "NAME", "FORGE", "URL", "LAST DELIVERY"], &rows);
        }),
        RepoCmd::Show { name, tenant } => {
            let v = client
                .request(
                    Method::GET,
                    &format!("/v1/repos/{name}?consistency=linearizable"),
                    None,
                    &tenant_header(tenant),
                )
                .await?;
            show(format, &v, &|v| {
                println!(
                    "{} ({} repository of tenant {})",
                    cell(&v["url"]),
                    cell(&v["forge"]),
                    cell(&v["tenant"])
                );
                println!("pipeline file: {}", cell(&v["pipeline_path"]));
                println!(
                    "webhook: {} (secret {})",
                    cell(&v["webhook_path"]),
                    cell(&v["webhook_secret"])
                );
                let rows: Vec<Vec<String>> = v["deliveries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(delivery_row)
                    .collect();
                output::table(&["DELIVERY", "EVENT", "OUTCOME", "DETAIL"], &rows);
            });
        }
        RepoCmd::Remove { name, tenant } => remove(client, format, "repos", "repository", name, tenant).await?,
        RepoCmd::Run {
            name,
            branch,
            tag,
            commit,
            tenant,
        } => {
            let body = json!({ "branch": branch, "tag": tag, "commit": commit });
            let v = client
                .request(
                    Method::POST,
                    &format!("/v1/repos/{name}/run"),
                    Some(&body),
                    &tenant_header(tenant),
                )
                .await?;
            show(format, &v, &|v| {
                println!("pipeline {} runs commit {}", cell(&v["pipeline"]), cell(&v["commit"]))
            });
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum ScheduleCmd {
    /// Run a repository's pipeline file at the head of a branch on a schedule (operator), or
    /// change a schedule.
    Create {
        name: String,
        #[arg(long)]
        repo: String,
        #[arg(long, default_value = "main")]
        branch: String,
        /// Five fields (minute hour day month weekday, as crontab) or six (seconds first), UTC.
        #[arg(long)]
        cron: String,
        /// Times missed while the cluster had no leader: skip (default) or run-once.
        #[arg(long, default_value = "skip")]
        missed: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The schedules of your tenants, with their next due time and what came of the last.
    List,
    /// Remove a schedule (operator).
    Delete {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub async fn schedule(client: &Client, format: Format, cmd: &ScheduleCmd) -> anyhow::Result<()> {
    match cmd {
        ScheduleCmd::Create {
            name,
            repo,
            branch,
            cron,
            missed,
            tenant,
        } => {
            let missed = match missed.as_str() {
                "skip" => "skip",
                "run-once" | "run_once" => "run_once",
                other => anyhow::bail!("--missed {other:?}: give skip or run-once"),
            };
            let body = json!({ "repository": repo, "branch": branch, "cron": cron, "missed": missed });
            let v = client
                .request(
                    Method::PUT,
                    &format!("/v1/schedules/{name}"),
                    Some(&body),
                    &tenant_header(tenant),
                )
                .await?;
            show(format, &v, &|v| {
                println!(
                    "schedule {} of tenant {} is set; next due at {} ms",
                    cell(&v["name"]),
                    cell(&v["tenant"]),
                    cell(&v["next_due_ms"])
                )
            });
        }
        ScheduleCmd::List => show(
            format,
            &client.get("/v1/schedules?consistency=linearizable").await?,
            &|v| {
                let rows: Vec<Vec<String>> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let last = &s["last"];
                        let last = if last.is_null() {
                            "-".to_string()
                        } else if last["pipeline"].is_null() {
                            format!("{}: {}", cell(&last["outcome"]), cell(&last["reason"]))
                        } else {
                            format!("started pipeline {}", cell(&last["pipeline"]))
                        };
                        vec![
                            cell(&s["tenant"]),
                            cell(&s["name"]),
                            format!("{}@{}", cell(&s["repository"]), cell(&s["branch"])),
                            cell(&s["cron"]),
                            cell(&s["next_due_ms"]),
                            last,
                        ]
                    })
                    .collect();
                output::table(&["TENANT", "NAME", "SOURCE", "CRON", "NEXT DUE (ms)", "LAST"], &rows);
            },
        ),
        ScheduleCmd::Delete { name, tenant } => remove(client, format, "schedules", "schedule", name, tenant).await?,
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum NotifierCmd {
    /// Post a signed notification to URL when a pipeline of the tenant starts or settles
    /// (operator); receivers verify `X-Flotilla-Signature-256` with the secret.
    Set {
        name: String,
        url: String,
        /// The tenant secret that signs each delivery.
        #[arg(long)]
        secret: String,
        /// The states to hear about, comma-separated (RUNNING, SUCCEEDED, FAILED, CANCELLED);
        /// default all.
        #[arg(long, value_delimiter = ',')]
        on: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The notifiers of your tenants, and how many deliveries are owed.
    List,
    /// Remove a notifier (operator).
    Delete {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub async fn notifier(client: &Client, format: Format, cmd: &NotifierCmd) -> anyhow::Result<()> {
    match cmd {
        NotifierCmd::Set {
            name,
            url,
            secret,
            on,
            tenant,
        } => {
            let on: Vec<String> = on.iter().map(|s| s.trim().to_uppercase()).collect();
            let body = json!({ "url": url, "secret": secret, "on": on });
            let v = client
                .request(
                    Method::PUT,
                    &format!("/v1/notifiers/{name}"),
                    Some(&body),
                    &tenant_header(tenant),
                )
                .await?;
            show(format, &v, &|v| {
                println!("notifier {} of tenant {} is set", cell(&v["name"]), cell(&v["tenant"]))
            });
        }
        NotifierCmd::List => show(
            format,
            &client.get("/v1/notifiers?consistency=linearizable").await?,
            &|v| {
                let rows: Vec<Vec<String>> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| vec![cell(&n["tenant"]), cell(&n["name"]), cell(&n["url"]), cell(&n["on"])])
                    .collect();
                output::table(&["TENANT", "NAME", "URL", "ON"], &rows);
                println!("deliveries owed: {}", cell(&v["owed"]));
            },
        ),
        NotifierCmd::Delete { name, tenant } => remove(client, format, "notifiers", "notifier", name, tenant).await?,
    }
    Ok(())
}
