//! Linearizability of each job's state as seen by `read-lin` and changed by `cancel`: a
//! Wing–Gong search with memoization (as in Lowe's refinement and porcupine).
//!
//! The model is one job: `(attempt, rank)` and, once final, which final state. The cluster
//! moves jobs forward on its own (scheduling, workers, retries, dependants' failures), so the
//! model lets the state advance at any moment, never back; a final state never changes. A
//! client's cancel acknowledged as listing the job makes it CANCELLED at its linearization
//! point; it needs the job not final or already CANCELLED (the API lists a cancelled job
//! again, so that a retried cancel answers as the first attempt would), never SUCCEEDED or
//! FAILED. An acknowledged cancel that did not list the job needs it final already. A cancel with an unknown outcome may take
//! effect at any point after its invocation, or never. Failed operations and failed reads
//! changed nothing and are left out.
//!
//! The search linearizes operations one at a time, each chosen among those invoked before
//! every pending operation's completion, and backtracks; `(set of linearized operations,
//! model state)` pairs already explored are remembered. A history is linearizable when every
//! acknowledged operation is placed.

use super::Verdict;
use super::monotonic_reads::rank;
use crate::history::{Op, OpType, pair};
use std::collections::{BTreeMap, HashSet};

/// Model states explored per job before the search gives up (reported as a violation: an
/// unverified history is not a pass).
const MAX_EXPLORED_STATES: usize = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct JobModel {
    attempt: u64,
    rank: u8,
    /// Which final state, once `rank` is final.
    final_state: Option<FinalState>,
    /// False when a cancel finalized the job at an attempt no read has shown yet: the attempt
    /// is then only known to be at least `attempt`.
    attempt_exact: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum FinalState {
    Succeeded,
    Failed,
    Cancelled,
}

impl FinalState {
    fn parse(state: &str) -> Option<FinalState> {
        match state {
            "SUCCEEDED" => Some(FinalState::Succeeded),
            "FAILED" => Some(FinalState::Failed),
            "CANCELLED" => Some(FinalState::Cancelled),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Action {
    /// A linearizable read saw this state.
    Read {
        attempt: u64,
        rank: u8,
        final_state: Option<FinalState>,
    },
    /// An acknowledged cancel; `moved` if the answer listed this job.
    Cancel { moved: bool },
    /// A cancel whose outcome is unknown.
    MaybeCancel,
}

#[derive(Clone, Debug)]
struct Operation {
    invoked_ms: f64,
    /// `None` for an unknown outcome: it may be placed anywhere after its invocation.
    completed_ms: Option<f64>,
    action: Action,
    /// For reports.
    text: String,
}

impl JobModel {
    const START: JobModel = JobModel {
        attempt: 0,
        rank: 0,
        final_state: None,
        attempt_exact: false,
    };

    fn step(&self, action: &Action) -> Option<JobModel> {
        match *action {
            Action::Read {
                attempt,
                rank,
                final_state,
            } => {
                let seen = JobModel {
                    attempt,
                    rank,
                    final_state,
                    attempt_exact: true,
                };
                if self.final_state.is_some() {
                    // A final state never changes.
                    let same_attempt = attempt == self.attempt || (!self.attempt_exact && attempt > self.attempt);
                    return (final_state == self.final_state && same_attempt).then_some(seen);
                }
                ((attempt, rank) >= (self.attempt, self.rank)).then_some(seen)
            }
            // A job already cancelled is listed too: a cancel retried after its answer was lost
            // answers for the job as the first attempt would have.
            Action::Cancel { moved: true } => match self.final_state {
                None => Some(self.cancelled()),
                Some(FinalState::Cancelled) => Some(*self),
                Some(_) => None,
            },
            Action::Cancel { moved: false } => self.final_state.is_some().then_some(*self),
            Action::MaybeCancel => Some(if self.final_state.is_some() {
                *self
            } else {
                self.cancelled()
            }),
        }
    }

    fn cancelled(&self) -> JobModel {
        JobModel {
            attempt: self.attempt,
            rank: 4,
            final_state: Some(FinalState::Cancelled),
            attempt_exact: false,
        }
    }
}

/// Outcome of the search for one job.
#[derive(Debug, PartialEq, Eq)]
enum Search {
    Linearizable,
    /// No order exists; the operation that could never be placed, as far as the search got.
    Violation(String),
    GaveUp,
}

fn search(ops: &[Operation]) -> Search {
    let n = ops.len();
    let words = n.div_ceil(64).max(1);
    let must_place: Vec<bool> = ops.iter().map(|o| o.completed_ms.is_some()).collect();
    let mut seen: HashSet<(Vec<u64>, JobModel)> = HashSet::new();
    // Depth-first with an explicit stack of (linearized set, model, next candidate to try).
    let mut stack: Vec<(Vec<u64>, JobModel, usize)> = vec![(vec![0; words], JobModel::START, 0)];
    let mut deepest = (0usize, String::new());
    while let Some((done, model, from)) = stack.pop() {
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        if (0..n).all(|i| !must_place[i] || is_done(i)) {
            return Search::Linearizable;
        }
        // Only operations invoked before the earliest completion among those not yet placed
        // can come next.
        let horizon = (0..n)
            .filter(|&i| !is_done(i))
            .filter_map(|i| ops[i].completed_ms)
            .fold(f64::INFINITY, f64::min);
        let mut advanced = false;
        for i in from..n {
            if is_done(i) || ops[i].invoked_ms > horizon {
                continue;
            }
            let Some(next) = model.step(&ops[i].action) else {
                continue;
            };
            let mut placed = done.clone();
            placed[i / 64] |= 1 << (i % 64);
            if !seen.insert((placed.clone(), next)) {
                continue;
            }
            if seen.len() > MAX_EXPLORED_STATES {
                return Search::GaveUp;
            }
            let depth = placed.iter().map(|w| w.count_ones() as usize).sum::<usize>();
            if depth > deepest.0 {
                deepest = (depth, String::new());
            }
            // Come back to this node for the candidates after `i`.
            stack.push((done.clone(), model, i + 1));
            stack.push((placed, next, 0));
            advanced = true;
            break;
        }
        if !advanced && deepest.1.is_empty() {
            let blocked: Vec<&str> = (0..n)
                .filter(|&i| !is_done(i) && ops[i].invoked_ms <= horizon)
                .map(|i| ops[i].text.as_str())
                .collect();
            deepest.1 = format!("from {model:?}, none of {blocked:?} can come next");
        }
    }
    Search::Violation(deepest.1)
}

/// Builds each job's operations from the history.
fn operations(ops: &[Op]) -> (BTreeMap<u64, Vec<Operation>>, Vec<String>) {
    let mut by_job: BTreeMap<u64, Vec<Operation>> = BTreeMap::new();
    let mut problems = Vec::new();
    for c in pair(ops) {
        let Some(job) = c.invoke.value["job"].as_u64() else {
            continue;
        };
        let (invoked_ms, completed_ms) = (c.invoke.time_ms, Some(c.done.time_ms));
        let op = match (c.invoke.f.as_str(), c.done.kind) {
            ("read-lin", OpType::Ok) => {
                let v = &c.done.value;
                let (Some(state), Some(attempt)) = (v["state"].as_str(), v["attempt"].as_u64()) else {
                    problems.push(format!("malformed read: {v}"));
                    continue;
                };
                let Some(rank) = rank(state) else {
                    problems.push(format!("job {job}: unknown state {state:?}"));
                    continue;
                };
                let action = Action::Read {
                    attempt,
                    rank,
                    final_state: FinalState::parse(state),
                };
                Operation {
                    invoked_ms,
                    completed_ms,
                    action,
                    text: format!("read {state}@{attempt} [{invoked_ms:.1}, {:.1}]", c.done.time_ms),
                }
            }
            ("cancel", OpType::Ok) => {
                let moved = c.done.value["cancelled"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|j| j.as_u64() == Some(job)));
                Operation {
                    invoked_ms,
                    completed_ms,
                    action: Action::Cancel { moved },
                    text: format!("cancel (moved: {moved}) [{invoked_ms:.1}, {:.1}]", c.done.time_ms),
                }
            }
            ("cancel", OpType::Info) => Operation {
                invoked_ms,
                completed_ms: None,
                action: Action::MaybeCancel,
                text: format!("cancel (unknown) [{invoked_ms:.1}, ...]"),
            },
            _ => continue,
        };
        by_job.entry(job).or_default().push(op);
    }
    (by_job, problems)
}

pub fn check(ops: &[Op]) -> Verdict {
    let (by_job, mut problems) = operations(ops);
    let mut checked_ops = 0;
    for (job, list) in &by_job {
        checked_ops += list.len();
        match search(list) {
            Search::Linearizable => {}
            Search::Violation(why) => problems.push(format!("job {job}: not linearizable: {why}")),
            Search::GaveUp => problems.push(format!(
                "job {job}: search gave up after {MAX_EXPLORED_STATES} states ({} operations)",
                list.len()
            )),
        }
    }
    Verdict::new(
        "linearizable",
        problems,
        serde_json::json!({ "jobs": by_job.len(), "operations": checked_ops }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(process: i64, kind: OpType, f: &str, value: serde_json::Value, time_ms: f64) -> Op {
        Op {
            process,
            kind,
            f: f.into(),
            node: Some(1),
            value,
            time_ms,
        }
    }

    fn read(process: i64, from: f64, to: f64, state: &str, attempt: u64) -> [Op; 2] {
        [
            op(process, OpType::Invoke, "read-lin", json!({ "job": 1 }), from),
            op(
                process,
                OpType::Ok,
                "read-lin",
                json!({ "job": 1, "state": state, "attempt": attempt }),
                to,
            ),
        ]
    }

    fn cancel(process: i64, from: f64, to: f64, outcome: OpType, moved: bool) -> [Op; 2] {
        let done = if moved {
            json!({ "cancelled": [1] })
        } else {
            json!({ "cancelled": [] })
        };
        [
            op(process, OpType::Invoke, "cancel", json!({ "job": 1 }), from),
            op(process, outcome, "cancel", done, to),
        ]
    }

    fn history(parts: Vec<[Op; 2]>) -> Vec<Op> {
        let mut ops: Vec<Op> = parts.into_iter().flatten().collect();
        ops.sort_by(|a, b| a.time_ms.total_cmp(&b.time_ms));
        ops
    }

    #[test]
    fn concurrent_reads_may_be_ordered_either_way() {
        // Overlapping reads seeing RUNNING and PENDING: PENDING is linearized first.
        let h = history(vec![
            read(1, 0.0, 10.0, "RUNNING", 1),
            read(2, 1.0, 9.0, "PENDING", 1),
            read(3, 11.0, 12.0, "SUCCEEDED", 1),
        ]);
        assert!(check(&h).valid, "{:?}", check(&h));
        // A cancel whose answer was lost may have happened, or not.
        let h = history(vec![
            read(1, 0.0, 1.0, "RUNNING", 1),
            cancel(2, 2.0, 3.0, OpType::Info, false),
            read(3, 4.0, 5.0, "SUCCEEDED", 1),
        ]);
        assert!(check(&h).valid);
        let h = history(vec![
            read(1, 0.0, 1.0, "RUNNING", 1),
            cancel(2, 2.0, 3.0, OpType::Info, false),
            read(3, 4.0, 5.0, "CANCELLED", 1),
        ]);
        assert!(check(&h).valid);
        // A retry starts a new attempt from PENDING.
        let h = history(vec![
            read(1, 0.0, 1.0, "TERMINATED", 1),
            read(2, 2.0, 3.0, "PENDING", 2),
        ]);
        assert!(check(&h).valid);
    }

    #[test]
    fn a_stale_read_after_a_newer_one_is_caught() {
        let h = history(vec![read(1, 0.0, 1.0, "RUNNING", 1), read(2, 2.0, 3.0, "PENDING", 1)]);
        let v = check(&h);
        assert!(!v.valid, "{v:?}");
        assert!(
            v.details["violations"][0]
                .as_str()
                .unwrap()
                .contains("not linearizable")
        );
    }

    #[test]
    fn a_final_state_that_changes_is_caught() {
        let h = history(vec![read(1, 0.0, 1.0, "SUCCEEDED", 1), read(2, 2.0, 3.0, "FAILED", 1)]);
        assert!(!check(&h).valid);
    }

    #[test]
    fn a_cancel_that_moved_a_job_another_read_saw_finished_is_caught() {
        // The read saw SUCCEEDED while the cancel ran and the cancel says it moved the job: in
        // any order one of them is impossible. The pairwise real-time check misses this (the
        // read began before the cancel ended); the search does not.
        let h = history(vec![
            read(1, 0.0, 10.0, "SUCCEEDED", 1),
            cancel(2, 1.0, 2.0, OpType::Ok, true),
            read(3, 11.0, 12.0, "CANCELLED", 1),
        ]);
        let v = check(&h);
        assert!(!v.valid, "{v:?}");
        assert!(
            super::super::monotonic_reads::check(&h).valid,
            "the weaker checker misses this history"
        );
    }

    #[test]
    fn an_acknowledged_cancel_must_be_seen() {
        let h = history(vec![
            cancel(1, 0.0, 1.0, OpType::Ok, true),
            read(2, 2.0, 3.0, "RUNNING", 1),
        ]);
        assert!(!check(&h).valid);
        let h = history(vec![
            cancel(1, 0.0, 1.0, OpType::Ok, true),
            read(2, 2.0, 3.0, "CANCELLED", 1),
        ]);
        assert!(check(&h).valid);
    }

    #[test]
    fn a_cancel_listing_a_job_already_cancelled_passes_but_not_one_already_finished() {
        // Two clients cancel the same job (or one cancel is retried): both are told it is
        // cancelled.
        let h = history(vec![
            cancel(1, 0.0, 1.0, OpType::Ok, true),
            cancel(2, 2.0, 3.0, OpType::Ok, true),
            read(3, 4.0, 5.0, "CANCELLED", 1),
        ]);
        assert!(check(&h).valid, "{:?}", check(&h));
        let h = history(vec![
            read(1, 0.0, 1.0, "SUCCEEDED", 1),
            cancel(2, 2.0, 3.0, OpType::Ok, true),
        ]);
        assert!(!check(&h).valid);
        let h = history(vec![
            read(1, 0.0, 1.0, "PENDING", 1),
            cancel(2, 2.0, 3.0, OpType::Ok, false),
        ]);
        assert!(!check(&h).valid, "a cancel that listed nothing needs the job final");
    }

    #[test]
    fn long_histories_of_concurrent_reads_finish() {
        // 4 clients, 300 overlapping reads moving forward: the memo keeps the search small.
        let states = ["PENDING", "SCHEDULED", "RUNNING", "SUCCEEDED"];
        let parts: Vec<[Op; 2]> = (0..300)
            .map(|i| {
                let t = i as f64;
                read(i % 4, t, t + 3.5, states[((i / 80) as usize).min(3)], 1)
            })
            .collect();
        let v = check(&history(parts));
        assert!(v.valid, "{v:?}");
    }
}
