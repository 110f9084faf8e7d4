//! The node's journal of recently applied events, bounded by a count of events.
//!
//! Every node fills it from its own applies, so a follower can stream events without asking
//! the leader, and a reader can resume after any event id it saw on any node (ids come from
//! the log). It is complete for every event after its `floor`: what was evicted, or folded into
//! a snapshot the node started from or installed, is below the floor, and a reader asking to
//! resume below it gets `Gap` instead of a silent hole.

use flotilla_state_machine::{Event, EventId};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The events one applied entry produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    pub log_index: u64,
    pub term: u64,
    pub events: Vec<Event>,
}

/// One event with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournaledEvent {
    pub id: EventId,
    pub term: u64,
    pub event: Event,
}

/// The journal no longer holds everything after the requested id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("events up to {floor} are no longer held by this node")]
pub struct Gap {
    /// The oldest id a reader can resume after.
    pub floor: EventId,
}

#[derive(Debug)]
struct Inner {
    entries: VecDeque<Arc<AppliedEntry>>,
    events_held: usize,
    /// Every event after this id is held; `None` means every event since the log began.
    floor: Option<EventId>,
    last_log_index: u64,
}

#[derive(Debug)]
pub struct EventJournal {
    inner: Mutex<Inner>,
    capacity_events: usize,
    /// The last log index appended, for readers waiting for more.
    appended: watch::Sender<u64>,
}

impl EventJournal {
    /// An empty journal holding at most `capacity_events` events. `start_after` is the log
    /// index of the snapshot the state was restored from (its events are not available).
    pub fn new(capacity_events: usize, start_after: Option<u64>) -> Self {
        let floor = start_after.map(|index| EventId::new(index, u32::MAX));
        let last = start_after.unwrap_or(0);
        let inner = Inner {
            entries: VecDeque::new(),
            events_held: 0,
            floor,
            last_log_index: last,
        };
        EventJournal {
            inner: Mutex::new(inner),
            capacity_events: capacity_events.max(1),
            appended: watch::channel(last).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the events of one applied entry, evicting the oldest entries beyond capacity. An
    /// entry at or below the last appended index (a re-apply) is ignored.
    pub fn append(&self, entry: AppliedEntry) {
        let index = entry.log_index;
        {
            let mut inner = self.lock();
            if index <= inner.last_log_index {
                return;
            }
            inner.last_log_index = index;
            if !entry.events.is_empty() {
                inner.events_held += entry.events.len();
                inner.entries.push_back(Arc::new(entry));
            }
            while inner.events_held > self.capacity_events {
                let Some(old) = inner.entries.pop_front() else { break };
                inner.events_held -= old.events.len();
                inner.floor = Some(EventId::new(old.log_index, old.events.len() as u32 - 1));
            }
        }
        self.appended.send_replace(index);
    }

    /// Forgets everything: the state was replaced by a snapshot up to `log_index`.
    pub fn reset_to_snapshot(&self, log_index: u64) {
        {
            let mut inner = self.lock();
            inner.entries.clear();
            inner.events_held = 0;
            inner.floor = Some(EventId::new(log_index, u32::MAX));
            inner.last_log_index = inner.last_log_index.max(log_index);
        }
        self.appended.send_modify(|last| *last = (*last).max(log_index));
    }

    /// Up to `max` events after `after`, oldest first.
    pub fn read_after(&self, after: EventId, max: usize) -> Result<Vec<JournaledEvent>, Gap> {
        let inner = self.lock();
        if let Some(floor) = inner.floor
            && after < floor
        {
            return Err(Gap { floor });
        }
        let first = inner.entries.partition_point(|e| e.log_index < after.log_index);
        let mut out = Vec::new();
        for entry in inner.entries.range(first..) {
            for (position, event) in entry.events.iter().enumerate() {
                let id = EventId::new(entry.log_index, position as u32);
                if id <= after {
                    continue;
                }
                if out.len() == max {
                    return Ok(out);
                }
                out.push(JournaledEvent {
                    id,
                    term: entry.term,
                    event: event.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The id of the newest event held, if any.
    pub fn last_id(&self) -> Option<EventId> {
        let inner = self.lock();
        inner
            .entries
            .back()
            .map(|e| EventId::new(e.log_index, e.events.len() as u32 - 1))
    }

    /// The id a reader starts after to see only events appended from now on.
    pub fn tail(&self) -> EventId {
        let inner = self.lock();
        let floor = inner.floor.unwrap_or(EventId::START);
        inner.entries.back().map_or(floor, |e| {
            EventId::new(e.log_index, e.events.len() as u32 - 1).max(floor)
        })
    }

    /// How many held events come after `after` (the publisher's lag).
    pub fn count_after(&self, after: EventId) -> usize {
        let inner = self.lock();
        let first = inner.entries.partition_point(|e| e.log_index < after.log_index);
        inner
            .entries
            .range(first..)
            .map(|e| {
                e.events
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| EventId::new(e.log_index, *p as u32) > after)
                    .count()
            })
            .sum()
    }

    /// The oldest id a reader can resume after (`EventId::START` when the journal is complete).
    pub fn floor(&self) -> EventId {
        self.lock().floor.unwrap_or(EventId::START)
    }

    /// Changes whenever an entry is appended: readers wait on it for more.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }
}

/// An applied entry of term 1 at `log_index` with `events` events, for the journal's tests.
#[cfg(test)]
pub(crate) fn entry(log_index: u64, events: usize) -> AppliedEntry {
    AppliedEntry {
        log_index,
        term: 1,
        events: (0..events).map(|_| Event::LimitsUpdated).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(events: &[JournaledEvent]) -> Vec<String> {
        events.iter().map(|e| e.id.to_string()).collect()
    }

    #[test]
    fn reads_resume_exactly_after_the_given_id() {
        let j = EventJournal::new(100, None);
        j.append(entry(2, 2));
        j.append(entry(3, 0));
        j.append(entry(5, 3));
        assert_eq!(
            ids(&j.read_after(EventId::START, 100).unwrap()),
            ["2-0", "2-1", "5-0", "5-1", "5-2"]
        );
        assert_eq!(
            ids(&j.read_after(EventId::new(2, 1), 100).unwrap()),
            ["5-0", "5-1", "5-2"]
        );
        assert_eq!(ids(&j.read_after(EventId::new(5, 0), 2).unwrap()), ["5-1", "5-2"]);
        assert_eq!(ids(&j.read_after(EventId::new(2, 0), 2).unwrap()), ["2-1", "5-0"]);
        assert!(j.read_after(EventId::new(5, 2), 100).unwrap().is_empty());
        assert_eq!(j.last_id(), Some(EventId::new(5, 2)));
        assert_eq!(j.tail(), EventId::new(5, 2));
        assert_eq!(j.count_after(EventId::new(2, 1)), 3);
        // A re-applied entry is not journaled twice.
        j.append(entry(5, 3));
        assert_eq!(j.read_after(EventId::START, 100).unwrap().len(), 5);
    }

    #[test]
    fn eviction_and_snapshots_raise_the_floor_and_older_resumes_are_gaps() {
        let j = EventJournal::new(3, None);
        j.append(entry(1, 2));
        j.append(entry(2, 2));
        // 4 events > 3: entry 1 is gone, so resuming at or before its last event is a gap...
        assert_eq!(
            j.read_after(EventId::START, 10),
            Err(Gap {
                floor: EventId::new(1, 1)
            })
        );
        assert_eq!(
            j.read_after(EventId::new(1, 0), 10),
            Err(Gap {
                floor: EventId::new(1, 1)
            })
        );
        // ...but after it nothing is missing.
        assert_eq!(ids(&j.read_after(EventId::new(1, 1), 10).unwrap()), ["2-0", "2-1"]);

        j.reset_to_snapshot(9);
        assert!(
            j.read_after(EventId::new(2, 1), 10).is_err(),
            "events before the snapshot are unknown"
        );
        assert!(
            j.read_after(EventId::new(9, 0), 10).is_err(),
            "the snapshot's own entry may have had more events"
        );
        j.append(entry(10, 1));
        assert_eq!(
            ids(&j
                .read_after(EventId::new(10, 0).min(EventId::new(9, u32::MAX)), 10)
                .unwrap()),
            ["10-0"]
        );

        let restored = EventJournal::new(10, Some(40));
        assert_eq!(restored.floor(), EventId::new(40, u32::MAX));
        restored.append(entry(40, 1));
        assert!(
            restored.read_after(restored.floor(), 10).unwrap().is_empty(),
            "entry 40 is in the snapshot"
        );
    }
}
