//! `PackedMap`: an ordered map in shared blocks of up to `BLOCK_ENTRIES` entries (`mod.rs`
//! says why).

use super::BLOCK_ENTRIES;
use imbl::OrdMap;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// Entries in key order, shared between clones until one of them writes.
type Block<K, V> = Arc<Vec<(K, V)>>;

/// A block that may hold a key, and where the key is in it or would go.
type Found<'a, K, V> = (&'a K, &'a Block<K, V>, Result<usize, usize>);

/// The most entries a decoder reserves room for before it has read them.
const MAX_RESERVED_ENTRIES: usize = 4096;

#[derive(Clone)]
pub struct PackedMap<K, V> {
    /// Every block, by its first key. No block is empty.
    blocks: OrdMap<K, Block<K, V>>,
    len: usize,
}

impl<K: Ord + Clone, V: Clone> Default for PackedMap<K, V> {
    fn default() -> Self {
        Self {
            blocks: OrdMap::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Clone, V: Clone> PackedMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The block that holds `key` if anything does, and `key`'s place in it.
    fn find(&self, key: &K) -> Option<Found<'_, K, V>> {
        let (first, block) = self.blocks.get_prev(key)?;
        Some((first, block, block.binary_search_by(|(k, _)| k.cmp(key))))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let (_, block, at) = self.find(key)?;
        block.get(at.ok()?).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// The entry with the smallest key.
    pub fn first(&self) -> Option<(&K, &V)> {
        let (_, block) = self.blocks.get_min()?;
        block.first().map(|(k, v)| (k, v))
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let (first, _, Ok(i)) = self.find(key)? else {
            return None;
        };
        let first = first.clone();
        let block = Arc::make_mut(self.blocks.get_mut(&first)?);
        block.get_mut(i).map(|(_, v)| v)
    }

    /// Inserts `value` under `key`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let Some(first) = self
            .blocks
            .get_prev(&key)
            .or_else(|| self.blocks.get_min().map(|(k, b)| (k, b)))
            .map(|(k, _)| k.clone())
        else {
            self.blocks.insert(key.clone(), Arc::new(vec![(key, value)]));
            self.len = 1;
            return None;
        };
        if key < first {
            // Smaller than every key: the first block takes it at its front, under a new key.
            let mut block = self.blocks.remove(&first)?;
            self.len += 1;
            let entries = Arc::make_mut(&mut block);
            if entries.len() >= BLOCK_ENTRIES {
                self.blocks.insert(key.clone(), Arc::new(vec![(key, value)]));
                self.blocks.insert(first, block);
            } else {
                entries.insert(0, (key.clone(), value));
                self.blocks.insert(key, block);
            }
            return None;
        }
        let entries = Arc::make_mut(self.blocks.get_mut(&first)?);
        let at = match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => return entries.get_mut(i).map(|(_, v)| std::mem::replace(v, value)),
            Err(at) => at,
        };
        self.len += 1;
        if entries.len() < BLOCK_ENTRIES {
            entries.insert(at, (key, value));
            return None;
        }
        // A full block. Past its last entry, the new one starts a block of its own, so
        // entries added in key order leave every block full; anywhere else the block splits
        // in two halves, and the new entry goes to its half.
        let tail = if at == entries.len() {
            vec![(key, value)]
        } else {
            let mut tail = entries.split_off(entries.len() / 2);
            if at <= entries.len() {
                entries.insert(at, (key, value));
            } else {
                tail.insert(at - entries.len(), (key, value));
            }
            tail
        };
        if let Some((tail_first, _)) = tail.first() {
            self.blocks.insert(tail_first.clone(), Arc::new(tail));
        }
        None
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (first, _, Ok(i)) = self.find(key)? else {
            return None;
        };
        let first = first.clone();
        let mut block = self.blocks.remove(&first)?;
        let entries = Arc::make_mut(&mut block);
        let (_, value) = entries.remove(i);
        self.len -= 1;
        if entries.len() < BLOCK_ENTRIES / 4 {
            self.merge_into_previous(entries);
            self.merge_next(entries);
            if entries.capacity() >= 4 * entries.len() {
                entries.shrink_to_fit();
            }
        }
        if let Some((new_first, _)) = entries.first() {
            self.blocks.insert(new_first.clone(), block);
        }
        Some(value)
    }

    /// Moves `entries` (a block taken out of the index) to the end of the previous block when
    /// both fit in one, leaving it empty.
    fn merge_into_previous(&mut self, entries: &mut Vec<(K, V)>) {
        let Some(first) = entries.first().map(|(k, _)| k.clone()) else {
            return;
        };
        // The block is out of the index: the previous one starts before `first`.
        let Some(previous_first) = self
            .blocks
            .get_prev(&first)
            .filter(|(_, previous)| previous.len() + entries.len() <= BLOCK_ENTRIES)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        if let Some(previous) = self.blocks.get_mut(&previous_first) {
            Arc::make_mut(previous).append(entries);
        }
    }

    /// Moves the next block's entries into `entries` (a block taken out of the index) when
    /// both fit in one.
    fn merge_next(&mut self, entries: &mut Vec<(K, V)>) {
        let Some(last) = entries.last().map(|(k, _)| k.clone()) else {
            return;
        };
        // The block is out of the index, and keys are unique: the next one starts past `last`.
        let Some((next_first, next)) = self.blocks.get_next(&last) else {
            return;
        };
        if entries.len() + next.len() > BLOCK_ENTRIES {
            return;
        }
        let next_first = next_first.clone();
        if let Some(next) = self.blocks.remove(&next_first) {
            // Moved when no clone shares the block, copied when one does.
            entries.append(&mut Arc::unwrap_or_clone(next));
        }
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.blocks.values().flat_map(|block| block.iter().map(|(k, v)| (k, v)))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// How many blocks hold the entries (for tests and measurements of the layout).
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the layout holds together (an invariant): no block empty or over
    /// `BLOCK_ENTRIES`, each indexed by its first key, keys in order within and across
    /// blocks, and `len` their sum.
    pub(crate) fn well_formed(&self) -> bool {
        let mut previous: Option<&K> = None;
        let mut len = 0;
        for (first, block) in self.blocks.iter() {
            if block.is_empty() || block.len() > BLOCK_ENTRIES || block.first().map(|(k, _)| k) != Some(first) {
                return false;
            }
            for (k, _) in block.iter() {
                if previous.is_some_and(|p| p >= k) {
                    return false;
                }
                previous = Some(k);
            }
            len += block.len();
        }
        len == self.len
    }
}

impl<K: Ord + Clone, V: Clone> FromIterator<(K, V)> for PackedMap<K, V> {
    /// Full blocks, whatever the order of the entries; of equal keys, the last one counts.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Self {
        let mut entries: Vec<(K, V)> = entries.into_iter().collect();
        // Stable: equal keys stay in the order they came.
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut unique: Vec<(K, V)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            match unique.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => unique.push((k, v)),
            }
        }
        let len = unique.len();
        let mut blocks = OrdMap::new();
        let mut rest = unique.into_iter().peekable();
        while let Some((first, _)) = rest.peek() {
            let first = first.clone();
            let mut block = Vec::with_capacity(BLOCK_ENTRIES.min(len));
            block.extend(rest.by_ref().take(BLOCK_ENTRIES));
            blocks.insert(first, Arc::new(block));
        }
        Self { blocks, len }
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for PackedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone, V: Clone + Eq> Eq for PackedMap<K, V> {}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for PackedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord + Clone + Serialize, V: Clone + Serialize> Serialize for PackedMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K, V> Deserialize<'de> for PackedMap<K, V>
where
    K: Ord + Clone + Deserialize<'de>,
    V: Clone + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

struct EntriesVisitor<K, V>(PhantomData<(K, V)>);

impl<'de, K, V> Visitor<'de> for EntriesVisitor<K, V>
where
    K: Ord + Clone + Deserialize<'de>,
    V: Clone + Deserialize<'de>,
{
    type Value = PackedMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(MAX_RESERVED_ENTRIES));
        while let Some(entry) = access.next_entry()? {
            entries.push(entry);
        }
        Ok(entries.into_iter().collect())
    }
}
