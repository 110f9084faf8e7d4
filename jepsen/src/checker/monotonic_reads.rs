//! Linearizable reads of a job's state never go back in real time, and see acknowledged
//! cancels.
//!
//! A job's state only moves forward (`(attempt, rank)` grows: PENDING < SCHEDULED < RUNNING <
//! TERMINATED < a final state). For a register that only moves forward, linearizability of
//! reads implies: if read A completed before read B was invoked, B does not see an earlier
//! state than A. This checks that consequence for every pair of `read-lin` operations on the
//! same job, with the O(n log n) sweep "largest state completed before B's invocation". It is a
//! necessary condition, not a full Wing-Gong search: most writes to job states are the
//! cluster's own and not observable as client operations.
//!
//! The client's own write, cancel, is checked too: once a cancel of a job has been
//! acknowledged, every linearizable read invoked later sees the job in a final state, and
//! CANCELLED if the cancel reported moving it there.

use super::Verdict;
use crate::history::{Op, OpType, pair};
use std::collections::BTreeMap;

/// Progress of a job state within its attempt.
pub fn rank(state: &str) -> Option<u8> {
    Some(match state {
        "PENDING" => 0,
        "SCHEDULED" => 1,
        "RUNNING" => 2,
        "TERMINATED" => 3,
        "SUCCEEDED" | "FAILED" | "CANCELLED" => 4,
        _ => return None,
    })
}

/// One linearizable read of a job: (invoke time, complete time, (attempt, rank), state).
type Read = (f64, f64, (u64, u8), String);

pub fn check(ops: &[Op]) -> Verdict {
    let mut reads: BTreeMap<u64, Vec<Read>> = BTreeMap::new();
    let mut problems = Vec::new();
    for c in pair(ops) {
        if c.invoke.f != "read-lin" || c.done.kind != OpType::Ok {
            continue;
        }
        let v = &c.done.value;
        let (Some(job), Some(state), Some(attempt)) = (v["job"].as_u64(), v["state"].as_str(), v["attempt"].as_u64())
        else {
            problems.push(format!("malformed read: {v}"));
            continue;
        };
        let Some(r) = rank(state) else {
            problems.push(format!("job {job}: unknown state {state:?}"));
            continue;
        };
        reads
            .entry(job)
            .or_default()
            .push((c.invoke.time_ms, c.done.time_ms, (attempt, r), state.to_string()));
    }
    let total: usize = reads.values().map(Vec::len).sum();
    // Acknowledged cancels: job → (completion time, whether this cancel moved it).
    let mut cancels: BTreeMap<u64, Vec<(f64, bool)>> = BTreeMap::new();
    for c in pair(ops) {
        if c.invoke.f != "cancel" || c.done.kind != OpType::Ok {
            continue;
        }
        let Some(job) = c.invoke.value["job"].as_u64() else {
            continue;
        };
        let moved = c.done.value["cancelled"]
            .as_array()
            .is_some_and(|a| a.iter().any(|j| j.as_u64() == Some(job)));
        cancels.entry(job).or_default().push((c.done.time_ms, moved));
    }
    for (job, list) in &cancels {
        for (invoked, _, (_, r), state) in reads.get(job).into_iter().flatten() {
            for (done, moved) in list.iter().filter(|(done, _)| done < invoked) {
                if *r < 4 || (*moved && state != "CANCELLED") {
                    problems.push(format!("job {job}: read at {invoked:.1} ms saw {state} after a cancel acknowledged at {done:.1} ms (moved: {moved})"));
                }
            }
        }
    }
    for (job, list) in &reads {
        let mut by_completion: Vec<&(f64, f64, (u64, u8), String)> = list.iter().collect();
        by_completion.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut by_invocation: Vec<&(f64, f64, (u64, u8), String)> = list.iter().collect();
        by_invocation.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut best: Option<&(f64, f64, (u64, u8), String)> = None;
        let mut i = 0;
        for b in by_invocation {
            while i < by_completion.len() && by_completion[i].1 < b.0 {
                if best.is_none_or(|x| by_completion[i].2 > x.2) {
                    best = Some(by_completion[i]);
                }
                i += 1;
            }
            if let Some(a) = best
                && b.2 < a.2
            {
                problems.push(format!(
                    "job {job}: read at {:.1} ms saw {} (attempt {}) after a read completed at {:.1} ms saw {} (attempt {})",
                    b.0, b.3, b.2.0, a.1, a.3, a.2.0
                ));
            }
        }
    }
    let cancels: usize = cancels.values().map(Vec::len).sum();
    Verdict::new(
        "linearizable-reads",
        problems,
        serde_json::json!({ "reads": total, "jobs": reads.len(), "cancels": cancels }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(process: i64, t0: f64, t1: f64, state: &str) -> Vec<Op> {
        let v = json!({ "job": 7, "state": state, "attempt": 1 });
        vec![
            Op {
                process,
                kind: OpType::Invoke,
                f: "read-lin".into(),
                node: Some(1),
                value: json!({ "job": 7 }),
                time_ms: t0,
            },
            Op {
                process,
                kind: OpType::Ok,
                f: "read-lin".into(),
                node: Some(1),
                value: v,
                time_ms: t1,
            },
        ]
    }

    #[test]
    fn a_stale_read_after_a_newer_one_completed_is_caught() {
        let mut ops = read(1, 0.0, 10.0, "RUNNING");
        ops.extend(read(2, 20.0, 30.0, "SCHEDULED"));
        let v = check(&ops);
        assert!(!v.valid, "{v:?}");
    }

    fn cancel(process: i64, t0: f64, t1: f64, moved: bool) -> Vec<Op> {
        let cancelled = if moved { json!([7]) } else { json!([]) };
        vec![
            Op {
                process,
                kind: OpType::Invoke,
                f: "cancel".into(),
                node: Some(1),
                value: json!({ "job": 7 }),
                time_ms: t0,
            },
            Op {
                process,
                kind: OpType::Ok,
                f: "cancel".into(),
                node: Some(1),
                value: json!({ "cancelled": cancelled }),
                time_ms: t1,
            },
        ]
    }

    #[test]
    fn a_read_that_misses_an_acknowledged_cancel_is_caught() {
        let mut ops = cancel(1, 0.0, 10.0, true);
        ops.extend(read(2, 20.0, 30.0, "RUNNING"));
        assert!(!check(&ops).valid);
        let mut ops = cancel(1, 0.0, 10.0, true);
        ops.extend(read(2, 20.0, 30.0, "SUCCEEDED"));
        assert!(
            !check(&ops).valid,
            "a cancel that moved the job must be seen as CANCELLED"
        );
        let mut ops = cancel(1, 0.0, 10.0, false);
        ops.extend(read(2, 20.0, 30.0, "SUCCEEDED"));
        ops.extend(read(3, 5.0, 8.0, "RUNNING"));
        assert!(
            check(&ops).valid,
            "already final, and a read concurrent with the cancel"
        );
    }

    #[test]
    fn concurrent_reads_may_disagree_and_forward_reads_pass() {
        // Overlapping in time: either order is a valid linearization.
        let mut ops = read(1, 0.0, 30.0, "RUNNING");
        ops.extend(read(2, 10.0, 20.0, "SCHEDULED"));
        ops.extend(read(3, 40.0, 50.0, "SUCCEEDED"));
        let v = check(&ops);
        assert!(v.valid, "{v:?}");
        assert_eq!(v.details["checked"]["reads"], 3);
    }
}
