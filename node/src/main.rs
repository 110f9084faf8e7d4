//! `flotilla-node`: one member of a Flotilla cluster (Raft over gRPC, REST API, leader loops).
//!
//! Not built yet: this binary arrives with the issue "Cluster node, REST API and admin CLI".
//! Until then it says so and exits with status 2, rather than pretending to run.

use clap::Parser;

#[derive(Parser)]
#[command(name = "flotilla-node", version, about = "A Flotilla cluster node (not built yet)")]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _ = Args::parse();
    eprintln!("flotilla-node: the cluster node is not built yet; see ARCHITECTURE.md");
    std::process::exit(2);
}
