//! `flotilla-node`: runs one member of a Flotilla cluster until SIGTERM or Ctrl-C; as
//! `flotilla-node fetch-source`, a Kubernetes job pod's source container (`source::fetch`);
//! as `flotilla-node put-files`, its collect container (`source::put_files`).

use clap::Parser;
use flotilla_node::{Options, RunningNode, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `flotilla-node fetch-source`: the source container of a Kubernetes job pod, not a
    // node. Told apart before the node's options are read, since the node's image sets the
    // node's variables (`FLOTILLA_DATA_DIR`...) that the helper must not be judged by.
    if std::env::args_os().nth(1).is_some_and(|a| a == "fetch-source") {
        let options = flotilla_node::source::fetch::FetchOptions::parse_from(std::env::args_os().skip(1));
        if let Err(e) = flotilla_node::source::fetch::run(&options).await {
            // One line, last: the pod's termination message is its reason (no backtrace).
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return Ok(());
    }
    // `flotilla-node put-files`: the collect container of a Kubernetes job pod.
    if std::env::args_os().nth(1).is_some_and(|a| a == "put-files") {
        let options = flotilla_node::source::put_files::PutOptions::parse_from(std::env::args_os().skip(1));
        if let Err(e) = flotilla_node::source::put_files::run(&options).await {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return Ok(());
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
