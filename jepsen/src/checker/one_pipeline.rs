//! One client request makes at most one pipeline. Each submission names its pipeline after
//! its request (`c<process>-<n>`), and half of them are sent without an idempotency key: for
//! those only the client sessions stand between a forward the node retries after the leader
//! committed it and a second pipeline whose jobs run again.

use super::Verdict;
use crate::history::{Op, OpType};
use std::collections::BTreeMap;

/// `names`: pipeline name → how many pipelines of that name exist after healing.
pub fn check(ops: &[Op], names: &BTreeMap<String, u32>) -> Verdict {
    let mut problems = Vec::new();
    let (mut requests, mut keyless) = (0usize, 0usize);
    for op in ops.iter().filter(|o| o.f == "submit" && o.kind == OpType::Invoke) {
        let Some(key) = op.value["key"].as_str() else { continue };
        requests += 1;
        keyless += usize::from(op.value["keyed"] == false);
        if let Some(count) = names.get(key).filter(|c| **c > 1) {
            problems.push(format!("request {key} created {count} pipelines"));
        }
    }
    Verdict::new(
        "one-pipeline-per-request",
        problems,
        serde_json::json!({ "requests": requests, "without_key": keyless }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invoke(key: &str, keyed: bool) -> Op {
        Op {
            process: 0,
            kind: OpType::Invoke,
            f: "submit".into(),
            node: Some(1),
            value: json!({ "key": key, "keyed": keyed }),
            time_ms: 0.0,
        }
    }

    #[test]
    fn a_request_that_made_two_pipelines_is_caught() {
        let ops = vec![invoke("c0-1", false), invoke("c0-2", true)];
        let once = BTreeMap::from([("c0-1".to_string(), 1), ("c0-2".to_string(), 1)]);
        assert!(check(&ops, &once).valid);
        let twice = BTreeMap::from([("c0-1".to_string(), 2), ("c0-2".to_string(), 1)]);
        let v = check(&ops, &twice);
        assert!(!v.valid);
        assert!(
            v.details["violations"][0].as_str().unwrap().contains("c0-1"),
            "{}",
            v.details
        );
    }
}
