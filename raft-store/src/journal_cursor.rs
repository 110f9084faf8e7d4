//! One reader's position in the `EventJournal`, and its wait for more.
//!
//! Every reader of the journal (the SSE endpoint, the NATS publisher, the applied observer)
//! does the same three things: read a batch after the last event it took, move past it, and
//! when nothing is left wait until an entry is appended. The order matters and is kept here
//! once: the append notification is marked seen *before* the read, so an append that races
//! with the read still wakes the wait that follows it.

use crate::event_journal::{EventJournal, Gap, JournaledEvent};
use flotilla_state_machine::EventId;
use std::sync::Arc;
use tokio::sync::watch;

pub struct JournalCursor {
    journal: Arc<EventJournal>,
    appended: watch::Receiver<u64>,
    after: EventId,
}

impl JournalCursor {
    /// A cursor that reads the events after `after`.
    pub fn new(journal: Arc<EventJournal>, after: EventId) -> JournalCursor {
        let appended = journal.watch();
        JournalCursor {
            journal,
            appended,
            after,
        }
    }

    /// A cursor that reads only events appended from now on.
    pub fn at_tail(journal: Arc<EventJournal>) -> JournalCursor {
        let after = journal.tail();
        JournalCursor::new(journal, after)
    }

    /// The last event read (the cursor reads what comes after it).
    pub fn after(&self) -> EventId {
        self.after
    }

    /// Moves the cursor: the next batch starts after `after`.
    pub fn seek(&mut self, after: EventId) {
        self.after = after;
    }

    pub fn journal(&self) -> &EventJournal {
        &self.journal
    }

    /// Up to `max` events after the cursor, and moves past them. An empty batch means
    /// everything is read: `appended` then waits for more. `Gap` when the journal no longer
    /// holds what follows the cursor (the cursor does not move; `seek` to `gap.floor` to go
    /// on from what is held).
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<JournaledEvent>, Gap> {
        self.appended.borrow_and_update();
        let batch = self.journal.read_after(self.after, max)?;
        if let Some(last) = batch.last() {
            self.after = last.id;
        }
        Ok(batch)
    }

    /// Waits until an entry is appended after the last `next_batch` (at once if one was
    /// appended since). `false` when the journal is gone and nothing more will come.
    pub async fn appended(&mut self) -> bool {
        self.appended.changed().await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::JournalCursor;
    use crate::event_journal::{EventJournal, Gap, entry};
    use flotilla_state_machine::EventId;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_cursor_reads_each_event_once_and_wakes_for_an_append_that_raced_its_read() {
        let journal = Arc::new(EventJournal::new(100, None));
        journal.append(entry(1, 2));
        let mut cursor = JournalCursor::new(journal.clone(), EventId::START);
        assert_eq!(cursor.next_batch(1).unwrap().len(), 1);
        assert_eq!(cursor.next_batch(10).unwrap().len(), 1);
        assert_eq!(cursor.after(), EventId::new(1, 1));
        assert!(cursor.next_batch(10).unwrap().is_empty());
        // Appended after the empty read and before the wait: the wait returns at once.
        journal.append(entry(2, 1));
        let woke = tokio::time::timeout(Duration::from_secs(5), cursor.appended()).await;
        assert_eq!(woke, Ok(true));
        assert_eq!(cursor.next_batch(10).unwrap()[0].id, EventId::new(2, 0));
        // A cursor at the tail sees only what comes next.
        let mut tail = JournalCursor::at_tail(journal.clone());
        assert!(tail.next_batch(10).unwrap().is_empty());
        journal.append(entry(3, 1));
        assert_eq!(tail.next_batch(10).unwrap()[0].id, EventId::new(3, 0));
    }

    #[test]
    fn a_cursor_below_the_floor_gets_the_gap_and_can_seek_past_it() {
        let journal = Arc::new(EventJournal::new(2, None));
        journal.append(entry(1, 2));
        journal.append(entry(2, 2));
        let mut cursor = JournalCursor::new(journal, EventId::START);
        let gap = cursor.next_batch(10).unwrap_err();
        assert_eq!(
            gap,
            Gap {
                floor: EventId::new(1, 1)
            }
        );
        assert_eq!(cursor.after(), EventId::START, "a gap does not move the cursor");
        cursor.seek(gap.floor);
        assert_eq!(cursor.next_batch(10).unwrap().len(), 2);
    }
}
