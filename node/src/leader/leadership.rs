//! This node's leadership as one value the leader's loops are given: the term it leads in, or
//! none.
//!
//! One task follows openraft's server metrics (which change with the server state and vote,
//! not with every entry) and publishes the term on a watch channel. The loops wait on it for a
//! term to start in instead of polling `is_leader()`, and every proposal and destructive
//! provider call of a tick first checks that the term it started in still holds: a node that
//! lost leadership and won it back in a later term does not go on with decisions it made from
//! the older term's view.

use crate::Raft;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

/// The term this node leads in, as the leader's loops see it.
#[derive(Clone, Debug)]
pub struct Leadership {
    term: watch::Receiver<Option<u64>>,
}

impl Leadership {
    /// A leadership that follows `raft`, and the task that keeps it current (run it until the
    /// node stops).
    pub fn follow(raft: &Raft, stop: watch::Receiver<bool>) -> (Leadership, impl Future<Output = ()> + Send + 'static) {
        let mut server = raft.server_metrics();
        let current = |m: &openraft::metrics::RaftServerMetrics<flotilla_raft_store::TypeConfig>| {
            m.state.is_leader().then_some(m.vote.leader_id.term)
        };
        let (tx, rx) = watch::channel(current(&server.borrow_watched()));
        let follower = async move {
            let mut stop = stop;
            loop {
                tokio::select! {
                    changed = server.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
                let now = current(&server.borrow_watched());
                tx.send_if_modified(|term| {
                    let changed = *term != now;
                    *term = now;
                    changed
                });
            }
        };
        (Leadership { term: rx }, follower)
    }

    /// A leadership fixed by `term` and its sender, for tests.
    pub fn from_channel(term: watch::Receiver<Option<u64>>) -> Leadership {
        Leadership { term }
    }

    /// The term this node leads in now, if it leads.
    pub fn term(&self) -> Option<u64> {
        *self.term.borrow()
    }

    /// Whether this node still leads in `term`.
    pub fn holds(&self, term: u64) -> bool {
        self.term() == Some(term)
    }

    /// Waits until this node leads and returns the term; `None` when `stop` turns true first
    /// or the leadership is no longer followed.
    pub async fn acquired(&mut self, stop: &mut watch::Receiver<bool>) -> Option<u64> {
        tokio::select! {
            term = self.term.wait_for(Option::is_some) => term.ok().and_then(|t| *t),
            _ = stop.wait_for(|s| *s) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Leadership;
    use tokio::sync::watch;

    #[tokio::test]
    async fn a_term_holds_until_leadership_moves_even_when_it_comes_back() {
        let (tx, rx) = watch::channel(None);
        let (_stop_tx, mut stop) = watch::channel(false);
        let mut leadership = Leadership::from_channel(rx);
        assert_eq!(leadership.term(), None);
        tx.send_replace(Some(3));
        assert_eq!(leadership.acquired(&mut stop).await, Some(3));
        assert!(leadership.holds(3));
        tx.send_replace(None);
        assert!(!leadership.holds(3));
        // Leading again, in a later term: decisions made in term 3 no longer hold.
        tx.send_replace(Some(5));
        assert!(!leadership.holds(3));
        assert!(leadership.holds(5));
    }

    #[tokio::test]
    async fn waiting_for_leadership_ends_when_the_node_stops() {
        let (_tx, rx) = watch::channel(None);
        let (stop_tx, mut stop) = watch::channel(false);
        let mut leadership = Leadership::from_channel(rx);
        stop_tx.send_replace(true);
        assert_eq!(leadership.acquired(&mut stop).await, None);
    }
}
