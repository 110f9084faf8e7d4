//! Every acknowledged submission exists after healing, on every node.

use super::Verdict;
use crate::history::{Op, OpType, pair};
use std::collections::{BTreeMap, BTreeSet};

/// `present`: for each node, the pipeline ids it reports after healing.
pub fn check(ops: &[Op], present: &BTreeMap<u64, BTreeSet<u64>>) -> Verdict {
    let acknowledged: Vec<u64> = pair(ops)
        .into_iter()
        .filter(|c| c.invoke.f == "submit" && c.done.kind == OpType::Ok)
        .filter_map(|c| c.done.value["pipeline"].as_u64())
        .collect();
    let mut problems = Vec::new();
    if present.is_empty() {
        problems.push("no node could be read after healing".to_string());
    }
    for (node, ids) in present {
        for p in &acknowledged {
            if !ids.contains(p) {
                problems.push(format!("node {node}: acknowledged pipeline {p} is missing"));
            }
        }
    }
    Verdict::new(
        "acknowledged-submissions-kept",
        problems,
        serde_json::json!({ "acknowledged": acknowledged.len(), "nodes": present.len() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn submit(process: i64, pipeline: u64) -> Vec<Op> {
        vec![
            Op {
                process,
                kind: OpType::Invoke,
                f: "submit".into(),
                node: Some(1),
                value: json!(null),
                time_ms: 0.0,
            },
            Op {
                process,
                kind: OpType::Ok,
                f: "submit".into(),
                node: Some(1),
                value: json!({ "pipeline": pipeline }),
                time_ms: 1.0,
            },
        ]
    }

    #[test]
    fn a_lost_acknowledged_pipeline_is_caught() {
        let mut ops = submit(1, 1);
        ops.extend(submit(2, 2));
        let present = BTreeMap::from([(1, BTreeSet::from([1, 2])), (2, BTreeSet::from([1]))]);
        assert!(!check(&ops, &present).valid);
        let present = BTreeMap::from([(1, BTreeSet::from([1, 2])), (2, BTreeSet::from([1, 2, 3]))]);
        assert!(check(&ops, &present).valid, "unacknowledged extras are allowed");
    }
}
