//! The string maps of a job's spec (`env`, `secrets`, `secret_files`, `constraints`), kept as
//! one sorted vector each.
//!
//! Every node holds the spec of every live job. A `BTreeMap` allocates a node with room for
//! eleven entries (some 540 bytes) for its first one, so two one-entry maps cost a job about
//! a kilobyte; a sorted vector costs what its entries are. The API and the snapshots see a
//! map either way: it serializes as one, in key order, exactly as a `BTreeMap` does, so the
//! encoded bytes are unchanged.

use compact_str::CompactString;
use litemap::LiteMap;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A map of strings to strings, sorted by key; a later duplicate key replaces the earlier
/// (as in a `BTreeMap`). Keys and values of up to 24 bytes are held inline (`CompactString`),
/// so a short variable or label costs no allocation of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct StringMap(LiteMap<CompactString, CompactString>);

impl StringMap {
    pub fn new() -> StringMap {
        StringMap::default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Sets `key` to `value`, returning the value it replaced.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        self.0.insert(key.into(), value.into()).map(String::from)
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key).map(String::from)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.keys().map(|k| k.as_str())
    }
}

impl<K: Into<CompactString>, V: Into<CompactString>> FromIterator<(K, V)> for StringMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = LiteMap::new();
        for (k, v) in iter {
            map.insert(k.into(), v.into());
        }
        StringMap(map)
    }
}

impl<K: Into<CompactString>, V: Into<CompactString>, const N: usize> From<[(K, V); N]> for StringMap {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for StringMap {
    fn from(map: BTreeMap<String, String>) -> Self {
        // Already in key order: each entry appends.
        map.into_iter().collect()
    }
}

impl From<&StringMap> for BTreeMap<String, String> {
    fn from(map: &StringMap) -> Self {
        map.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl<'a> IntoIterator for &'a StringMap {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn DoubleEndedIterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl Serialize for StringMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
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
                // past a small bound.
                let mut map = LiteMap::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some((key, value)) = access.next_entry::<CompactString, CompactString>()? {
                    // In order (as encoded from a map) each entry appends; otherwise insert.
                    if let Some((key, value)) = map.try_append(key, value) {
                        map.insert(key, value);
                    }
                }
                Ok(StringMap(map))
            }
        }

        deserializer.deserialize_map(MapVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
