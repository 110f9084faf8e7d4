//! Poisoned requests (resources near `u64::MAX`, alias bombs, deep nesting, matrix bombs,
//! invalid UTF-8) are refused with a 4xx whatever the faults: none is accepted and none gets a
//! server error. A request that found no node (connection refused, timeout, 503 during an
//! election) says nothing either way and is not counted against the cluster.

use super::Verdict;
use crate::history::{OpType, pair};

pub fn check(ops: &[crate::history::Op]) -> Verdict {
    let mut problems = Vec::new();
    let (mut refused, mut undecided) = (0, 0);
    for c in pair(ops).into_iter().filter(|c| c.invoke.f == "poison") {
        let kind = c.invoke.value["kind"].as_str().unwrap_or("?").to_string();
        match c.done.kind {
            OpType::Fail => refused += 1,
            OpType::Ok => problems.push(format!(
                "poisoned request {kind} on node {:?} was accepted: {}",
                c.invoke.node, c.done.value
            )),
            _ => {
                let status = c.done.value["answer"]["status"].as_u64();
                match status {
                    Some(s) if s >= 500 && s != 503 && s != 504 => problems.push(format!(
                        "poisoned request {kind} on node {:?} got {s}: {}",
                        c.invoke.node, c.done.value
                    )),
                    _ => undecided += 1,
                }
            }
        }
    }
    Verdict::new(
        "poison-refused",
        problems,
        serde_json::json!({ "refused": refused, "no_node_answered": undecided }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;
    use serde_json::json;

    fn poison(kind: OpType, value: serde_json::Value) -> Vec<Op> {
        vec![
            Op {
                process: 1,
                kind: OpType::Invoke,
                f: "poison".into(),
                node: Some(1),
                value: json!({ "kind": "alias-bomb" }),
                time_ms: 0.0,
            },
            Op {
                process: 1,
                kind,
                f: "poison".into(),
                node: Some(1),
                value,
                time_ms: 1.0,
            },
        ]
    }

    #[test]
    fn an_accepted_or_crashing_poison_is_caught() {
        assert!(check(&poison(OpType::Fail, json!({ "answer": { "status": 413 } }))).valid);
        assert!(
            check(&poison(
                OpType::Info,
                json!({ "answer": { "error": "connection reset" } })
            ))
            .valid
        );
        assert!(check(&poison(OpType::Info, json!({ "answer": { "status": 503 } }))).valid);
        assert!(!check(&poison(OpType::Ok, json!({ "body": { "pipeline": 3 } }))).valid);
        assert!(!check(&poison(OpType::Info, json!({ "answer": { "status": 500 } }))).valid);
    }
}
