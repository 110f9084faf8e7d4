//! Envelope encryption of secrets: values are sealed with AES-256-GCM under a data key; data
//! keys are random, kept in the replicated state wrapped (AES-256-GCM) by a key-encryption
//! key (KEK) that only the nodes' key files hold. Every seal draws a fresh 96-bit nonce, and
//! the associated data binds a value to its tenant, name and data key (and a data key to its
//! id and KEK), so nothing sealed opens under another name.
//!
//! A KEK is named by the first 16 hex digits of a SHA-256 of it (`kek_id`): the state says
//! which KEK a data key needs without holding anything that opens it.

use super::key_file::{KeyFileError, read_key_file};
use flotilla_state_machine::secret::{DATA_KEY_BYTES, MAX_DATA_KEYS, data_key_associated_data, secret_associated_data};
use flotilla_state_machine::{SealedValue, WrappedDataKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "this node's --secrets-key-file lacks key-encryption key {kek_id}, which wraps data key {data_key}: add that key to the file (docs/security.md, rotating keys)"
    )]
    MissingKek { kek_id: String, data_key: String },
    #[error("data key {0} does not open with its key-encryption key: the state or the key file is damaged")]
    BadDataKey(String),
    #[error("secret {name:?} of tenant {tenant:?} does not open under data key {key_id}")]
    BadValue {
        tenant: String,
        name: String,
        key_id: String,
    },
    #[error("secret {name:?} of tenant {tenant:?} is not UTF-8 text")]
    NotUtf8 { tenant: String, name: String },
    #[error("the system's random source failed")]
    Random,
}

/// One key-encryption key and its id.
struct Kek {
    id: String,
    key: LessSafeKey,
}

/// The keys of one node: its KEKs (the first wraps new data keys) and the data keys it has
/// unwrapped so far.
pub struct Keyring {
    keks: Vec<Kek>,
    /// One HMAC key per KEK, derived from it, that signs workers' grants (`sign_grant`): every
    /// node holding the KEKs checks a grant any leader signed, and nothing else can.
    grant_keys: Vec<ring::hmac::Key>,
    /// Unwrapped data keys by id; at most `2 * MAX_DATA_KEYS` (the state holds at most
    /// `MAX_DATA_KEYS`; the cache is emptied when it would grow past that).
    unwrapped: Mutex<BTreeMap<String, Arc<LessSafeKey>>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keks.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring").field("kek_ids", &ids).finish_non_exhaustive()
    }
}

/// The id of a key-encryption key.
pub fn kek_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"flotilla-kek-id-v1")
        .chain_update(key)
        .finalize();
    hex(&digest[..8])
}

/// The grant key of KEK `key`: an HMAC-SHA256 key of its own, so a grant reveals nothing of
/// the key that wraps data keys.
fn grant_key(key: &[u8; 32]) -> ring::hmac::Key {
    let derived = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        b"flotilla-worker-grant-v1",
    );
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

/// The bytes of 64 lowercase hex digits (a grant); `None` for anything else.
fn unhex(text: &str) -> Option<[u8; 32]> {
    // `sign_grant` writes lowercase; the hex crate would take uppercase too.
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(text).ok()?.try_into().ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn aes_key(bytes: &[u8]) -> LessSafeKey {
    // Every caller passes exactly 32 bytes, the one length AES-256 takes.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"))
}

impl Keyring {
    /// A keyring of `keys` (the first one active); never empty.
    pub fn new(keys: &[[u8; 32]]) -> Keyring {
        assert!(!keys.is_empty(), "a keyring holds at least one key");
        Keyring {
            keks: keys
                .iter()
                .map(|k| Kek {
                    id: kek_id(k),
                    key: aes_key(k),
                })
                .collect(),
            grant_keys: keys.iter().map(grant_key).collect(),
            unwrapped: Mutex::new(BTreeMap::new()),
            rng: SystemRandom::new(),
        }
    }

    /// A grant for `message` (what it opens), signed with the active KEK's grant key: 64 hex
    /// digits.
    pub fn sign_grant(&self, message: &[u8]) -> String {
        hex(ring::hmac::sign(&self.grant_keys[0], message).as_ref())
    }

    /// Whether `grant` was signed for `message` by any of this node's KEKs (a grant signed
    /// before a rotation still opens while its KEK is in the file), compared in constant time.
    pub fn verify_grant(&self, message: &[u8], grant: &str) -> bool {
        let Some(tag) = unhex(grant) else { return false };
        self.grant_keys
            .iter()
            .any(|k| ring::hmac::verify(k, message, &tag).is_ok())
    }

    pub fn from_file(path: &Path) -> Result<Keyring, KeyFileError> {
        Ok(Keyring::new(&read_key_file(path)?))
    }

    /// The ids of this node's KEKs, the active one first.
    pub fn kek_ids(&self) -> Vec<String> {
        self.keks.iter().map(|k| k.id.clone()).collect()
    }

    fn nonce(&self) -> Result<[u8; NONCE_LEN], SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SecretError::Random)?;
        Ok(nonce)
    }

    /// A fresh data key, wrapped by the active KEK.
    pub fn new_data_key(&self) -> Result<WrappedDataKey, SecretError> {
        let mut id = [0u8; 8];
        self.rng.fill(&mut id).map_err(|_| SecretError::Random)?;
        let mut key = vec![0u8; DATA_KEY_BYTES];
        self.rng.fill(&mut key).map_err(|_| SecretError::Random)?;
        let kek = &self.keks[0];
        let id = hex(&id);
        let nonce = self.nonce()?;
        let aad = data_key_associated_data(&id, &kek.id);
        let mut wrapped = key.clone();
        kek.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut wrapped)
            .map_err(|_| SecretError::BadDataKey(id.clone()))?;
        self.remember(&id, Arc::new(aes_key(&key)));
        Ok(WrappedDataKey {
            id,
            kek_id: kek.id.clone(),
            nonce,
            wrapped,
        })
    }

    fn remember(&self, id: &str, key: Arc<LessSafeKey>) {
        let mut cache = self.unwrapped.lock().expect("keyring lock");
        if cache.len() >= 2 * MAX_DATA_KEYS {
            cache.clear();
        }
        cache.insert(id.to_string(), key);
    }

    /// The data key `wrapped` unwraps to, with the KEK it names.
    fn data_key(&self, wrapped: &WrappedDataKey) -> Result<Arc<LessSafeKey>, SecretError> {
        if let Some(key) = self.unwrapped.lock().expect("keyring lock").get(&wrapped.id) {
            return Ok(key.clone());
        }
        let kek = self
            .keks
            .iter()
            .find(|k| k.id == wrapped.kek_id)
            .ok_or_else(|| SecretError::MissingKek {
                kek_id: wrapped.kek_id.clone(),
                data_key: wrapped.id.clone(),
            })?;
        let aad = data_key_associated_data(&wrapped.id, &wrapped.kek_id);
        let mut buf = wrapped.wrapped.clone();
        let key = kek
            .key
            .open_in_place(Nonce::assume_unique_for_key(wrapped.nonce), Aad::from(&aad), &mut buf)
            .map_err(|_| SecretError::BadDataKey(wrapped.id.clone()))?;
        if key.len() != DATA_KEY_BYTES {
            return Err(SecretError::BadDataKey(wrapped.id.clone()));
        }
        let key = Arc::new(aes_key(key));
        self.remember(&wrapped.id, key.clone());
        Ok(key)
    }

    /// Seals `value` as secret `name` of `tenant` under data key `key`.
    pub fn seal(
        &self,
        tenant: &str,
        name: &str,
        value: &[u8],
        key: &WrappedDataKey,
    ) -> Result<SealedValue, SecretError> {
        let data_key = self.data_key(key)?;
        let nonce = self.nonce()?;
        let aad = secret_associated_data(tenant, name, &key.id);
        let mut ciphertext = value.to_vec();
        data_key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut ciphertext)
            .map_err(|_| SecretError::BadDataKey(key.id.clone()))?;
        Ok(SealedValue {
            key_id: key.id.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Opens secret `name` of `tenant`, sealed under `key`.
    pub fn open(
        &self,
        tenant: &str,
        name: &str,
        sealed: &SealedValue,
        key: &WrappedDataKey,
    ) -> Result<String, SecretError> {
        let data_key = self.data_key(key)?;
        let bad = || SecretError::BadValue {
            tenant: tenant.to_string(),
            name: name.to_string(),
            key_id: sealed.key_id.clone(),
        };
        if sealed.key_id != key.id {
            return Err(bad());
        }
        let aad = secret_associated_data(tenant, name, &sealed.key_id);
        let mut buf = sealed.ciphertext.clone();
        let plain = data_key
            .open_in_place(Nonce::assume_unique_for_key(sealed.nonce), Aad::from(&aad), &mut buf)
            .map_err(|_| bad())?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::NotUtf8 {
            tenant: tenant.to_string(),
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_of(seed: u8) -> Keyring {
        Keyring::new(&[[seed; 32]])
    }

    #[test]
    fn a_grant_opens_its_message_only_and_survives_a_rotation_while_its_key_is_kept() {
        let ring = ring_of(1);
        let grant = ring.sign_grant(b"source 7 2");
        assert_eq!(grant.len(), 64);
        assert!(ring.verify_grant(b"source 7 2", &grant));
        assert!(!ring.verify_grant(b"source 7 3", &grant), "another attempt");
        assert!(
            !ring_of(2).verify_grant(b"source 7 2", &grant),
            "another cluster's keys"
        );
        let mut flipped = grant.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        assert!(!ring.verify_grant(b"source 7 2", &String::from_utf8(flipped).unwrap()));
        for bad in ["", "zz", &grant[..62], &grant.to_uppercase(), &format!("{grant}00")] {
            assert!(!ring.verify_grant(b"source 7 2", bad), "{bad:?}");
        }
        // After a rotation the new key signs and the old one still checks.
        let rotated = Keyring::new(&[[2; 32], [1; 32]]);
        assert!(rotated.verify_grant(b"source 7 2", &grant));
        assert_ne!(rotated.sign_grant(b"source 7 2"), grant);
        // The grant key is not the KEK itself.
        let plain = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[1; 32]), b"source 7 2");
        assert_ne!(hex(plain.as_ref()), grant);
    }

    #[test]
    fn a_sealed_value_opens_under_its_name_only() {
        let ring = ring_of(1);
        let key = ring.new_data_key().unwrap();
        let sealed = ring.seal("web", "db", b"correct horse battery", &key).unwrap();
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"correct"));
        assert_eq!(ring.open("web", "db", &sealed, &key).unwrap(), "correct horse battery");
        assert!(matches!(
            ring.open("web", "other", &sealed, &key),
            Err(SecretError::BadValue { .. })
        ));
        assert!(matches!(
            ring.open("api", "db", &sealed, &key),
            Err(SecretError::BadValue { .. })
        ));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(ring.open("web", "db", &tampered, &key).is_err());
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let ring = ring_of(1);
        let key = ring.new_data_key().unwrap();
        let a = ring.seal("web", "db", b"same value", &key).unwrap();
        let b = ring.seal("web", "db", b"same value", &key).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn another_node_with_the_same_key_file_opens_what_one_sealed() {
        let (a, b) = (ring_of(7), ring_of(7));
        let key = a.new_data_key().unwrap();
        let sealed = a.seal("web", "db", b"shared value", &key).unwrap();
        assert_eq!(b.open("web", "db", &sealed, &key).unwrap(), "shared value");
    }

    #[test]
    fn a_node_without_the_wrapping_key_says_which_it_lacks() {
        let (old, new) = (ring_of(1), ring_of(2));
        let key = old.new_data_key().unwrap();
        let sealed = old.seal("web", "db", b"some value", &key).unwrap();
        match new.open("web", "db", &sealed, &key) {
            Err(SecretError::MissingKek { kek_id, .. }) => assert_eq!(kek_id, kek_id_of(1)),
            other => panic!("{other:?}"),
        }
        // A keyring holding the new key first and the old one second opens it, and wraps new
        // data keys with the new one.
        let both = Keyring::new(&[[2; 32], [1; 32]]);
        assert_eq!(both.open("web", "db", &sealed, &key).unwrap(), "some value");
        assert_eq!(both.new_data_key().unwrap().kek_id, kek_id_of(2));
    }

    #[test]
    fn a_wrapped_key_moved_to_another_id_does_not_open() {
        let ring = ring_of(3);
        let mut key = ring.new_data_key().unwrap();
        let fresh = ring_of(3);
        key.id = "0000000000000000".into();
        assert!(matches!(fresh.data_key(&key), Err(SecretError::BadDataKey(_))));
    }

    fn kek_id_of(seed: u8) -> String {
        kek_id(&[seed; 32])
    }
}
