//! `PackedSet`: an ordered set in shared blocks, a `PackedMap` with no values (`mod.rs` says
//! why); serialized as a sequence, as `imbl::OrdSet` is.

use super::PackedMap;
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// The most elements a decoder reserves room for before it has read them.
const MAX_RESERVED_ELEMENTS: usize = 4096;

#[derive(Clone)]
pub struct PackedSet<K> {
    map: PackedMap<K, ()>,
}

impl<K: Ord + Clone> PartialEq for PackedSet<K> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Ord + Clone> Eq for PackedSet<K> {}

impl<K: Ord + Clone> Default for PackedSet<K> {
    fn default() -> Self {
        Self { map: PackedMap::new() }
    }
}

impl<K: Ord + Clone> PackedSet<K> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Adds `key`; whether it was absent.
    pub fn insert(&mut self, key: K) -> bool {
        self.map.insert(key, ()).is_none()
    }

    /// Takes `key` out; whether it was there.
    pub fn remove(&mut self, key: &K) -> bool {
        self.map.remove(key).is_some()
    }

    /// The smallest element.
    pub fn first(&self) -> Option<&K> {
        self.map.first().map(|(k, _)| k)
    }

    /// Every element, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.map.keys()
    }

    /// Whether every element of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.len() <= other.len() && self.iter().all(|k| other.contains(k))
    }

    /// How many blocks hold the elements.
    pub fn blocks(&self) -> usize {
        self.map.blocks()
    }

    pub(crate) fn well_formed(&self) -> bool {
        self.map.well_formed()
    }
}

impl<K: Ord + Clone> FromIterator<K> for PackedSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(keys: I) -> Self {
        Self {
            map: keys.into_iter().map(|k| (k, ())).collect(),
        }
    }
}

impl<K: Ord + Clone + fmt::Debug> fmt::Debug for PackedSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone + Serialize> Serialize for PackedSet<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for k in self.iter() {
            seq.serialize_element(k)?;
        }
        seq.end()
    }
}

impl<'de, K: Ord + Clone + Deserialize<'de>> Deserialize<'de> for PackedSet<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ElementsVisitor(PhantomData))
    }
}

struct ElementsVisitor<K>(PhantomData<K>);

impl<'de, K: Ord + Clone + Deserialize<'de>> Visitor<'de> for ElementsVisitor<K> {
    type Value = PackedSet<K>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut keys = Vec::with_capacity(access.size_hint().unwrap_or(0).min(MAX_RESERVED_ELEMENTS));
        while let Some(k) = access.next_element()? {
            keys.push(k);
        }
        Ok(keys.into_iter().collect())
    }
}
