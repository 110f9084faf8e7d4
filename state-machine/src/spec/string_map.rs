//! The string maps of a job's spec (`env`, `secrets`, `secret_files`, `constraints`), packed
//! into one string each.
//!
//! Every node holds the spec of every live job. A `BTreeMap` allocates a node with room for
//! eleven entries (some 540 bytes) for its first one, so two one-entry maps cost a job about
//! a kilobyte; a vector of pairs costs a 64-byte allocation for its first entry and each
//! string's own. Packed into one `CompactString` (each key and value after its length), a
//! map whose entries take up to 24 bytes (`SIM_DURATION_MS=600000`, `os=linux`) costs no
//! allocation at all, and a larger one a single allocation of its size. Reads scan the
//! entries: a job has at most a few hundred (`Limits::max_env_per_job`, `max_labels`).
//!
//! The API and the snapshots see a map either way: it serializes as one, in key order,
//! exactly as a `BTreeMap` does, so the encoded bytes are unchanged.

use compact_str::CompactString;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A map of strings to strings, sorted by key; a later duplicate key replaces the earlier
/// (as in a `BTreeMap`). The packing is canonical (sorted, each key once), so two maps are
/// equal exactly when their packed strings are.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct StringMap(CompactString);

/// A length is written as base-32 digits, most significant first: a final digit is one byte
/// below 32, a digit with more to come is 32 plus its value. Every byte stays below 64, so the
/// packed text is ASCII around the entries' own UTF-8.
fn push_len(out: &mut CompactString, len: usize) {
    let mut digits = [0u8; 13];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = (n % 32) as u8;
        n /= 32;
        if n == 0 {
            break;
        }
    }
    let last = digits.len() - 1;
    for (j, d) in digits.iter().enumerate().skip(i) {
        out.push(char::from(if j == last { *d } else { 32 + *d }));
    }
}

/// Reads one length at `at`; the length and the position after it. `None` past the end.
fn read_len(bytes: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut n = 0usize;
    loop {
        let b = *bytes.get(at)?;
        at += 1;
        n = n.checked_mul(32)?.checked_add(usize::from(b % 32))?;
        if b < 32 {
            return Some((n, at));
        }
    }
}

/// The entries of a packed string, in order.
struct Entries<'a> {
    packed: &'a str,
    at: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.packed.as_bytes();
        let (key_len, key_at) = read_len(bytes, self.at)?;
        let key = self.packed.get(key_at..key_at.checked_add(key_len)?)?;
        let (value_len, value_at) = read_len(bytes, key_at + key_len)?;
        let value = self.packed.get(value_at..value_at.checked_add(value_len)?)?;
        self.at = value_at + value_len;
        Some((key, value))
    }
}

impl StringMap {
    pub fn new() -> StringMap {
        StringMap::default()
    }

    /// Packs entries already sorted by key, each key once.
    fn pack<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> StringMap {
        let mut packed = CompactString::default();
        for (key, value) in entries {
            push_len(&mut packed, key.len());
            packed.push_str(key);
            push_len(&mut packed, value.len());
            packed.push_str(value);
        }
        StringMap(packed)
    }

    /// Packs any entries: sorted by key, a later duplicate replacing the earlier.
    fn pack_unsorted(mut entries: Vec<(CompactString, CompactString)>) -> StringMap {
        // Stable: among equal keys the later stays later, and is the one kept below.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(&str, &str)> = Vec::with_capacity(entries.len());
        for (key, value) in &entries {
            match kept.last_mut() {
                Some(last) if last.0 == key.as_str() => last.1 = value.as_str(),
                _ => kept.push((key.as_str(), value.as_str())),
            }
        }
        StringMap::pack(kept)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        Entries {
            packed: self.0.as_str(),
            at: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, returning the value it replaced. Repacks the map: for building
    /// one entry at a time, `collect` is the cheaper way.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        let old = self.get(&key).map(str::to_string);
        let mut entries: Vec<(&str, &str)> = self.iter().filter(|(k, _)| *k != key).collect();
        let at = entries.partition_point(|(k, _)| *k < key.as_str());
        entries.insert(at, (&key, &value));
        let packed = StringMap::pack(entries);
        *self = packed;
        old
    }
}

impl fmt::Debug for StringMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<CompactString>, V: Into<CompactString>> FromIterator<(K, V)> for StringMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        StringMap::pack_unsorted(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<K: Into<CompactString>, V: Into<CompactString>, const N: usize> From<[(K, V); N]> for StringMap {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for StringMap {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already in key order, each key once.
        StringMap::pack(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl From<&StringMap> for BTreeMap<String, String> {
    fn from(map: &StringMap) -> Self {
        map.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl<'a> IntoIterator for &'a StringMap {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl Serialize for StringMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // With its length first, as binary encodings need it.
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StringMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;

        impl<'de> Visitor<'de> for MapVisitor {
            type Value = StringMap;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of strings to strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StringMap, A::Error> {
                // The hint is the encoder's word (a snapshot's length prefix); never trusted
                // past a small bound. Collected, then sorted and packed once.
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = access.next_entry::<CompactString, CompactString>()? {
                    entries.push(entry);
                }
                Ok(StringMap::pack_unsorted(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys and values of any length (up to several length digits), ASCII, control bytes
    /// below 64 (the length digits' own range) and multi-byte UTF-8.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,3}",
            "[\\x00-\\x3f]{0,40}",
            "\\PC{0,20}",
            (0usize..3000).prop_map(|n| "é".repeat(n)),
        ]
    }

    proptest! {
        #[test]
        fn it_behaves_as_a_btree_map(
            entries in prop::collection::vec((text(), text()), 0..12),
            extra in (text(), text()),
        ) {
            let tree: BTreeMap<String, String> = entries.iter().cloned().collect();
            let mut map: StringMap = entries.iter().cloned().collect();
            let pairs = |m: &StringMap| m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
            prop_assert_eq!(pairs(&map), tree.clone().into_iter().collect::<Vec<_>>());
            prop_assert_eq!(map.len(), tree.len());
            prop_assert_eq!(map.is_empty(), tree.is_empty());
            for (k, v) in &tree {
                prop_assert_eq!(map.get(k), Some(v.as_str()));
            }
            prop_assert_eq!(&map, &StringMap::from(tree.clone()));
            let config = bincode::config::standard();
            let encoded = bincode::serde::encode_to_vec(&map, config).unwrap();
            prop_assert_eq!(&encoded, &bincode::serde::encode_to_vec(&tree, config).unwrap());
            let (decoded, _): (StringMap, usize) = bincode::serde::decode_from_slice(&encoded, config).unwrap();
            prop_assert_eq!(&decoded, &map);

            let mut tree = tree;
            let replaced = map.insert(extra.0.clone(), extra.1.clone());
            prop_assert_eq!(replaced, tree.insert(extra.0.clone(), extra.1.clone()));
            prop_assert_eq!(pairs(&map), tree.clone().into_iter().collect::<Vec<_>>());
            prop_assert_eq!(map.get(&extra.0), Some(extra.1.as_str()));
        }
    }

    #[test]
    fn a_short_map_needs_no_allocation() {
        let map = StringMap::from([("SIM_DURATION_MS", "600000")]);
        assert!(!map.0.is_heap_allocated());
        let map = StringMap::from([("os", "linux"), ("arch", "amd64")]);
        assert!(!map.0.is_heap_allocated());
        assert_eq!(map.get("os"), Some("linux"));
        assert_eq!(format!("{map:?}"), r#"{"arch": "amd64", "os": "linux"}"#);
    }

    #[test]
    fn it_encodes_as_a_btree_map_does() {
        let tree = BTreeMap::from([("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())]);
        let map = StringMap::from([("b", "2"), ("a", "1")]);
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            serde_json::to_string(&tree).unwrap()
        );
        let config = bincode::config::standard();
        let encoded = bincode::serde::encode_to_vec(&map, config).unwrap();
        assert_eq!(encoded, bincode::serde::encode_to_vec(&tree, config).unwrap());
        let (decoded, _): (StringMap, usize) = bincode::serde::decode_from_slice(&encoded, config).unwrap();
        assert_eq!(decoded, map);
        assert_eq!(serde_json::to_string(&StringMap::new()).unwrap(), "{}");
    }

    #[test]
    fn it_reads_keys_in_any_order_and_keeps_the_last_of_a_duplicate() {
        let map: StringMap = serde_json::from_str(r#"{"z":"1","a":"2","z":"3"}"#).unwrap();
        let pairs: Vec<_> = map.iter().collect();
        assert_eq!(pairs, [("a", "2"), ("z", "3")]);
        let tree: BTreeMap<String, String> = serde_json::from_str(r#"{"z":"1","a":"2","z":"3"}"#).unwrap();
        assert_eq!(BTreeMap::from(&map), tree);
    }

    #[test]
    fn it_refuses_what_is_not_a_map_of_strings() {
        assert!(serde_json::from_str::<StringMap>(r#"[["a","b"]]"#).is_err());
        assert!(serde_json::from_str::<StringMap>(r#"{"a":1}"#).is_err());
    }
}
