//! Network partitions between nodes on loopback addresses, with iptables: one chain of this
//! run's own, jumped to from INPUT, holding DROP rules per (source, destination) pair. Peers
//! see silence, not refusals, so they time out as across a real partition. The retried-forward
//! fault adds a one-way rule (one node's answers to another lost on the way) and aborts the
//! other's connections to it.

use std::process::Command;

pub struct Firewall {
    chain: String,
}

fn iptables(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("iptables is required: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "iptables {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Firewall {
    pub fn new() -> anyhow::Result<Firewall> {
        let chain = format!("FLOTILLA-J{}", std::process::id());
        iptables(&["-N", &chain])?;
        iptables(&["-I", "INPUT", "-j", &chain])?;
        Ok(Firewall { chain })
    }

    /// Cuts traffic both ways between every node of `a` and every node of `b` (their IPs).
    pub fn partition(&self, a: &[String], b: &[String]) -> anyhow::Result<()> {
        for x in a {
            for y in b {
                iptables(&["-A", &self.chain, "-s", x, "-d", y, "-j", "DROP"])?;
                iptables(&["-A", &self.chain, "-s", y, "-d", x, "-j", "DROP"])?;
            }
        }
        Ok(())
    }

    /// Drops what `server`'s port `port` sends to `client`: the answers to the requests
    /// `client` makes there, not the requests `server` makes to `client` (those come from
    /// other ports). Requests arrive and are acted on; their answers never come back.
    pub fn drop_answers(&self, server: &str, port: u16, client: &str) -> anyhow::Result<()> {
        let port = port.to_string();
        iptables(&[
            "-A",
            &self.chain,
            "-s",
            server,
            "-d",
            client,
            "-p",
            "tcp",
            "--sport",
            &port,
            "-j",
            "DROP",
        ])
    }

    /// Aborts every open TCP connection from `client` to `server`'s port `port` on the
    /// client's side (`ss -K`, the kernel's socket destroy): the client sees its connection
    /// broken at once, as when a peer dies, and connects again.
    pub fn abort_connections(&self, client: &str, server: &str, port: u16) -> anyhow::Result<()> {
        let out = Command::new("ss")
            .args([
                "-K",
                "-t",
                "src",
                client,
                "dst",
                server,
                "dport",
                "=",
                &port.to_string(),
            ])
            .output()
            .map_err(|e| anyhow::anyhow!("ss (iproute2) is required: {e}"))?;
        anyhow::ensure!(out.status.success(), "ss -K: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    pub fn heal(&self) -> anyhow::Result<()> {
        iptables(&["-F", &self.chain])
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = iptables(&["-D", "INPUT", "-j", &self.chain]);
        let _ = iptables(&["-F", &self.chain]);
        let _ = iptables(&["-X", &self.chain]);
    }
}
