//! A reader of `/v1/events` (Server-Sent Events) for tests: blocks on a blank line, fields
//! `id`/`event`/`data`, comment lines counted (heartbeats).

// Each test crate that includes it uses part of it.
#![allow(dead_code)]

use serde_json::Value;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Sse {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

pub struct SseReader {
    resp: reqwest::Response,
    pending: String,
    pub comments: usize,
}

impl SseReader {
    /// Opens `url` (with `token`, if any); a non-200 answer comes back as its status and JSON body.
    pub async fn open(url: &str, last_event_id: Option<&str>, token: Option<&str>) -> Result<SseReader, (u16, Value)> {
        let http = crate::common::client_builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut req = http.get(url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.map_err(|e| (0, Value::String(e.to_string())))?;
        if resp.status() != 200 {
            let status = resp.status().as_u16();
            return Err((status, resp.json().await.unwrap_or(Value::Null)));
        }
        Ok(SseReader {
            resp,
            pending: String::new(),
            comments: 0,
        })
    }

    /// The next event, `None` when the stream ends or no event arrives within `wait`
    /// (heartbeat comments are counted, not returned).
    pub async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut event = Sse {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut has_data = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(v).unwrap_or(Value::String(v.to_string()));
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(event);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.pending.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }
}

/// `(log_index, position)` of an event id, for ordering.
pub fn id_key(id: &str) -> (u64, u32) {
    let (i, p) = id.split_once('-').expect("event id has a dash");
    (i.parse().unwrap(), p.parse().unwrap())
}

/// Every event a node holds now, read with `follow=false&after=0` (plus `filter`), with `token`.
pub async fn all_events(base_url: &str, filter: &str, token: Option<&str>) -> Vec<Sse> {
    let mut reader = SseReader::open(
        &format!("{base_url}/v1/events?follow=false&after=0{filter}"),
        None,
        token,
    )
    .await
    .unwrap_or_else(|e| panic!("event replay refused: {e:?}"));
    let mut out = Vec::new();
    while let Some(e) = reader.next(Duration::from_secs(30)).await {
        out.push(e);
    }
    out
}
