//! `flotilla-node`: runs one member of a Flotilla cluster until SIGTERM or Ctrl-C.

use clap::Parser;
use flotilla_node::{Options, RunningNode, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
