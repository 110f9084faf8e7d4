//! Secrets as the replicated state keeps them: sealed, never in plain text.
//!
//! The node that receives a secret seals it (AES-256-GCM under a data key) before it proposes
//! anything, so the Raft log, the snapshots and every replica hold only ciphertext. Data keys
//! are kept here too, each wrapped (AES-256-GCM again) by a key-encryption key that only the
//! nodes' key files hold: the state alone decrypts nothing. `apply` checks shapes and sizes and
//! which data key a value names; it never sees a key or a value.

use serde::{Deserialize, Serialize};

/// Most secrets the state holds, over every tenant.
pub const MAX_SECRETS: usize = 1_024;
/// Longest value a secret may have, before sealing.
pub const MAX_SECRET_VALUE_BYTES: usize = 64 * 1024;
/// Shortest value a secret may have: shorter ones would mask common text in job output
/// (GitLab asks for 8 as well).
pub const MIN_SECRET_VALUE_BYTES: usize = 8;
/// Most sealed bytes over every secret: the secrets' share of each replica's memory.
pub const MAX_SECRET_BYTES_TOTAL: usize = 16 * 1024 * 1024;
/// Most data keys the state holds (the active one and those secrets still name).
pub const MAX_DATA_KEYS: usize = 16;
/// Most secrets one job may use.
pub const MAX_SECRETS_PER_JOB: usize = 32;
/// Bytes AES-256-GCM adds to what it seals (its tag).
pub const SEAL_TAG_BYTES: usize = 16;
/// Length of a data key in bytes (AES-256).
pub const DATA_KEY_BYTES: usize = 32;
/// Length of a key id (a data key's or a key-encryption key's), in hex digits.
pub const KEY_ID_HEX_DIGITS: usize = 16;

/// A value sealed under data key `key_id`: `ciphertext` holds the tag at its end. The
/// associated data binds it to its tenant, name and key, so a sealed value moved to another
/// name does not open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedValue {
    pub key_id: String,
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

/// A data key wrapped by key-encryption key `kek_id` (the first hex digits of a hash of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedDataKey {
    pub id: String,
    pub kek_id: String,
    pub nonce: [u8; 12],
    /// The key and its tag.
    pub wrapped: Vec<u8>,
}

/// One secret of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub sealed: SealedValue,
    /// 1 for the first value, one more for each later one (a re-encryption included).
    pub version: u64,
    pub updated_at_ms: u64,
}

/// Whether `id` is a key id: `KEY_ID_HEX_DIGITS` lowercase hex digits.
pub fn is_key_id(id: &str) -> bool {
    id.len() == KEY_ID_HEX_DIGITS && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The associated data a secret's value is sealed with: its tenant, name and data key, each
/// length-prefixed so no two triples give the same bytes.
pub fn secret_associated_data(tenant: &str, name: &str, key_id: &str) -> Vec<u8> {
    let mut out = b"flotilla-secret-v1".to_vec();
    for part in [tenant, name, key_id] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The associated data a data key is wrapped with: its own id and its wrapping key's.
pub fn data_key_associated_data(id: &str, kek_id: &str) -> Vec<u8> {
    let mut out = b"flotilla-data-key-v1".to_vec();
    for part in [id, kek_id] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_sixteen_lowercase_hex_digits() {
        assert!(is_key_id("0123456789abcdef"));
        assert!(!is_key_id("0123456789ABCDEF"));
        assert!(!is_key_id("0123456789abcde"));
        assert!(!is_key_id("0123456789abcdeg"));
    }

    #[test]
    fn associated_data_tells_names_apart_that_concatenate_alike() {
        let a = secret_associated_data("ab", "c", "k");
        let b = secret_associated_data("a", "bc", "k");
        assert_ne!(a, b);
    }
}
