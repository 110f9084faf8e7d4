//! `flotilla-jepsen`: the black-box chaos harness (real processes, faults, histories, checkers).
//!
//! Not built yet: it arrives with the issue "Chaos harness". Until then it says so and exits
//! with status 2.

use clap::Parser;

#[derive(Parser)]
#[command(name = "flotilla-jepsen", version, about = "Flotilla chaos harness (not built yet)")]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _ = Args::parse();
    eprintln!("flotilla-jepsen: the chaos harness is not built yet; see ARCHITECTURE.md");
    std::process::exit(2);
}
