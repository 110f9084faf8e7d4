//! `flotilla`: the user and admin command-line tool, over the REST API.
//!
//! Not built yet: the commands arrive with the issue "Cluster node, REST API and admin CLI".
//! Until then it says so and exits with status 2.

use clap::Parser;

#[derive(Parser)]
#[command(name = "flotilla", version, about = "Flotilla command-line tool (not built yet)")]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _ = Args::parse();
    eprintln!("flotilla: the command-line tool is not built yet; see ARCHITECTURE.md");
    std::process::exit(2);
}
