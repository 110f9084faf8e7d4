//! `PackedMap` and `PackedSet` against `BTreeMap`, their layout, their clones, and their
//! encoding against `imbl`'s.

use super::{BLOCK_ENTRIES, PackedMap, PackedSet};
use imbl::{OrdMap, OrdSet};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Insert(u16, u32),
    Remove(u16),
    Bump(u16),
    /// Inserts the next key past every key so far (the archive's usual order).
    Append(u32),
    /// Removes the smallest key (retention's usual order).
    RemoveFirst,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u16..600, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        (0u16..600).prop_map(Op::Remove),
        (0u16..600).prop_map(Op::Bump),
        any::<u32>().prop_map(Op::Append),
        Just(Op::RemoveFirst),
    ]
}

fn apply(map: &mut PackedMap<u32, u32>, model: &mut BTreeMap<u32, u32>, op: &Op) {
    match *op {
        Op::Insert(k, v) => {
            assert_eq!(map.insert(u32::from(k), v), model.insert(u32::from(k), v));
        }
        Op::Remove(k) => assert_eq!(map.remove(&u32::from(k)), model.remove(&u32::from(k))),
        Op::Bump(k) => {
            let k = u32::from(k);
            let got = map.get_mut(&k).map(|v| {
                *v = v.wrapping_add(1);
                *v
            });
            let want = model.get_mut(&k).map(|v| {
                *v = v.wrapping_add(1);
                *v
            });
            assert_eq!(got, want);
        }
        Op::Append(v) => {
            let k = model.keys().next_back().map_or(0, |k| k + 1);
            assert_eq!(map.insert(k, v), model.insert(k, v));
        }
        Op::RemoveFirst => {
            let first = model.keys().next().copied();
            assert_eq!(map.first().map(|(k, _)| *k), first);
            if let Some(k) = first {
                assert_eq!(map.remove(&k), model.remove(&k));
            }
        }
    }
}

fn same(map: &PackedMap<u32, u32>, model: &BTreeMap<u32, u32>) {
    assert!(map.well_formed(), "layout broken: {map:?}");
    assert_eq!(map.len(), model.len());
    assert_eq!(map.is_empty(), model.is_empty());
    assert!(map.iter().eq(model.iter()));
    assert!(map.iter().rev().eq(model.iter().rev()));
    for k in 0..610 {
        assert_eq!(map.get(&k), model.get(&k));
    }
}

proptest! {
    #[test]
    fn behaves_as_an_ordered_map(ops in prop::collection::vec(op(), 0..1500)) {
        let mut map = PackedMap::new();
        let mut model = BTreeMap::new();
        for op in &ops {
            apply(&mut map, &mut model, op);
        }
        same(&map, &model);
        let rebuilt: PackedMap<u32, u32> = model.clone().into_iter().collect();
        prop_assert_eq!(&rebuilt, &map);
        prop_assert!(rebuilt.well_formed());
    }

    #[test]
    fn a_clone_is_unchanged_by_writes_to_the_original(
        before in prop::collection::vec(op(), 0..600),
        after in prop::collection::vec(op(), 0..600),
    ) {
        let mut map = PackedMap::new();
        let mut model = BTreeMap::new();
        for op in &before {
            apply(&mut map, &mut model, op);
        }
        let (snapshot, snapshot_model) = (map.clone(), model.clone());
        for op in &after {
            apply(&mut map, &mut model, op);
        }
        same(&snapshot, &snapshot_model);
        same(&map, &model);
    }

    #[test]
    fn encodes_as_imbl_does(entries in prop::collection::btree_map(any::<u32>(), any::<u64>(), 0..300)) {
        let packed: PackedMap<u32, u64> = entries.clone().into_iter().collect();
        let ordmap: OrdMap<u32, u64> = entries.clone().into_iter().collect();
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&packed, config).unwrap();
        prop_assert_eq!(&bytes, &bincode::serde::encode_to_vec(&ordmap, config).unwrap());
        let (decoded, _): (PackedMap<u32, u64>, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        prop_assert_eq!(&decoded, &packed);

        let keys: Vec<u32> = entries.keys().copied().collect();
        let set: PackedSet<u32> = keys.iter().copied().collect();
        let ordset: OrdSet<u32> = keys.iter().copied().collect();
        let bytes = bincode::serde::encode_to_vec(&set, config).unwrap();
        prop_assert_eq!(&bytes, &bincode::serde::encode_to_vec(&ordset, config).unwrap());
        let (decoded, _): (PackedSet<u32>, usize) =
            bincode::serde::decode_from_slice(&bytes, config).unwrap();
        prop_assert_eq!(&decoded, &set);
        prop_assert_eq!(serde_json::to_string(&set).unwrap(), serde_json::to_string(&ordset).unwrap());
    }
}

#[test]
fn entries_added_in_order_fill_their_blocks() {
    let mut map = PackedMap::new();
    let mut set = PackedSet::new();
    let n = 100 * BLOCK_ENTRIES as u64;
    for k in 0..n {
        map.insert(k, k);
        set.insert((k / 3, k));
    }
    assert_eq!(map.blocks(), 100);
    assert_eq!(set.blocks(), 100);
    assert!(map.well_formed() && set.well_formed());
}

#[test]
fn removing_the_oldest_entries_frees_their_blocks() {
    let mut set: PackedSet<u64> = (0..10 * BLOCK_ENTRIES as u64).collect();
    for k in 0..9 * BLOCK_ENTRIES as u64 {
        assert!(set.remove(&k));
    }
    assert_eq!(set.blocks(), 1);
    assert_eq!(set.first(), Some(&(9 * BLOCK_ENTRIES as u64)));
    assert!(set.well_formed());
}

#[test]
fn scattered_removals_merge_sparse_blocks() {
    let mut map: PackedMap<u64, ()> = (0..16 * BLOCK_ENTRIES as u64).map(|k| (k, ())).collect();
    // Keep one entry in eight: each block falls to 8 entries and merges with its neighbours.
    for k in 0..16 * BLOCK_ENTRIES as u64 {
        if k % 8 != 0 {
            map.remove(&k);
        }
    }
    assert_eq!(map.len(), 2 * BLOCK_ENTRIES);
    assert!(map.blocks() <= 4, "{} blocks for {} entries", map.blocks(), map.len());
    assert!(map.well_formed());
}

#[test]
fn a_decoded_map_keeps_the_last_of_equal_keys() {
    let map: PackedMap<u8, u8> = [(1, 1), (2, 2), (1, 3)].into_iter().collect();
    assert_eq!(map.get(&1), Some(&3));
    assert_eq!(map.len(), 2);
}

#[test]
fn subsets() {
    let small: PackedSet<u32> = [1, 5].into_iter().collect();
    let large: PackedSet<u32> = (0..10).collect();
    assert!(small.is_subset(&large));
    assert!(!large.is_subset(&small));
    assert!(!small.is_subset(&[1, 4].into_iter().collect()));
}
