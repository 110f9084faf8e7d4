//! `flotilla cache ...`: the tenants' caches (what each holds, when it was last used, what
//! the tenants' caches and artifacts take against their budgets), and clearing them.

use crate::client::Client;
use crate::output::{self, Format, cell, show};
use crate::repos::tenant_header;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

#[derive(Subcommand)]
pub enum CacheCmd {
    /// The caches of your tenants, by tenant and key, and each tenant's storage against its
    /// budgets.
    List {
        /// This tenant's only.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Forget a cache (KEY), or every cache of the tenant (--all): the next job that pulls
    /// it starts cold.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["key", "all"])))]
    Clear {
        key: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// `n` bytes with one decimal in the largest binary unit below it (`12.5 MiB`).
fn size_text(v: &Value) -> String {
    let Some(n) = v.as_u64() else { return "-".into() };
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= scale {
            return format!("{:.1} {unit}", n as f64 / scale as f64);
        }
    }
    format!("{n} B")
}

pub async fn cache(client: &Client, format: Format, cmd: &CacheCmd) -> anyhow::Result<()> {
    match cmd {
        CacheCmd::List { tenant } => {
            let query = tenant.as_ref().map_or_else(String::new, |t| format!("&tenant={t}"));
            let v = client
                .get(&format!("/v1/caches?consistency=linearizable{query}"))
                .await?;
            show(format, &v, &|v| {
                let rows: Vec<Vec<String>> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        vec![
                            cell(&c["tenant"]),
                            cell(&c["key"]),
                            size_text(&c["size_bytes"]),
                            cell(&c["entries"]),
                            format!("j{}", cell(&c["job"])),
                            crate::artifacts::time_ms(&c["used_at_ms"]),
                        ]
                    })
                    .collect();
                output::table(&["TENANT", "KEY", "SIZE", "ENTRIES", "SAVED BY", "LAST USED"], &rows);
                if v["truncated"].as_bool() == Some(true) {
                    println!("(the first {} of {})", rows.len(), cell(&v["total"]));
                }
                let usage: Vec<Vec<String>> = v["usage"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        vec![
                            cell(&u["tenant"]),
                            format!(
                                "{} of {}",
                                size_text(&u["cache_bytes"]),
                                size_text(&u["cache_budget_bytes"])
                            ),
                            format!(
                                "{} of {}",
                                size_text(&u["artifact_bytes"]),
                                size_text(&u["artifact_budget_bytes"])
                            ),
                        ]
                    })
                    .collect();
                if !usage.is_empty() {
                    println!();
                    output::table(&["TENANT", "CACHES", "ARTIFACTS"], &usage);
                }
            });
        }
        CacheCmd::Clear {
            key: Some(key), tenant, ..
        } => crate::repos::remove(client, format, "caches", "cache", key, tenant).await?,
        CacheCmd::Clear { key: None, tenant, .. } => {
            let v = client
                .request(Method::DELETE, "/v1/caches", None, &tenant_header(tenant))
                .await?;
            show(format, &v, &|v| {
                println!("every cache of tenant {} is cleared", cell(&v["tenant"]))
            });
        }
    }
    Ok(())
}
