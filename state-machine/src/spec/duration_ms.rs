//! Durations in pipeline files: a number of milliseconds, or a string with a unit
//! (`"500ms"`, `"90s"`, `"10m"`, `"2h"`, `"1d"`), always stored as milliseconds.
//!
//! Only self-describing formats (JSON, YAML) get the string form; binary encodings of the log
//! and snapshots read and write the plain `u64`.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_any(MillisVisitor)
    } else {
        deserializer.deserialize_u64(MillisVisitor)
    }
}

/// An optional duration, in the same two forms (`null` or absent: `None`).
pub fn deserialize_option<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Millis>::deserialize(deserializer)?.map(|m| m.0))
}

struct Millis(u64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(Millis)
    }
}

/// Parses `"<integer><unit>"` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"90s\", \"10m\" or \"1h\""))?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => {
            return Err(format!(
                "{text:?} has no unit; write \"{n}s\", \"{n}m\" or a number of milliseconds"
            ));
        }
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m, h or d)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

struct MillisVisitor;

impl Visitor<'_> for MillisVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("milliseconds or a duration such as \"90s\", \"10m\", \"1h\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn units_scale_to_milliseconds_and_bad_text_is_refused() {
        assert_eq!(parse("500ms"), Ok(500));
        assert_eq!(parse("90s"), Ok(90_000));
        assert_eq!(parse("10m"), Ok(600_000));
        assert_eq!(parse("2h"), Ok(7_200_000));
        assert_eq!(parse("1d"), Ok(86_400_000));
        assert!(parse("10").unwrap_err().contains("no unit"));
        assert!(parse("10y").unwrap_err().contains("unknown duration unit"));
        assert!(parse("s").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }
}
