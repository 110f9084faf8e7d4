//! `flotilla tls`: the cluster CA every node is given. The nodes issue their own certificates
//! from it at start; clients trust its certificate (`--ca-file`).

use anyhow::{Context, bail};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TlsCmd {
    /// Create a cluster CA: DIR/ca.crt (give it to every node as --tls-ca-file and to every
    /// client as --ca-file) and DIR/ca.key (mode 0600; give it to every node as
    /// --tls-ca-key-file, to no one else). Existing files are never overwritten.
    #[command(name = "ca-create")]
    CaCreate {
        /// Directory of the two files (created if missing, mode 0700).
        #[arg(long)]
        out: PathBuf,
        /// Name in the CA certificate's subject, to tell clusters apart.
        #[arg(long, default_value = "flotilla")]
        name: String,
        /// How long the CA is valid; node certificates never outlive it.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
}

pub fn run(command: &TlsCmd) -> anyhow::Result<()> {
    match command {
        TlsCmd::CaCreate { out, name, days } => {
            if *days == 0 || *days > 36_500 {
                bail!("--days must be from 1 to 36500");
            }
            if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
                bail!("--name must be 1-64 printable characters");
            }
            let (cert_path, key_path) = (out.join("ca.crt"), out.join("ca.key"));
            for path in [&cert_path, &key_path] {
                if path.exists() {
                    bail!(
                        "{} exists; a CA is never overwritten (choose another --out)",
                        path.display()
                    );
                }
            }
            {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(out)
                    .with_context(|| format!("making {}", out.display()))?;
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let (cert, key) = flotilla_pki::create_ca(name, now_ms, days.saturating_mul(24 * 60 * 60 * 1000))
                .map_err(|e| anyhow::anyhow!("creating the CA: {e}"))?;
            flotilla_cli::write_private(&key_path, &key).with_context(|| format!("writing {}", key_path.display()))?;
            std::fs::write(&cert_path, cert).with_context(|| format!("writing {}", cert_path.display()))?;
            println!("cluster CA created, valid for {days} days:");
            println!(
                "  {}   certificates: every node's --tls-ca-file, every client's --ca-file",
                cert_path.display()
            );
            println!(
                "  {}   key (mode 0600): every node's --tls-ca-key-file, no one else",
                key_path.display()
            );
            Ok(())
        }
    }
}
