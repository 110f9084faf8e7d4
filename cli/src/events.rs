//! `flotilla events`: prints the cluster's events from `GET /v1/events` (Server-Sent Events).
//!
//! Event ids are the same on every node, so when the node serving the stream goes away the
//! command reconnects to the next `--server` with `Last-Event-ID` and goes on without losing or
//! repeating an event.

use crate::client::{ApiFailure, Client};
use crate::output::{Format, cell};
use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::time::Duration;

#[derive(Args)]
pub struct EventsArgs {
    /// Keep streaming new events (Ctrl-C stops). Without it, print the events the node holds
    /// and exit.
    #[arg(long, short)]
    pub follow: bool,
    /// Only this job's events (e.g. `j12` or `12`).
    #[arg(long)]
    pub job: Option<String>,
    /// Only this pipeline's events, its jobs' included.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only these event types, comma-separated (e.g. `JobCompleted,JobFailed`).
    #[arg(long = "type")]
    pub kinds: Option<String>,
    /// Start after this event id (`0` for everything the node holds). Default: everything held
    /// without --follow, only new events with it.
    #[arg(long)]
    pub after: Option<String>,
}

impl EventsArgs {
    fn query(&self) -> String {
        let mut q = vec![format!("follow={}", self.follow)];
        for (key, value) in [("job", &self.job), ("pipeline", &self.pipeline), ("type", &self.kinds)] {
            if let Some(v) = value {
                q.push(format!("{key}={}", urlencode(v)));
            }
        }
        q.join("&")
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b',') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Prints events until the stream ends (without `--follow`) or forever (with it).
pub async fn run(client: &Client, format: Format, args: &EventsArgs) -> anyhow::Result<()> {
    let mut last_id: Option<String> = args.after.clone().or_else(|| (!args.follow).then(|| "0".to_string()));
    let mut failures = 0u32;
    let servers = client.servers();
    let mut next_server = 0usize;
    if format == Format::Table {
        println!("{:<12} {:<20} {:<18} DETAILS", "ID", "TYPE", "SUBJECT");
    }
    loop {
        let server = &servers[next_server % servers.len()];
        let mut request = client
            .http()
            .get(format!("{server}/v1/events?{}", args.query()))
            .timeout(Duration::from_secs(24 * 3600));
        if let Some(id) = &last_id {
            request = request.header("last-event-id", id);
        }
        let outcome = match request.send().await {
            Ok(resp) if resp.status().is_success() => {
                failures = 0;
                read_stream(resp, format, &mut last_id).await
            }
            Ok(resp) => {
                let status = resp.status();
                let body = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
                return Err(ApiFailure { status, body }.into());
            }
            Err(e) => Err(anyhow::anyhow!("{server}: {e}")),
        };
        match outcome {
            Ok(StreamEnd::Finished) if !args.follow => return Ok(()),
            Ok(StreamEnd::Gap(message)) => anyhow::bail!("the stream has a gap: {message}"),
            Ok(StreamEnd::Finished) => {}
            Err(e) => {
                failures += 1;
                if failures as usize >= servers.len() * 3 {
                    return Err(e.context("no server could stream events"));
                }
                eprintln!("stream interrupted ({e:#}); resuming on the next server");
            }
        }
        next_server += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

enum StreamEnd {
    /// The server ended the stream (caught up without --follow, or stopping).
    Finished,
    /// The server no longer held events this reader needed.
    Gap(String),
}

async fn read_stream(
    mut resp: reqwest::Response,
    format: Format,
    last_id: &mut Option<String>,
) -> anyhow::Result<StreamEnd> {
    let mut parser = SseParser::default();
    while let Some(chunk) = resp.chunk().await.context("reading the event stream")? {
        for message in parser.push(&chunk) {
            if message.event == "gap" {
                return Ok(StreamEnd::Gap(message.data));
            }
            print_event(format, &message.data);
            if let Some(id) = message.id {
                *last_id = Some(id);
            }
        }
    }
    Ok(StreamEnd::Finished)
}

fn print_event(format: Format, data: &str) {
    let Ok(event) = serde_json::from_str::<Value>(data) else {
        println!("{data}");
        return;
    };
    if format == Format::Json {
        println!("{event}");
        return;
    }
    let subject = ["pipeline", "job", "pool", "tenant"]
        .iter()
        .find_map(|k| event.get(*k).map(|v| format!("{k} {}", cell(v))))
        .unwrap_or_default();
    let details: Vec<String> = event
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "id" | "type" | "term" | "pipeline" | "job" | "pool" | "tenant"
            )
        })
        .map(|(k, v)| format!("{k}={}", cell(v)))
        .collect();
    println!(
        "{:<12} {:<20} {:<18} {}",
        cell(&event["id"]),
        cell(&event["type"]),
        subject,
        details.join(" ")
    );
}

/// One dispatched Server-Sent Event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// An incremental `text/event-stream` parser (the WHATWG rules this API uses: `id`, `event`,
/// `data`, comments, dispatch on a blank line, LF or CRLF line ends).
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    current: SseMessage,
    has_data: bool,
}

impl SseParser {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw[..end]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.current));
                } else {
                    self.current = SseMessage::default();
                }
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line
                .split_once(':')
                .map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            match field {
                "id" => self.current.id = Some(value.to_string()),
                "event" => self.current.event = value.to_string(),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_anywhere_with_comments_and_multiline_data() {
        let text = b": heartbeat\n\nid: 12-0\nevent: JobStarted\ndata: {\"a\":1}\n\nid: 12-1\r\nevent: JobCompleted\r\ndata: x\r\ndata: y\r\n\r\n";
        for split in 0..text.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&text[..split]);
            got.extend(p.push(&text[split..]));
            assert_eq!(
                got,
                vec![
                    SseMessage {
                        id: Some("12-0".into()),
                        event: "JobStarted".into(),
                        data: "{\"a\":1}".into()
                    },
                    SseMessage {
                        id: Some("12-1".into()),
                        event: "JobCompleted".into(),
                        data: "x\ny".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn the_query_carries_the_filters_encoded() {
        let args = EventsArgs {
            follow: true,
            job: Some("j 1".into()),
            pipeline: None,
            kinds: Some("JobStarted,JobFailed".into()),
            after: None,
        };
        assert_eq!(args.query(), "follow=true&job=j%201&type=JobStarted,JobFailed");
    }
}
