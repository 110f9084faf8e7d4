//! Following a pipeline until it ends: job state changes as they happen, then every job's log.

use crate::client::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Polls the pipeline, printing each job's state changes, until it ends; then prints the logs.
/// Returns the final pipeline state. Reads are linearizable: the pipeline was just submitted,
/// perhaps through another node than the one a read reaches (the client moves on when a node
/// does not answer), and a local read there can come before that node applied it (a 404 for
/// a pipeline that exists, seen in the compose smoke test with its leader stopped).
pub async fn follow(client: &Client, pipeline: u64) -> anyhow::Result<String> {
    let mut seen: BTreeMap<u64, String> = BTreeMap::new();
    loop {
        let p = client
            .get(&format!("/v1/pipelines/{pipeline}?consistency=linearizable"))
            .await?;
        for j in p["job_states"].as_array().into_iter().flatten() {
            let id = j["id"].as_u64().unwrap_or(0);
            let state = j["state"].as_str().unwrap_or("?").to_string();
            if seen.get(&id) != Some(&state) {
                let attempt = j["attempt"].as_u64().unwrap_or(1);
                let retry = if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                println!("  {:<20} {state}{retry}", j["name"].as_str().unwrap_or("?"));
                seen.insert(id, state);
            }
        }
        let state = p["state"].as_str().unwrap_or("RUNNING").to_string();
        if state != "RUNNING" {
            println!("pipeline {pipeline} {state}");
            print_logs(client, &p).await?;
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn print_logs(client: &Client, pipeline: &Value) -> anyhow::Result<()> {
    for j in pipeline["job_states"].as_array().into_iter().flatten() {
        let id = j["id"].as_u64().unwrap_or(0);
        let log = client
            .get_text(&format!("/v1/jobs/{id}/logs?consistency=linearizable"))
            .await?;
        println!("\n--- {} (job {id}) ---", j["name"].as_str().unwrap_or("?"));
        print!("{log}");
        if !log.is_empty() && !log.ends_with('\n') {
            println!();
        }
    }
    Ok(())
}
