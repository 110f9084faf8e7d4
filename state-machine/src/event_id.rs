//! The identity of an event: the log index of the entry that produced it and its position
//! among that entry's events. Every replica emits the same events for the same entry, so an id
//! names the same event on every node: a stream consumer can resume on any node, and the NATS
//! publisher's `Nats-Msg-Id` stays the same across leaders.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    pub log_index: u64,
    pub position: u32,
}

impl EventId {
    pub fn new(log_index: u64, position: u32) -> Self {
        EventId { log_index, position }
    }

    /// The id before every event (`"0"` in text): resuming after it replays from the start.
    pub const START: EventId = EventId {
        log_index: 0,
        position: 0,
    };
}

impl fmt::Display for EventId {
    /// `<log_index>-<position>`, e.g. `1042-3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.log_index, self.position)
    }
}

/// Why a text is not an event id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an event id (expected <log_index>-<position>, e.g. 1042-3, or 0 for the start): {0:?}")]
pub struct ParseEventIdError(pub String);

impl FromStr for EventId {
    type Err = ParseEventIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ParseEventIdError(text.chars().take(64).collect());
        if text == "0" {
            return Ok(EventId::START);
        }
        let (index, position) = text.split_once('-').ok_or_else(bad)?;
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(index) || !all_digits(position) {
            return Err(bad());
        }
        Ok(EventId {
            log_index: index.parse().map_err(|_| bad())?,
            position: position.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_orders_by_index_then_position() {
        let id = EventId::new(1042, 3);
        assert_eq!(id.to_string(), "1042-3");
        assert_eq!("1042-3".parse::<EventId>(), Ok(id));
        assert_eq!("0".parse::<EventId>(), Ok(EventId::START));
        assert!(EventId::new(1042, 3) < EventId::new(1042, 4));
        assert!(EventId::new(1042, 9) < EventId::new(1043, 0));
        for bad in [
            "",
            "12",
            "12-",
            "-3",
            "a-1",
            "1-b",
            "1-2-3",
            "+1-2",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad:?} parsed");
        }
    }
}
