//! Cron expressions, read with the `cron` crate: five fields (minute hour day month weekday)
//! as crontab writes them, or six with seconds first; times in UTC. And the pure decision of
//! what a schedule does once its due time has come (`fire_plan`), tested as data.

use flotilla_state_machine::schedule::MissedPolicy;
use std::str::FromStr;

/// A due time older than this when the leader sees it was missed (the cluster had no leader).
pub const MISSED_AFTER_MS: u64 = 60_000;

/// The first time `expr` names after `after_ms` (milliseconds since the epoch, UTC).
pub fn next_after(expr: &str, after_ms: u64) -> Result<u64, String> {
    let fields = expr.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expr}"),
        6 => expr.to_string(),
        n => {
            return Err(format!(
                "{n} fields: give five (minute hour day month weekday) or six (seconds first)"
            ));
        }
    };
    let schedule = cron::Schedule::from_str(&full).map_err(|e| e.to_string())?;
    let after =
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(i64::try_from(after_ms).map_err(|e| e.to_string())?)
            .ok_or("a time out of range")?;
    let next = schedule.after(&after).next().ok_or("it names no time to come")?;
    u64::try_from(next.timestamp_millis()).map_err(|e| e.to_string())
}

/// What to do about a due time: run it (on time, or once for missed ones under `run_once`),
/// or skip it; and the next due time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirePlan {
    pub run: bool,
    /// Why it is skipped, when it is.
    pub skipped: Option<String>,
    pub next_due_ms: u64,
}

/// The next due time of a schedule whose expression names no time to come: never.
pub const NEVER_MS: u64 = u64::MAX;

/// The plan for a schedule due at `due_ms` seen at `now_ms` (`next_of` reads the expression).
/// A time seen within `MISSED_AFTER_MS` runs, and the next is the one after it: times a short
/// leader change delayed each run in turn, none lost. A time seen later was missed, and the
/// missed ones are collapsed: the next due time is the first after now, so an outage of a
/// week runs a nightly schedule once (`run_once`) or not at all (`skip`), never seven times.
/// An expression that names no time after it (or no longer parses) makes this due time the
/// last: the next is `NEVER_MS`, so the schedule leaves the due list instead of being looked
/// at, and holding a place among the schedules fired per tick, forever.
pub fn fire_plan(
    due_ms: u64,
    now_ms: u64,
    missed: MissedPolicy,
    next_of: impl Fn(u64) -> Result<u64, String>,
) -> FirePlan {
    let next_of = |after: u64| next_of(after).unwrap_or(NEVER_MS);
    let late = now_ms.saturating_sub(due_ms) > MISSED_AFTER_MS;
    match (late, missed) {
        (false, _) => FirePlan {
            run: true,
            skipped: None,
            next_due_ms: next_of(due_ms),
        },
        (true, MissedPolicy::Skip) => FirePlan {
            run: false,
            skipped: Some(format!(
                "missed: due at {due_ms} ms, seen at {now_ms} ms (no leader meanwhile); the schedule skips missed times"
            )),
            next_due_ms: next_of(now_ms),
        },
        (true, MissedPolicy::RunOnce) => FirePlan {
            run: true,
            skipped: None,
            next_due_ms: next_of(now_ms),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR_MS: u64 = 1_767_225_600_000;

    #[test]
    fn five_and_six_field_expressions_name_their_times_in_utc() {
        assert_eq!(next_after("0 3 * * *", NEW_YEAR_MS), Ok(NEW_YEAR_MS + 3 * 3_600_000));
        assert_eq!(next_after("*/2 * * * * *", NEW_YEAR_MS), Ok(NEW_YEAR_MS + 2_000));
        for bad in ["", "* * *", "61 * * * *", "not cron at all x", "* * * * * * * *"] {
            assert!(next_after(bad, NEW_YEAR_MS).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn any_text_is_an_answer_never_a_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(22);
        let alphabet: Vec<char> = "0123456789*/,-?LW# abcdefghijklmnopqrstuvwxyzJANFEBMONSUN\u{0}é"
            .chars()
            .collect();
        for _ in 0..20_000 {
            let len = rng.random_range(0..40);
            let text: String = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let _ = next_after(&text, rng.random_range(0..u64::MAX / 2));
        }
        for edge in [
            "59 59 23 31 12 *",
            "0 0 0 29 2 *",
            "0 0 0 31 2 *",
            "* * * * * * 2099",
            "0 0 0 1 1 * 1970",
        ] {
            let _ = next_after(edge, NEW_YEAR_MS);
            let _ = next_after(edge, u64::MAX);
        }
    }

    #[test]
    fn a_time_on_time_runs_and_missed_ones_run_once_or_are_skipped() {
        let hourly = |after: u64| Ok((after / 3_600_000 + 1) * 3_600_000);
        let due = NEW_YEAR_MS;
        let on_time = fire_plan(due, due + 1_000, MissedPolicy::Skip, hourly);
        assert_eq!((on_time.run, on_time.next_due_ms), (true, due + 3_600_000));
        // Seen five seconds late (a leader change): it runs, and the next time is the one after
        // it, even though that one has come too: each runs in turn.
        let every_two_seconds = |after: u64| Ok((after / 2_000 + 1) * 2_000);
        let delayed = fire_plan(due, due + 5_000, MissedPolicy::Skip, every_two_seconds);
        assert_eq!((delayed.run, delayed.next_due_ms), (true, due + 2_000));
        // Down for a day: one run (or none), and the next time is the first to come.
        let day_later = due + 24 * 3_600_000 + 5 * 60_000;
        let once = fire_plan(due, day_later, MissedPolicy::RunOnce, hourly);
        assert_eq!((once.run, once.next_due_ms), (true, due + 25 * 3_600_000));
        let skip = fire_plan(due, day_later, MissedPolicy::Skip, hourly);
        assert!(!skip.run && skip.skipped.is_some());
        assert_eq!(skip.next_due_ms, due + 25 * 3_600_000);
        // No time to come: this one runs, and the schedule is never due again.
        let last = fire_plan(due, due + 1_000, MissedPolicy::Skip, |_| Err("no time to come".into()));
        assert_eq!((last.run, last.next_due_ms), (true, NEVER_MS));
    }
}
