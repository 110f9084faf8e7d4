//! The history of a run: every client operation as an `invoke` followed by its completion
//! (`ok`, `fail`: certainly not applied, `info`: outcome unknown), and every fault the nemesis
//! injected, with monotonic time since the start. Written as JSON lines.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Client process id; the nemesis is process `-1`.
    pub process: i64,
    #[serde(rename = "type")]
    pub kind: OpType,
    /// `submit`, `cancel`, `read-lin`, `read-local`, `list`, `pools`, or the nemesis's fault.
    pub f: String,
    /// Which node the operation went to (1-based), if any.
    #[serde(default)]
    pub node: Option<u64>,
    #[serde(default)]
    pub value: serde_json::Value,
    /// Milliseconds since the start of the run (monotonic clock), fractional.
    pub time_ms: f64,
}

/// Collects the history in memory and on disk.
pub struct Recorder {
    start: Instant,
    /// The wall clock (ms since the epoch) when the run started: `time_ms` past it is the
    /// harness's own wall time of an op, which the stamped-time checker compares with.
    pub start_wall_ms: u64,
    inner: Mutex<(Vec<Op>, Option<std::io::BufWriter<std::fs::File>>)>,
}

impl Recorder {
    pub fn new(path: Option<&Path>) -> std::io::Result<Recorder> {
        let file = path
            .map(std::fs::File::create)
            .transpose()?
            .map(std::io::BufWriter::new);
        Ok(Recorder {
            start: Instant::now(),
            start_wall_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            inner: Mutex::new((Vec::new(), file)),
        })
    }

    pub fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    pub fn record(&self, process: i64, kind: OpType, f: &str, node: Option<u64>, value: serde_json::Value) {
        let op = Op {
            process,
            kind,
            f: f.to_string(),
            node,
            value,
            time_ms: self.now_ms(),
        };
        let mut inner = self.inner.lock().expect("history lock");
        if let Some(w) = inner.1.as_mut() {
            let _ = serde_json::to_writer(&mut *w, &op);
            let _ = w.write_all(b"\n");
        }
        inner.0.push(op);
    }

    pub fn ops(&self) -> Vec<Op> {
        let mut inner = self.inner.lock().expect("history lock");
        if let Some(w) = inner.1.as_mut() {
            let _ = w.flush();
        }
        inner.0.clone()
    }
}

/// A completed operation: its invocation paired with its completion.
#[derive(Clone, Debug)]
pub struct Completed<'a> {
    pub invoke: &'a Op,
    pub done: &'a Op,
}

/// Pairs each invocation with the next completion of the same process. An invocation with no
/// completion (the run ended) is left out.
pub fn pair(ops: &[Op]) -> Vec<Completed<'_>> {
    let mut open: std::collections::HashMap<i64, &Op> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for op in ops {
        match op.kind {
            OpType::Invoke => {
                open.insert(op.process, op);
            }
            _ => {
                if let Some(invoke) = open.remove(&op.process) {
                    out.push(Completed { invoke, done: op });
                }
            }
        }
    }
    out
}
