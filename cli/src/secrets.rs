//! `flotilla secret ...`: a tenant's secrets. A value is read from standard input (or a file),
//! never from the command line, where `ps` and the shell's history would see it; no command
//! prints one back.

use crate::client::Client;
use crate::output::{self, Format, cell, show};
use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use std::io::Read;

/// Longest value read (the cluster's limit; a longer one is refused before it is sent).
const MAX_VALUE_BYTES: u64 = 64 * 1024;

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Set a secret (operator) from standard input, or from --from-file. One trailing newline
    /// is dropped (as `echo` adds). Refused while a running job uses the secret.
    Set {
        name: String,
        /// The tenant (default: `default`, or the token's only tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Read the value from this file rather than standard input.
        #[arg(long)]
        from_file: Option<std::path::PathBuf>,
    },
    /// The secrets of your tenants: names and versions, never values.
    List,
    /// Delete a secret (operator). Refused while a running job uses it.
    Delete {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Seal every secret again under a new data key wrapped by the leader's first key-file key
    /// (admin); afterwards older keys in the key files are no longer needed.
    RotateKeys,
    /// Print a new key for --secrets-key-file (`fsk_` and 64 hex digits). Made locally.
    GenerateKey,
}

fn tenant_header(tenant: &Option<String>) -> Vec<(&'static str, String)> {
    tenant.iter().map(|t| ("X-Flotilla-Tenant", t.clone())).collect()
}

/// The value from `file` or standard input, without one trailing newline.
fn read_value(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    match file {
        Some(path) => std::fs::File::open(path)
            .with_context(|| format!("--from-file {}", path.display()))?
            .take(MAX_VALUE_BYTES + 2)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {}", path.display()))?,
        None => std::io::stdin()
            .take(MAX_VALUE_BYTES + 2)
            .read_to_end(&mut bytes)
            .context("reading the value from standard input")?,
    };
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.pop();
    }
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_VALUE_BYTES,
        "the value is longer than {MAX_VALUE_BYTES} bytes, the most a secret may hold"
    );
    String::from_utf8(bytes).context("the value is not UTF-8 text (base64-encode binary values)")
}

pub async fn run(client: &Client, format: Format, cmd: &SecretCmd) -> anyhow::Result<()> {
    match cmd {
        SecretCmd::Set {
            name,
            tenant,
            from_file,
        } => {
            let value = read_value(from_file.as_deref())?;
            let body = json!({ "value": value });
            let v = client
                .request(
                    Method::PUT,
                    &format!("/v1/secrets/{name}"),
                    Some(&body),
                    &tenant_header(tenant),
                )
                .await?;
            show(format, &v, &|v| {
                println!(
                    "secret {} of tenant {} is at version {}",
                    cell(&v["name"]),
                    cell(&v["tenant"]),
                    cell(&v["version"])
                )
            });
        }
        SecretCmd::List => show(
            format,
            &client.get("/v1/secrets?consistency=linearizable").await?,
            &|v| {
                let rows: Vec<Vec<String>> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        vec![
                            cell(&s["tenant"]),
                            cell(&s["name"]),
                            cell(&s["version"]),
                            cell(&s["updated_at_ms"]),
                        ]
                    })
                    .collect();
                output::table(&["TENANT", "NAME", "VERSION", "UPDATED (ms)"], &rows);
            },
        ),
        SecretCmd::Delete { name, tenant } => {
            let v = client
                .request(
                    Method::DELETE,
                    &format!("/v1/secrets/{name}"),
                    None,
                    &tenant_header(tenant),
                )
                .await?;
            show(format, &v, &|v| {
                println!(
                    "secret {} of tenant {} is deleted",
                    cell(&v["name"]),
                    cell(&v["tenant"])
                )
            });
        }
        SecretCmd::RotateKeys => {
            let v = client
                .request(Method::POST, "/v1/secrets/rotate-keys", None, &[])
                .await?;
            show(format, &v, &|v| {
                println!(
                    "{} secrets sealed again under data key {} (wrapped by key {}); {} changed meanwhile",
                    cell(&v["resealed"]),
                    cell(&v["data_key"]),
                    cell(&v["kek_id"]),
                    cell(&v["changed_meanwhile"])
                )
            });
        }
        // Answered by `main` without a client.
        SecretCmd::GenerateKey => println!("{}", flotilla_cli::secrets_key()),
    }
    Ok(())
}
