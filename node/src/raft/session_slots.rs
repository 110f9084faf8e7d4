//! The client sessions this node sends its clients' commands under (the state machine's
//! `session.rs` explains the table they land in).
//!
//! A session's requests must go one at a time, and a node serves many requests at once, so
//! each request in progress takes a slot: a client of its own and that client's next sequence
//! number. Every retry of the request (another forward, a forward to a new leader) carries the
//! same stamp, so the leader's state machine answers a retry of a committed request from the
//! session instead of applying it twice. When the request is answered or given up the slot goes
//! back to the pool with its sequence moved on: the slot's next request tells the state machine
//! that the earlier one is over, and a late copy of the earlier one is refused as stale.
//!
//! Client ids are random, drawn when a slot is made, so a restarted node never reuses a
//! session of its earlier run.

use flotilla_state_machine::{ClientId, ClientRequest};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Free slots kept for reuse at most; more concurrent requests get slots made for them, which
/// are dropped when done (their sessions then expire in the state).
const MAX_POOLED_SLOTS: usize = 4096;

#[derive(Debug, Default)]
pub struct SessionSlots {
    free: Mutex<Vec<Slot>>,
    made: AtomicU64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    client: ClientId,
    next_seq: u64,
}

/// One request's slot, given back when dropped.
pub struct SlotGuard<'a> {
    slots: &'a SessionSlots,
    slot: Slot,
}

impl SessionSlots {
    /// A free slot, or a new one with a fresh random client id.
    pub fn take(&self) -> SlotGuard<'_> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let slot = reused.unwrap_or_else(|| Slot {
            client: self.fresh_client(),
            next_seq: 1,
        });
        SlotGuard { slots: self, slot }
    }

    /// Slots made so far (for tests and metrics).
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    fn fresh_client(&self) -> ClientId {
        self.made.fetch_add(1, Ordering::Relaxed);
        ClientId(rand::random())
    }
}

impl SlotGuard<'_> {
    /// The stamp of this slot's current request.
    pub fn request(&self) -> ClientRequest {
        ClientRequest {
            client: self.slot.client,
            seq: self.slot.next_seq,
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let next = Slot {
            client: self.slot.client,
            next_seq: self.slot.next_seq.saturating_add(1),
        };
        let mut free = self.slots.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < MAX_POOLED_SLOTS {
            free.push(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SessionSlots;

    #[test]
    fn concurrent_requests_get_their_own_clients_and_a_slot_moves_on_when_given_back() {
        let slots = SessionSlots::default();
        let a = slots.take();
        let b = slots.take();
        assert_ne!(a.request().client, b.request().client);
        assert_eq!((a.request().seq, b.request().seq), (1, 1));
        let first = a.request();
        drop(a);
        let again = slots.take();
        assert_eq!(again.request().client, first.client);
        assert_eq!(
            again.request().seq,
            2,
            "the next request of a slot has the next sequence"
        );
        assert_eq!(slots.made(), 2);
    }

    #[test]
    fn client_ids_differ_between_pools() {
        let one = SessionSlots::default();
        let two = SessionSlots::default();
        assert_ne!(one.take().request().client, two.take().request().client);
    }
}
