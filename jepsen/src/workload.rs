//! Concurrent clients: each picks an operation and a node at random (seeded) and records the
//! invocation and its completion. A 2xx is `ok`; a 4xx or 429 is `fail` (certainly not
//! applied); anything else, a timeout or a broken connection is `info`: the write may or may
//! not have been applied.

use crate::history::{OpType, Recorder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone)]
pub struct Workload {
    pub recorder: Arc<Recorder>,
    pub http: reqwest::Client,
    /// API base URL of each node, index `node - 1`.
    pub apis: Vec<String>,
    pub markers: PathBuf,
    /// Jobs of acknowledged submissions, for reads and cancels.
    pub jobs: Arc<Mutex<Vec<u64>>>,
}

enum Outcome {
    Ok(Value),
    Fail(Value),
    Info(Value),
}

async fn outcome(r: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match r {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            match status {
                200..=299 => Outcome::Ok(body),
                400..=499 => Outcome::Fail(json!({ "status": status, "body": body })),
                _ => Outcome::Info(json!({ "status": status, "body": body })),
            }
        }
        // Refused before anything was sent: certainly not applied.
        Err(e) if e.is_connect() => Outcome::Fail(json!({ "error": e.to_string() })),
        Err(e) => Outcome::Info(json!({ "error": e.to_string() })),
    }
}

impl Workload {
    pub async fn client(self, process: i64, seed: u64, until: Instant) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut n = 0u64;
        while Instant::now() < until {
            n += 1;
            let node = rng.random_range(1..=self.apis.len() as u64);
            let known = self.jobs.lock().expect("jobs").clone();
            let pick = rng.random_range(0..100);
            let job = (!known.is_empty()).then(|| known[rng.random_range(0..known.len())]);
            match (pick, job) {
                (0..30, _) | (_, None) => self.submit(process, node, n, &mut rng).await,
                (30..55, Some(j)) => self.read(process, node, j, true).await,
                (55..70, Some(j)) => self.read(process, node, j, false).await,
                (70..85, _) => self.get(process, node, "pools", "/v1/pools").await,
                (85..88, _) => self.get(process, node, "list", "/v1/pipelines?limit=20").await,
                (88..91, _) => self.poison(process, node, &mut rng).await,
                (_, Some(j)) => self.cancel(process, node, j).await,
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(10..100))).await;
        }
    }

    fn api(&self, node: u64) -> &str {
        &self.apis[(node - 1) as usize]
    }

    fn finish(&self, process: i64, f: &str, node: u64, o: Outcome) -> Option<Value> {
        match o {
            Outcome::Ok(v) => {
                self.recorder.record(process, OpType::Ok, f, Some(node), v.clone());
                Some(v)
            }
            Outcome::Fail(v) => {
                self.recorder.record(process, OpType::Fail, f, Some(node), v);
                None
            }
            Outcome::Info(v) => {
                self.recorder.record(process, OpType::Info, f, Some(node), v);
                None
            }
        }
    }

    async fn submit(&self, process: i64, node: u64, n: u64, rng: &mut StdRng) {
        let key = format!("c{process}-{n}");
        let step = format!(
            "echo $FLOTILLA_JOB_ID >> {}; sleep 0.{}",
            self.markers.display(),
            rng.random_range(1..9)
        );
        let jobs: Vec<Value> = (0..rng.random_range(1..=2))
            // Retried when its worker fails or is lost: a leader that wrongly reports a worker
            // lost (one it cannot see) then runs the job a second time, which the markers show.
            .map(|i| json!({ "name": format!("j{i}"), "steps": [step.clone()], "resources": { "cpu_millis": 500, "memory_mib": 64 }, "retry": { "max_retries": 2, "backoff": 200 } }))
            .collect();
        let spec = json!({ "name": key, "jobs": jobs });
        // Half without an idempotency key: then only the client sessions keep a forward the
        // node retries from becoming a second pipeline (`one-pipeline-per-request`).
        let keyed = rng.random_bool(0.5);
        self.recorder.record(
            process,
            OpType::Invoke,
            "submit",
            Some(node),
            json!({ "key": key, "keyed": keyed }),
        );
        let mut request = self.http.post(format!("{}/v1/pipelines", self.api(node)));
        if keyed {
            request = request.header("Idempotency-Key", &key);
        }
        let r = request.json(&spec).send().await;
        if let Some(v) = self.finish(process, "submit", node, outcome(r).await) {
            let ids: Vec<u64> = v["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|j| j["id"].as_u64())
                .collect();
            self.jobs.lock().expect("jobs").extend(ids);
        }
    }

    async fn read(&self, process: i64, node: u64, job: u64, linearizable: bool) {
        let f = if linearizable { "read-lin" } else { "read-local" };
        let query = if linearizable { "?consistency=linearizable" } else { "" };
        self.recorder
            .record(process, OpType::Invoke, f, Some(node), json!({ "job": job }));
        let r = self
            .http
            .get(format!("{}/v1/jobs/{job}{query}", self.api(node)))
            .send()
            .await;
        let o = match outcome(r).await {
            Outcome::Ok(v) => Outcome::Ok(json!({ "job": job, "state": v["state"], "attempt": v["attempt"] })),
            // A read changes nothing: a failed read is a failure, whatever the cause.
            Outcome::Info(v) => Outcome::Fail(v),
            other => other,
        };
        self.finish(process, f, node, o);
    }

    async fn get(&self, process: i64, node: u64, f: &str, path: &str) {
        self.recorder
            .record(process, OpType::Invoke, f, Some(node), Value::Null);
        let r = self.http.get(format!("{}{path}", self.api(node))).send().await;
        let o = match outcome(r).await {
            Outcome::Info(v) => Outcome::Fail(v),
            other => other,
        };
        self.finish(process, f, node, o);
    }

    /// Sends one of the requests that once crashed, stalled or bloated a cluster (see
    /// `node/tests/hostile.rs`). Each must be refused with a 4xx, never accepted and never
    /// answered with a server error; the `poison-refused` checker reads these.
    async fn poison(&self, process: i64, node: u64, rng: &mut StdRng) {
        let kind = rng.random_range(0..POISON_KINDS.len());
        let (name, body, content_type, path) = poison_request(kind);
        self.recorder
            .record(process, OpType::Invoke, "poison", Some(node), json!({ "kind": name }));
        let r = self
            .http
            .post(format!("{}{path}", self.api(node)))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        let o = match outcome(r).await {
            Outcome::Ok(v) => Outcome::Ok(json!({ "kind": name, "body": v })),
            Outcome::Fail(v) => Outcome::Fail(json!({ "kind": name, "answer": v })),
            Outcome::Info(v) => Outcome::Info(json!({ "kind": name, "answer": v })),
        };
        self.finish(process, "poison", node, o);
    }

    async fn cancel(&self, process: i64, node: u64, job: u64) {
        self.recorder
            .record(process, OpType::Invoke, "cancel", Some(node), json!({ "job": job }));
        let r = self
            .http
            .post(format!("{}/v1/jobs/{job}/cancel", self.api(node)))
            .send()
            .await;
        let o = outcome(r).await;
        self.finish(process, "cancel", node, o);
    }
}

/// The poisoned requests, by name.
pub const POISON_KINDS: [&str; 6] = [
    "huge-pool",
    "huge-jobs",
    "alias-bomb",
    "deep-yaml",
    "matrix-bomb",
    "bad-utf8",
];

/// `(name, body, content type, path)` of poisoned request `kind`.
fn poison_request(kind: usize) -> (&'static str, Vec<u8>, &'static str, &'static str) {
    let json_body = |v: Value| v.to_string().into_bytes();
    match kind {
        0 => {
            let pool = json!({ "name": "poison", "provider": "process", "capacity": { "cpu_millis": u64::MAX - 1, "memory_mib": u64::MAX - 1 }, "max_workers": 4 });
            ("huge-pool", json_body(pool), "application/json", "/v1/pools")
        }
        1 => {
            let job = |n: &str| json!({ "name": n, "steps": ["true"], "resources": { "cpu_millis": u64::MAX / 2 + 1, "memory_mib": 1 } });
            (
                "huge-jobs",
                json_body(json!({ "name": "poison", "jobs": [job("a"), job("b")] })),
                "application/json",
                "/v1/pipelines",
            )
        }
        2 => {
            let mut yaml = format!(
                "name: poison\nbig: &big {}\njobs:\n  - name: a\n    resources: {{cpu_millis: 1, memory_mib: 1}}\n    script:\n",
                "x".repeat(64 * 1024)
            );
            for _ in 0..1300 {
                yaml.push_str("      - *big\n");
            }
            ("alias-bomb", yaml.into_bytes(), "application/yaml", "/v1/pipelines")
        }
        3 => (
            "deep-yaml",
            "[".repeat(100_000).into_bytes(),
            "application/yaml",
            "/v1/pipelines",
        ),
        4 => {
            let axis: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
            let job = json!({ "name": "m", "steps": ["x".repeat(60 * 1024)], "resources": { "cpu_millis": 1, "memory_mib": 1 }, "matrix": { "A": axis, "B": axis } });
            (
                "matrix-bomb",
                json_body(json!({ "name": "poison", "jobs": [job] })),
                "application/json",
                "/v1/pipelines",
            )
        }
        _ => (
            "bad-utf8",
            b"name: \xff\xfe\n".to_vec(),
            "application/yaml",
            "/v1/pipelines",
        ),
    }
}
