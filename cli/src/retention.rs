//! `flotilla retention ...`: the retention policies (the cluster's default and each
//! tenant's), what they removed and when. Ages are sent as written (`30d`, `12h`, `90m`):
//! the cluster reads them and names the option it refuses.

use crate::client::Client;
use crate::output::{self, Format, cell, show};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum RetentionCmd {
    /// The policies, the totals removed and the latest removals, newest first.
    Show {
        /// Latest removals to list (1 to 10000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Set the default policy, or a tenant's own with --tenant (admin). Finished pipelines
    /// go with their jobs and output past --max-age or beyond the newest --max-pipelines of
    /// their tenant; output alone goes past --output-max-age; each job keeps at most
    /// --output-max-bytes of output (in place of the limit `max_log_bytes_per_job`).
    #[command(group(clap::ArgGroup::new("bound").required(true).multiple(true)
        .args(["max_age", "max_pipelines", "output_max_age", "output_max_bytes"])))]
    Set {
        #[arg(long)]
        tenant: Option<String>,
        /// Age after a pipeline finished: milliseconds, or with a unit (`30d`, `12h`).
        #[arg(long)]
        max_age: Option<String>,
        /// Finished pipelines kept per tenant.
        #[arg(long)]
        max_pipelines: Option<u64>,
        /// Age after a pipeline finished at which its jobs' output goes.
        #[arg(long)]
        output_max_age: Option<String>,
        /// Output kept per job: bytes, or with a unit (`512KiB`, `100MiB`, `1GiB`).
        #[arg(long, value_parser = parse_bytes)]
        output_max_bytes: Option<u64>,
    },
    /// Lift the default policy, or a tenant's own with --tenant (admin).
    Clear {
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn path(tenant: &Option<String>) -> String {
    match tenant {
        Some(t) => format!("/v1/tenants/{t}/retention"),
        None => "/v1/retention/default".to_string(),
    }
}

/// An age as sent: digits alone are milliseconds (the API's integer form).
fn age(text: &str) -> Value {
    match text.parse::<u64>() {
        Ok(ms) => json!(ms),
        Err(_) => json!(text),
    }
}

/// A size as bytes: digits, optionally followed by `B`, `KiB`, `MiB` or `GiB`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let scale: u64 = match &text[digits.len()..] {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        unit => return Err(format!("unknown unit {unit:?}: use B, KiB, MiB or GiB")),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size (for example 100MiB)"))?;
    n.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))
}

/// Bytes in the largest binary unit that divides them.
fn bytes_text(v: &Value) -> String {
    let Some(n) = v.as_u64() else { return "-".into() };
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= scale && n % scale == 0 {
            return format!("{}{unit}", n / scale);
        }
    }
    format!("{n}B")
}

/// Milliseconds in the largest unit that divides them (`30d`, `90m`, `1500ms`).
fn duration_text(v: &Value) -> String {
    let Some(ms) = v.as_u64() else { return "-".into() };
    for (unit, scale) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= scale && ms % scale == 0 {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

/// A time of the cluster's clock (ms since the epoch), in UTC.
fn time_text(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| cell(v), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

fn policy_row(scope: &str, p: &Value) -> Vec<String> {
    vec![
        scope.to_string(),
        duration_text(&p["max_age_ms"]),
        cell(&p["max_pipelines"]),
        duration_text(&p["output_max_age_ms"]),
        bytes_text(&p["output_max_bytes_per_job"]),
    ]
}

pub async fn run(client: &Client, format: Format, cmd: &RetentionCmd) -> anyhow::Result<()> {
    match cmd {
        RetentionCmd::Show { limit } => {
            let v = client
                .get(&format!("/v1/retention?consistency=linearizable&limit={limit}"))
                .await?;
            show(format, &v, &|v| {
                let mut rows = Vec::new();
                if v["default"].is_object() {
                    rows.push(policy_row("(default)", &v["default"]));
                }
                for t in v["tenants"].as_array().into_iter().flatten() {
                    rows.push(policy_row(&cell(&t["tenant"]), &t["policy"]));
                }
                if rows.is_empty() {
                    println!("no retention policy: every finished pipeline is kept");
                } else {
                    output::table(
                        &["SCOPE", "MAX AGE", "MAX PIPELINES", "OUTPUT MAX AGE", "OUTPUT PER JOB"],
                        &rows,
                    );
                }
                let totals = &v["totals"];
                if totals.is_object() {
                    println!(
                        "\nremoved so far: {} pipelines ({} jobs), output of {} more, {} bytes of output",
                        cell(&totals["pipelines_removed"]),
                        cell(&totals["jobs_removed"]),
                        cell(&totals["outputs_removed"]),
                        cell(&totals["output_bytes_removed"]),
                    );
                }
                let removals: Vec<Vec<String>> = v["removals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            cell(&r["pipeline"]),
                            cell(&r["tenant"]),
                            cell(&r["jobs"]),
                            time_text(&r["finished_at_ms"]),
                            time_text(&r["removed_at_ms"]),
                        ]
                    })
                    .collect();
                if !removals.is_empty() {
                    println!();
                    output::table(&["PIPELINE", "TENANT", "JOBS", "FINISHED", "REMOVED"], &removals);
                }
            });
        }
        RetentionCmd::Set {
            tenant,
            max_age,
            max_pipelines,
            output_max_age,
            output_max_bytes,
        } => {
            let mut body = json!({});
            if let Some(a) = max_age {
                body["max_age_ms"] = age(a);
            }
            if let Some(n) = max_pipelines {
                body["max_pipelines"] = json!(n);
            }
            if let Some(a) = output_max_age {
                body["output_max_age_ms"] = age(a);
            }
            if let Some(n) = output_max_bytes {
                body["output_max_bytes_per_job"] = json!(n);
            }
            let v = client.request(Method::PUT, &path(tenant), Some(&body), &[]).await?;
            let scope = tenant
                .as_deref()
                .map_or("the default".to_string(), |t| format!("tenant {t}'s"));
            show(format, &v, &|_| println!("{scope} retention policy is set"));
        }
        RetentionCmd::Clear { tenant } => {
            let v = client.request(Method::DELETE, &path(tenant), None, &[]).await?;
            let scope = tenant
                .as_deref()
                .map_or("no default".to_string(), |t| format!("tenant {t} has no"));
            show(format, &v, &|_| println!("{scope} retention policy"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_times_read_as_written() {
        assert_eq!(age("86400000"), json!(86_400_000u64));
        assert_eq!(age("30d"), json!("30d"));
        assert_eq!(duration_text(&json!(30 * 86_400_000u64)), "30d");
        assert_eq!(duration_text(&json!(5_400_000u64)), "90m");
        assert_eq!(duration_text(&json!(1_500u64)), "1500ms");
        assert_eq!(duration_text(&Value::Null), "-");
        assert_eq!(time_text(&json!(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(parse_bytes("100MiB"), Ok(100 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert!(parse_bytes("10 parsecs").is_err() && parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999999GiB").unwrap_err().contains("too large"));
        assert_eq!(bytes_text(&json!(100u64 << 20)), "100MiB");
        assert_eq!(bytes_text(&json!(1000u64)), "1000B");
    }
}
