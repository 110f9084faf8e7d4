//! Ordered maps and sets that keep their entries in full blocks, for the parts of the state
//! that grow with finished work (the archive, retention's settled sets).
//!
//! `imbl::OrdMap` gives the state cheap clones (a snapshot copies a root, not the entries),
//! but its B-tree leaves split at the median, so a map filled in key order, as these are
//! (pipelines archive and settle roughly in id and time order), keeps every leaf half full:
//! about twice an entry's size per entry. `PackedMap` keeps the same cheap clones by holding
//! its entries in shared blocks of up to `BLOCK_ENTRIES`, indexed by an `OrdMap` from each
//! block's first key; an entry added after every other fills the last block instead of
//! splitting it, so appends leave blocks full. A block is copied only when it is written
//! while a clone still shares it.
//!
//! Both serialize exactly as `imbl`'s `OrdMap` (a map) and `OrdSet` (a sequence) do, in key
//! order, so the snapshot's encoding does not change; equality is by content, not by how the
//! entries happen to be blocked (a replica restored from a snapshot blocks them densely).

mod map;
mod set;
#[cfg(test)]
mod tests;

pub use map::PackedMap;
pub use set::PackedSet;

/// The most entries a block holds.
pub const BLOCK_ENTRIES: usize = 64;
