//! The time a pipeline was created at, as the cluster stamped it, lies within the bound of the
//! submission's own time as the harness's clock saw it (from its invoke to its answer). A
//! leader stamping its own skewed clock (the `clock-skew` fault runs a node, often the
//! leader, 5-30 s off) would put pipelines seconds away, and the state's clock, which never
//! goes back, would keep every later time ahead with it.

use super::Verdict;
use crate::history::{Op, OpType};
use std::collections::BTreeMap;

/// How far a stamp may be from the harness's clock: the leader's correction is taken from
/// samples within a round trip of 1 s (half of it is the error), plus the scheduling slack of
/// a loaded machine.
pub const BOUND_MS: u64 = 2_000;

/// `created`: pipeline name → its `created_at_ms`; `start_wall_ms`: the harness's wall clock at
/// the start of the run (ops carry the time since).
pub fn check(ops: &[Op], created: &BTreeMap<String, u64>, start_wall_ms: u64) -> Verdict {
    let mut problems = Vec::new();
    let mut checked = 0usize;
    let mut invoked: BTreeMap<i64, (&str, f64)> = BTreeMap::new();
    let mut worst_ms = 0u64;
    for op in ops.iter().filter(|o| o.f == "submit") {
        match op.kind {
            OpType::Invoke => {
                if let Some(key) = op.value["key"].as_str() {
                    invoked.insert(op.process, (key, op.time_ms));
                }
            }
            OpType::Ok => {
                let Some((key, sent_ms)) = invoked.remove(&op.process) else {
                    continue;
                };
                let Some(stamp) = created.get(key).copied() else {
                    continue;
                };
                checked += 1;
                let earliest = start_wall_ms + sent_ms as u64;
                let latest = start_wall_ms + op.time_ms.ceil() as u64;
                let off_ms = earliest.saturating_sub(stamp).max(stamp.saturating_sub(latest));
                worst_ms = worst_ms.max(off_ms);
                if off_ms > BOUND_MS {
                    problems.push(format!(
                        "pipeline {key} was stamped {stamp}, {off_ms} ms outside its submission ({earliest}..{latest})"
                    ));
                }
            }
            _ => {
                invoked.remove(&op.process);
            }
        }
    }
    Verdict::new(
        "stamped-time-bounded",
        problems,
        serde_json::json!({ "pipelines": checked, "bound_ms": BOUND_MS, "worst_ms": worst_ms }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(kind: OpType, key: &str, time_ms: f64) -> Op {
        Op {
            process: 0,
            kind,
            f: "submit".into(),
            node: Some(1),
            value: json!({ "key": key }),
            time_ms,
        }
    }

    #[test]
    fn a_stamp_outside_the_submission_by_more_than_the_bound_is_a_violation() {
        let start = 1_000_000;
        let ops = vec![
            op(OpType::Invoke, "c0-1", 100.0),
            op(OpType::Ok, "c0-1", 150.0),
            op(OpType::Invoke, "c0-2", 200.0),
            op(OpType::Ok, "c0-2", 260.0),
        ];
        let fine = BTreeMap::from([("c0-1".to_string(), start + 120), ("c0-2".to_string(), start + 250)]);
        assert!(check(&ops, &fine, start).valid, "{:?}", check(&ops, &fine, start));
        // A leader 30 s ahead stamped the second.
        let ahead = BTreeMap::from([("c0-1".to_string(), start + 120), ("c0-2".to_string(), start + 30_250)]);
        let verdict = check(&ops, &ahead, start);
        assert!(!verdict.valid);
        // One behind by more than the bound too.
        let behind = BTreeMap::from([("c0-1".to_string(), start + 100 - BOUND_MS - 1)]);
        assert!(!check(&ops, &behind, start).valid);
    }
}
