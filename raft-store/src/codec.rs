//! Encoding of every record the store persists: one format-version byte, then bincode.
//!
//! The version byte lets a later release read old records or refuse them clearly instead of
//! misreading them.
//!
//! Decoding is bounded by what came in. bincode allocates the length a record claims for a
//! string or byte buffer before it reads the bytes, so a ten-byte message claiming 2^60 bytes
//! would abort the process. Every decode therefore runs with a limit on the bytes the decoder
//! may claim: `DECODE_EXPANSION` times the input's length (a varint `u64` takes one byte on the
//! wire and claims eight), rounded up to a power of four, at least `MIN_DECODE_LIMIT_BYTES`.
//! Network messages, log entries, votes and snapshots all go through `decode` or
//! `decode_from_read`.

use serde::{Serialize, de::DeserializeOwned};
use std::io;

/// Version of the record layout written by this build.
/// 2: `Limits` gained `max_resources`, `max_workers_per_pool` and `max_pipeline_bytes`.
/// 3: `Proposal` gained its client session stamp (`request`), `Limits` the session bounds.
/// 4: `State` gained the API tokens; `Command` `CreateToken` and `RevokeToken`.
/// 5: `Quota` (in `SetTenantQuota` and the state) gained `max_priority`; `Command`
///    `CreateJoinToken` and `RedeemJoinToken`.
/// 6: `JobSpec` gained `secrets`; `Command` `SetSecret`, `DeleteSecret` and `RotateDataKey`;
///    `Proposal` its `actor`.
/// 7: `State` gained the repositories, `Pipeline` and `SubmitPipeline` a `source`; `Command`
///    `PutRepository`, `RemoveRepository` and `RecordDelivery`.
/// 8: `JobSpec` gained `if`, `manual` and `approval_role`; `Job` its `gate`; `JobState`
///    AWAITING_APPROVAL and SKIPPED; `ArchivedPipeline` `skipped`; `Command` `ApproveJob`.
/// 9: `JobSpec` gained `artifacts`; `Limits` the artifact limits; `State` the artifact
///    records; `FailureReason` and `AttemptOutcome` their artifact failures; `Command`
///    `ArtifactStored`, `ArtifactsFailed` and `ExpireArtifacts`.
/// 10: `JobSpec` gained `cache`; `Limits` `max_cache_bytes_per_tenant`; `State` the caches;
///    `AttemptRecord` its `cache`; `Command` `CacheSaved`, `CacheRestored` and `ClearCaches`.
pub const FORMAT_VERSION: u8 = 10;

/// How many bytes the decoder may claim per input byte.
pub const DECODE_EXPANSION: u64 = 16;
/// The smallest decode limit, for tiny records.
pub const MIN_DECODE_LIMIT_BYTES: u64 = 64 * 1024;

pub(crate) fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Runs `$body` with `$cfg` bound to bincode's standard configuration limited to the tier
/// that fits `$len` input bytes (see the module doc). Tiers are powers of four from 64 KiB to
/// 64 GiB; a larger input is refused.
macro_rules! with_decode_limit {
    ($len:expr, |$cfg:ident| $body:expr) => {{
        let need = ($len as u64)
            .saturating_mul($crate::codec::DECODE_EXPANSION)
            .max($crate::codec::MIN_DECODE_LIMIT_BYTES);
        let base = $crate::codec::config();
        if need <= 1 << 16 {
            let $cfg = base.with_limit::<{ 1 << 16 }>();
            $body
        } else if need <= 1 << 18 {
            let $cfg = base.with_limit::<{ 1 << 18 }>();
            $body
        } else if need <= 1 << 20 {
            let $cfg = base.with_limit::<{ 1 << 20 }>();
            $body
        } else if need <= 1 << 22 {
            let $cfg = base.with_limit::<{ 1 << 22 }>();
            $body
        } else if need <= 1 << 24 {
            let $cfg = base.with_limit::<{ 1 << 24 }>();
            $body
        } else if need <= 1 << 26 {
            let $cfg = base.with_limit::<{ 1 << 26 }>();
            $body
        } else if need <= 1 << 28 {
            let $cfg = base.with_limit::<{ 1 << 28 }>();
            $body
        } else if need <= 1 << 30 {
            let $cfg = base.with_limit::<{ 1 << 30 }>();
            $body
        } else if need <= 1 << 32 {
            let $cfg = base.with_limit::<{ 1 << 32 }>();
            $body
        } else if need <= 1 << 34 {
            let $cfg = base.with_limit::<{ 1 << 34 }>();
            $body
        } else if need <= 1 << 36 {
            let $cfg = base.with_limit::<{ 1 << 36 }>();
            $body
        } else {
            Err($crate::codec::invalid_data(format!(
                "record of {} bytes is larger than this build decodes",
                $len
            )))
        }
    }};
}
pub(crate) use with_decode_limit;

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(invalid_data)?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    let (&version, body) = bytes.split_first().ok_or_else(|| invalid_data("empty record"))?;
    check_version(version)?;
    let (value, read) = with_decode_limit!(body.len(), |cfg| bincode::serde::decode_from_slice(body, cfg)
        .map_err(invalid_data))?;
    if read != body.len() {
        return Err(invalid_data(format!("record has {} trailing bytes", body.len() - read)));
    }
    Ok(value)
}

/// Writes `value`'s record (version byte, then bincode) into `w`, as `encode` would return it.
pub fn encode_into<T: Serialize>(value: &T, w: &mut impl io::Write) -> io::Result<()> {
    w.write_all(&[FORMAT_VERSION])?;
    bincode::serde::encode_into_std_write(value, w, config()).map_err(invalid_data)?;
    Ok(())
}

/// The length of `value`'s record as `encode` would write it, without building it.
pub fn encoded_len<T: Serialize>(value: &T) -> io::Result<usize> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config()).map_err(invalid_data)?;
    Ok(1 + size.bytes_written)
}

/// Decodes one bincode value (no version byte) from `r`, which holds at most `len_bytes`,
/// with the decode limit of that length.
pub(crate) fn decode_from_read<T: DeserializeOwned>(r: &mut impl io::Read, len_bytes: u64) -> io::Result<T> {
    with_decode_limit!(len_bytes, |cfg| bincode::serde::decode_from_std_read(r, cfg)
        .map_err(invalid_data))
}

pub(crate) fn check_version(version: u8) -> io::Result<()> {
    if version != FORMAT_VERSION {
        return Err(invalid_data(format!(
            "record format version {version}, this build reads {FORMAT_VERSION}"
        )));
    }
    Ok(())
}

pub(crate) fn invalid_data(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let bytes = encode(&(7u64, "x".to_string())).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), (7, "x".to_string()));
        let mut wrong = bytes.clone();
        wrong[0] = FORMAT_VERSION + 1;
        assert!(
            decode::<(u64, String)>(&wrong)
                .unwrap_err()
                .to_string()
                .contains("format version")
        );
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode::<(u64, String)>(&trailing).is_err());
        assert!(decode::<u64>(&[]).is_err());
    }

    /// A record that claims a huge string or buffer is refused without allocating it. Before
    /// the limit, each of these aborted the process (allocation failure), so the test process
    /// itself would die here.
    #[test]
    fn claimed_lengths_past_the_input_are_refused() {
        for claimed in [u64::MAX, 1 << 62, 1 << 40, 1 << 33, 1 << 20] {
            let mut bytes = vec![FORMAT_VERSION, 253];
            bytes.extend_from_slice(&claimed.to_le_bytes());
            bytes.extend_from_slice(b"abc");
            assert!(decode::<String>(&bytes).is_err(), "{claimed}");
            assert!(decode::<Vec<u8>>(&bytes).is_err(), "{claimed}");
            assert!(decode::<Vec<String>>(&bytes).is_err(), "{claimed}");
            assert!(decode::<(u64, Vec<u8>)>(&bytes).is_err(), "{claimed}");
        }
    }

    /// The limit still admits real records, including ones that claim several times their
    /// encoded size (a varint `u64` claims eight bytes).
    #[test]
    fn real_records_decode_under_the_limit() {
        let zeros = vec![0u64; 100_000];
        assert_eq!(decode::<Vec<u64>>(&encode(&zeros).unwrap()).unwrap(), zeros);
        let text = "x".repeat(3 * 1024 * 1024);
        assert_eq!(decode::<String>(&encode(&text).unwrap()).unwrap(), text);
        assert_eq!(encoded_len(&text).unwrap(), encode(&text).unwrap().len());
        let strings = vec![String::new(); 50_000];
        assert_eq!(decode::<Vec<String>>(&encode(&strings).unwrap()).unwrap(), strings);
    }
}
