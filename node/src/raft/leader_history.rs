//! Leadership as this node saw it change: when, in which term, to whom. Raft keeps only the
//! present (the current term and leader), and leader changes are not events of the replicated
//! journal, so each node keeps its own bounded record for the console's cluster page. Two
//! nodes' records differ in their times and in what a node did not see while it was down.

use crate::Raft;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::watch;

/// Changes kept; the oldest is forgotten first.
pub const MAX_LEADER_CHANGES: usize = 100;

/// One change of leadership as this node saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaderChange {
    /// This node's wall clock when it saw the change, ms since the epoch.
    pub at_ms: u64,
    pub term: u64,
    /// `None`: no leader known (an election under way).
    pub leader: Option<u64>,
}

#[derive(Debug, Default)]
pub struct LeaderHistory {
    changes: Mutex<VecDeque<LeaderChange>>,
}

impl LeaderHistory {
    /// Records `(term, leader)` if it differs from the last one recorded; returns whether it did.
    pub fn observe(&self, term: u64, leader: Option<u64>, at_ms: u64) -> bool {
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if changes.back().is_some_and(|c| c.term == term && c.leader == leader) {
            return false;
        }
        if changes.len() == MAX_LEADER_CHANGES {
            changes.pop_front();
        }
        changes.push_back(LeaderChange { at_ms, term, leader });
        true
    }

    /// The changes kept, newest first.
    pub fn recent(&self) -> Vec<LeaderChange> {
        let changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        changes.iter().rev().cloned().collect()
    }

    /// Follows `raft`'s metrics until `stop` turns true, recording each change.
    pub async fn follow(self: std::sync::Arc<Self>, raft: Raft, mut stop: watch::Receiver<bool>) {
        use openraft::async_runtime::WatchReceiver;
        let mut server = raft.server_metrics();
        loop {
            let (term, leader) = {
                let m = server.borrow_watched();
                (m.vote.leader_id.term, m.current_leader)
            };
            self.observe(term, leader, super::proposer::wall_clock_ms());
            tokio::select! {
                changed = server.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_are_kept_newest_first_and_bounded() {
        let h = LeaderHistory::default();
        assert!(h.observe(1, None, 10));
        assert!(h.observe(1, Some(1), 20));
        assert!(
            !h.observe(1, Some(1), 30),
            "the same leader in the same term is no change"
        );
        assert!(h.observe(2, Some(3), 40));
        let recent = h.recent();
        assert_eq!(recent.len(), 3);
        assert_eq!(
            recent[0],
            LeaderChange {
                at_ms: 40,
                term: 2,
                leader: Some(3)
            }
        );
        for term in 3..(3 + MAX_LEADER_CHANGES as u64) {
            h.observe(term, Some(1), term);
        }
        let recent = h.recent();
        assert_eq!(recent.len(), MAX_LEADER_CHANGES);
        assert_eq!(recent[0].term, 2 + MAX_LEADER_CHANGES as u64);
    }
}
