//! `flotilla`: the user and admin command-line tool. It speaks only the REST API.

mod client;
mod commands;
mod dev;
mod events;
mod output;
mod wait;

use clap::{Parser, Subcommand};
use output::Format;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Run pipelines on a Flotilla cluster and operate the cluster"
)]
pub struct Cli {
    /// API addresses of cluster nodes, comma-separated; the next is tried when one is down.
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_ADDR",
        default_value = "127.0.0.1:8101,127.0.0.1:8102,127.0.0.1:8103"
    )]
    pub server: String,
    /// API token (`flt_...`), sent as `Authorization: Bearer` to clusters that ask for one
    /// (`--auth tokens`). `cluster init` and `token bootstrap` print the first one.
    #[arg(long, global = true, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value = "table")]
    pub output: Format,
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Subcommand)]
pub enum CliCommand {
    /// Cluster membership and status.
    #[command(subcommand)]
    Cluster(commands::ClusterCmd),
    /// Submit, inspect and cancel pipelines.
    #[command(subcommand)]
    Pipeline(commands::PipelineCmd),
    /// Inspect jobs, read their logs, cancel them.
    #[command(subcommand)]
    Job(commands::JobCmd),
    /// Register and list worker pools.
    #[command(subcommand)]
    Pool(commands::PoolCmd),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(commands::TokenCmd),
    /// Print the cluster's events (Server-Sent Events from any node); `--follow` streams.
    Events(events::EventsArgs),
    /// Start a local 3-node cluster on 127.0.0.1 with a process pool; Ctrl-C stops it.
    Dev(dev::DevArgs),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        CliCommand::Dev(args) => dev::run(args).await,
        CliCommand::Events(ref args) => match client::Client::new(&cli.server, cli.token.as_deref()) {
            Ok(client) => events::run(&client, cli.output, args).await,
            Err(e) => Err(e),
        },
        ref other => match client::Client::new(&cli.server, cli.token.as_deref()) {
            Ok(client) => commands::run(&client, cli.output, other).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
