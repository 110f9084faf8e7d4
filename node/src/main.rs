//! `flotilla-node`: runs one member of a Flotilla cluster until SIGTERM or Ctrl-C; as
//! `flotilla-node fetch-source`, a Kubernetes job pod's source container (`source::fetch`);
//! as `flotilla-node put-files`, its collect container (`source::put_files`).

use clap::Parser;
use flotilla_node::{Options, RunningNode, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The helpers of a Kubernetes job pod, not a node: `fetch-source` (its source
    // container) and `put-files` (its collect container). Told apart before the node's
    // options are read, since the node's image sets the node's variables
    // (`FLOTILLA_DATA_DIR`...) that a helper must not be judged by.
    match std::env::args_os().nth(1).as_deref().and_then(|a| a.to_str()) {
        Some("fetch-source") => {
            let options = flotilla_node::source::fetch::FetchOptions::parse_from(std::env::args_os().skip(1));
            return helper_ended(flotilla_node::source::fetch::run(&options).await);
        }
        Some("put-files") => {
            let options = flotilla_node::source::put_files::PutOptions::parse_from(std::env::args_os().skip(1));
            return helper_ended(flotilla_node::source::put_files::run(&options).await);
        }
        _ => {}
    }
    let settings = Settings::resolve(Options::parse())?;
    let telemetry = flotilla_node::observe::telemetry::TelemetryConfig {
        json_logs: settings.json_logs,
        otlp_endpoint: settings.otlp_endpoint.clone(),
        service_name: format!("flotilla-node-{}", settings.id),
    };
    let _telemetry = flotilla_node::observe::telemetry::init(&telemetry)?;
    let node = RunningNode::start(settings).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM; shutting down"),
    }
    node.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// How a pod helper ends: on failure one line, last (the pod's termination message is its
/// reason; no backtrace), and exit status 1.
fn helper_ended<E: std::fmt::Display>(result: Result<(), E>) -> anyhow::Result<()> {
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    Ok(())
}
