//! `flotilla tenant ...` and `flotilla limits ...`: what admins set for the whole cluster (a
//! tenant's quota, the limits every input is checked against). The node a change is sent to
//! redirects it to the leader; the client follows.

use crate::client::Client;
use crate::output::{self, Format, cell, show};
use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum TenantCmd {
    /// Tenants with their quota, allocation and running jobs (a scoped token: its own), read
    /// through the leader.
    List,
    /// Set a tenant's quota (admin). A lower one lets running jobs finish; new ones wait.
    SetQuota {
        name: String,
        #[command(flatten)]
        resources: crate::commands::ResourcesArgs,
        #[arg(long)]
        max_running_jobs: u32,
        /// The highest priority the tenant's jobs may ask for; higher submissions are refused.
        /// Default: as high as the limits allow.
        #[arg(long, allow_hyphen_values = true)]
        max_priority: Option<i32>,
    },
    /// Lift a tenant's quota (admin).
    ClearQuota { name: String },
}

#[derive(Subcommand)]
pub enum LimitsCmd {
    /// The limits in force, with the ceiling each may be raised to, read through the leader.
    Show,
    /// Change limits (admin): `name=value`, repeatable, the others kept as they are
    /// (`flotilla limits show` lists the names).
    Set {
        #[arg(required = true)]
        changes: Vec<String>,
    },
}

pub async fn tenant(client: &Client, format: Format, cmd: &TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::List => show(
            format,
            &client.get("/v1/tenants?consistency=linearizable").await?,
            &|v| {
                let rows: Vec<Vec<String>> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        let q = &t["quota"];
                        let of = |used: &Value, cap: &Value| {
                            if q.is_null() {
                                cell(used)
                            } else {
                                format!("{}/{}", cell(used), cell(cap))
                            }
                        };
                        vec![
                            cell(&t["name"]),
                            of(&t["allocated"]["cpu_millis"], &q["resources"]["cpu_millis"]),
                            of(&t["allocated"]["memory_mib"], &q["resources"]["memory_mib"]),
                            of(&t["running_jobs"], &q["max_running_jobs"]),
                            match q["max_priority"].as_i64() {
                                Some(ceiling) => ceiling.to_string(),
                                None => "-".to_string(),
                            },
                        ]
                    })
                    .collect();
                output::table(&["TENANT", "CPU(m)", "MEM(MiB)", "RUNNING", "MAX PRIORITY"], &rows);
            },
        ),
        TenantCmd::SetQuota {
            name,
            resources,
            max_running_jobs,
            max_priority,
        } => {
            let mut body = resources.json();
            body["max_running_jobs"] = json!(max_running_jobs);
            if let Some(ceiling) = max_priority {
                body["max_priority"] = json!(ceiling);
            }
            let v = client
                .request(Method::PUT, &format!("/v1/tenants/{name}/quota"), Some(&body), &[])
                .await?;
            show(format, &v, &|_| println!("tenant {name}'s quota is set"));
        }
        TenantCmd::ClearQuota { name } => {
            let v = client
                .request(Method::DELETE, &format!("/v1/tenants/{name}/quota"), None, &[])
                .await?;
            show(format, &v, &|_| println!("tenant {name} has no quota"));
        }
    }
    Ok(())
}

pub async fn limits(client: &Client, format: Format, cmd: &LimitsCmd) -> anyhow::Result<()> {
    match cmd {
        LimitsCmd::Show => show(
            format,
            &client.get("/v1/limits?consistency=linearizable").await?,
            &|v| {
                let rows: Vec<Vec<String>> = v["limits"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| vec![name.clone(), cell(value), cell(&v["ceiling"][name])])
                    .collect();
                output::table(&["LIMIT", "VALUE", "CEILING"], &rows);
            },
        ),
        LimitsCmd::Set { changes } => {
            let current = client.get("/v1/limits?consistency=linearizable").await?;
            let mut limits = current["limits"].clone();
            for change in changes {
                let (name, text) = change
                    .split_once('=')
                    .with_context(|| format!("{change:?} is not name=value"))?;
                anyhow::ensure!(
                    limits.get(name).is_some(),
                    "no limit is called {name:?} (flotilla limits show lists them)"
                );
                limits[name] = serde_json::from_str(text)
                    .with_context(|| format!("the value of {name} is not a number or JSON: {text:?}"))?;
            }
            let v = client.request(Method::PUT, "/v1/limits", Some(&limits), &[]).await?;
            show(format, &v, &|v| {
                println!(
                    "{}",
                    if v["changed"] == true {
                        "limits changed"
                    } else {
                        "the limits were already so"
                    }
                )
            });
        }
    }
    Ok(())
}
