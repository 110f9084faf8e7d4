//! The pools' free room as a plan fills them, indexed so that choosing a pool costs a lookup
//! instead of a pass over every pool.
//!
//! Jobs that ask for the same resources with the same constraints (a "class") rank the pools
//! identically: a pool's rank for a class depends only on its free room. So each class seen in
//! the plan gets an ordered set of the pools that can take it, keyed by rank; the best pool is
//! the set's first entry, and a placement re-ranks the one pool it changed in every class. Room
//! only shrinks during a plan, so a pool that no longer fits a class leaves its set for good.
//!
//! Plans hold few classes in practice (a CI fleet's job shapes); past `max_classes` a job is
//! placed by the linear scan the index replaces, which ranks the same way, so the plan is the
//! same either way (a property test compares them).

use super::Strategy;
use super::score::{Rank, rank};
use crate::{JobSpec, Pool, Resources, State};
use std::collections::{BTreeMap, BTreeSet};

/// What makes two jobs rank the pools identically.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ClassKey<'a> {
    resources: Resources,
    image: bool,
    constraints: &'a crate::StringMap,
}

impl<'a> ClassKey<'a> {
    fn of(job: &'a JobSpec) -> Self {
        ClassKey {
            resources: job.resources,
            image: job.image.is_some(),
            constraints: &job.constraints,
        }
    }
}

/// One pool's room during the plan.
struct Slot<'a> {
    pool: &'a Pool,
    free: Resources,
    workers_left: u32,
}

/// The pools that can take one class, best first. A slot not in it (it could never run the
/// class, or has no room for it) never enters it again in this plan: room only shrinks.
struct ClassSet {
    req: Resources,
    /// Per slot: its key in `ranked`, if it is there.
    ranked_as: Vec<Option<Rank>>,
    ranked: BTreeSet<(Rank, usize)>,
}

/// Free room of the schedulable pools, with the per-class indexes built so far.
pub(super) struct PoolIndex<'a> {
    slots: Vec<Slot<'a>>,
    /// Slots with `workers_left > 0`.
    open: usize,
    classes: BTreeMap<ClassKey<'a>, ClassSet>,
    strategy: Strategy,
    max_classes: usize,
}

impl<'a> PoolIndex<'a> {
    /// The pools that are not draining, by name, with their current free room.
    pub(super) fn new(state: &'a State, strategy: Strategy, max_classes: usize) -> Self {
        let slots: Vec<Slot<'a>> = state
            .pools()
            .filter(|p| !p.draining)
            .map(|p| Slot {
                pool: p,
                free: p.free(),
                workers_left: p.spec.max_workers.saturating_sub(p.workers),
            })
            .collect();
        let open = slots.iter().filter(|s| s.workers_left > 0).count();
        PoolIndex {
            slots,
            open,
            classes: BTreeMap::new(),
            strategy,
            max_classes,
        }
    }

    /// Whether any pool may still take a worker.
    pub(super) fn any_open(&self) -> bool {
        self.open > 0
    }

    /// The slot of the best pool for `job`, or `None` if no pool has room for it.
    pub(super) fn choose(&mut self, job: &'a JobSpec) -> Option<usize> {
        let key = ClassKey::of(job);
        if !self.classes.contains_key(&key) && self.classes.len() >= self.max_classes {
            return self.choose_by_scan(job);
        }
        let (slots, strategy) = (&self.slots, self.strategy);
        let set = self
            .classes
            .entry(key)
            .or_insert_with(|| ClassSet::build(slots, job, strategy));
        set.ranked.first().map(|&(_, slot)| slot)
    }

    /// The name of the pool in `slot`.
    pub(super) fn name(&self, slot: usize) -> &'a str {
        self.slots[slot].pool.name()
    }

    /// The same choice by ranking every pool: for classes past `max_classes`.
    fn choose_by_scan(&self, job: &JobSpec) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pool.can_ever_run(job))
            .filter_map(|(i, s)| rank(s.pool, s.free, s.workers_left, &job.resources, self.strategy).map(|r| (r, i)))
            .min()
            .map(|(_, i)| i)
    }

    /// Takes `req` and one worker from the pool in `slot`, re-ranking it in every class.
    pub(super) fn take(&mut self, slot: usize, req: &Resources) {
        let s = &mut self.slots[slot];
        s.free = s.free.saturating_sub(req);
        s.workers_left = s.workers_left.saturating_sub(1);
        if s.workers_left == 0 {
            self.open -= 1;
        }
        let s = &self.slots[slot];
        for set in self.classes.values_mut() {
            set.rerank(slot, s, self.strategy);
        }
    }
}

impl ClassSet {
    fn build(slots: &[Slot<'_>], job: &JobSpec, strategy: Strategy) -> Self {
        let req = job.resources;
        let ranked_as: Vec<Option<Rank>> = slots
            .iter()
            .map(|s| {
                if s.pool.can_ever_run(job) {
                    rank(s.pool, s.free, s.workers_left, &req, strategy)
                } else {
                    None
                }
            })
            .collect();
        let ranked = ranked_as
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|r| (r, i)))
            .collect();
        ClassSet { req, ranked_as, ranked }
    }

    fn rerank(&mut self, slot: usize, s: &Slot<'_>, strategy: Strategy) {
        let Some(old) = self.ranked_as[slot].take() else { return };
        self.ranked.remove(&(old, slot));
        let new = rank(s.pool, s.free, s.workers_left, &self.req, strategy);
        if let Some(r) = new {
            self.ranked.insert((r, slot));
        }
        self.ranked_as[slot] = new;
    }
}
