//! The queue of PENDING jobs, ordered for the scheduler: priority (higher first), then tenant,
//! then submission order.
//!
//! The scheduler serves tenants in turn within a priority level, so it reads the queue one
//! `(priority, tenant)` run at a time. Keeping the tenant in the key lets it find the tenants of
//! a level and walk each one's jobs lazily, by range, instead of reading the whole level on
//! every plan (a million pending jobs would otherwise be walked for each plan of a few hundred).

use crate::JobId;
use compact_str::CompactString;
use imbl::OrdSet;
use imbl::ordset::RangedIter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Key of the pending queue: higher priority first, then tenant, then submission order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueKey {
    /// `i32::MAX - priority` as unsigned, so that ascending order is descending priority.
    pub priority_rank: u64,
    pub tenant: CompactString,
    pub job: JobId,
}

impl QueueKey {
    pub fn new(priority: i32, tenant: &str, job: JobId) -> Self {
        QueueKey {
            priority_rank: rank_of(priority),
            tenant: tenant.into(),
            job,
        }
    }
}

fn rank_of(priority: i32) -> u64 {
    (i64::from(i32::MAX) - i64::from(priority)) as u64
}

fn priority_of(rank: u64) -> i32 {
    i32::try_from(i64::from(i32::MAX) - rank as i64).unwrap_or(i32::MIN)
}

/// The PENDING jobs by `QueueKey`. DAG readiness and backoff are checked by readers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingQueue {
    keys: OrdSet<QueueKey>,
    /// How many keys each priority has (the `/metrics` queue depth, without a scan).
    depth: BTreeMap<i32, u64>,
}

impl PendingQueue {
    pub fn insert(&mut self, key: QueueKey) {
        let priority = priority_of(key.priority_rank);
        if self.keys.insert(key).is_none() {
            *self.depth.entry(priority).or_default() += 1;
        }
    }

    pub fn remove(&mut self, key: &QueueKey) {
        let priority = priority_of(key.priority_rank);
        if self.keys.remove(key).is_some()
            && let Some(n) = self.depth.get_mut(&priority)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.depth.remove(&priority);
            }
        }
    }

    /// Pending jobs by priority (priorities with none are absent).
    pub fn depth_by_priority(&self) -> &BTreeMap<i32, u64> {
        &self.depth
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key in queue order.
    pub fn iter(&self) -> impl Iterator<Item = &QueueKey> {
        self.keys.iter()
    }

    /// The priority levels with pending jobs, highest priority first, as `(priority, tenants)`:
    /// the tenants with jobs at that level, by name. Found by skipping from run to run, so the
    /// cost grows with the number of runs, not of jobs.
    pub fn levels(&self) -> impl Iterator<Item = (i32, Vec<&str>)> + '_ {
        // Ranks ascend as priorities descend; each level starts past the previous one.
        let mut from_rank = Some(0);
        std::iter::from_fn(move || {
            let rank = self.keys.range(level_start(from_rank?)..).next()?.priority_rank;
            from_rank = rank.checked_add(1);
            let priority = (i64::from(i32::MAX) - rank as i64) as i32;
            Some((priority, self.tenants_at(rank)))
        })
    }

    /// The jobs of `tenant` at `priority`, in submission order.
    pub fn jobs_of(&self, priority: i32, tenant: &str) -> TenantRun<'_> {
        let rank = rank_of(priority);
        let start = QueueKey {
            priority_rank: rank,
            tenant: tenant.into(),
            job: JobId(0),
        };
        let end = QueueKey {
            priority_rank: rank,
            tenant: tenant.into(),
            job: JobId(u64::MAX),
        };
        TenantRun {
            range: self.keys.range(start..=end),
        }
    }

    fn tenants_at(&self, rank: u64) -> Vec<&str> {
        let mut tenants = Vec::new();
        let mut next = self.keys.range(level_start(rank)..).next();
        while let Some(key) = next.filter(|k| k.priority_rank == rank) {
            tenants.push(key.tenant.as_str());
            // The first key past every job of this tenant: the next tenant's first job.
            let past = QueueKey {
                priority_rank: rank,
                tenant: key.tenant.clone(),
                job: JobId(u64::MAX),
            };
            next = self
                .keys
                .range::<_, QueueKey>((Bound::Excluded(&past), Bound::Unbounded))
                .next();
        }
        tenants
    }
}

fn level_start(rank: u64) -> QueueKey {
    QueueKey {
        priority_rank: rank,
        tenant: CompactString::const_new(""),
        job: JobId(0),
    }
}

/// One tenant's pending jobs at one priority, in submission order, read lazily.
pub struct TenantRun<'a> {
    range: RangedIter<'a, QueueKey, imbl::shared_ptr::DefaultSharedPtr>,
}

impl Iterator for TenantRun<'_> {
    type Item = JobId;

    fn next(&mut self) -> Option<JobId> {
        self.range.next().map(|k| k.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(entries: &[(i32, &str, u64)]) -> PendingQueue {
        let mut q = PendingQueue::default();
        for (p, t, j) in entries {
            q.insert(QueueKey::new(*p, t, JobId(*j)));
        }
        q
    }

    #[test]
    fn levels_list_priorities_highest_first_with_their_tenants() {
        let q = queue(&[
            (0, "b", 5),
            (0, "a", 9),
            (10, "c", 1),
            (0, "b", 2),
            (-3, "a", 4),
            (10, "a", 7),
        ]);
        let levels: Vec<(i32, Vec<&str>)> = q.levels().collect();
        assert_eq!(levels, vec![(10, vec!["a", "c"]), (0, vec!["a", "b"]), (-3, vec!["a"])]);
    }

    #[test]
    fn a_tenant_run_is_in_submission_order_and_stays_in_its_level() {
        let q = queue(&[
            (0, "b", 5),
            (0, "a", 9),
            (0, "b", 2),
            (1, "b", 1),
            (0, "ba", 3),
            (-1, "b", 4),
        ]);
        assert_eq!(q.jobs_of(0, "b").collect::<Vec<_>>(), vec![JobId(2), JobId(5)]);
        assert_eq!(q.jobs_of(1, "b").collect::<Vec<_>>(), vec![JobId(1)]);
        assert_eq!(q.jobs_of(0, "c").count(), 0);
    }

    #[test]
    fn extreme_priorities_and_an_empty_queue() {
        assert_eq!(PendingQueue::default().levels().count(), 0);
        let q = queue(&[(i32::MIN, "t", 1), (i32::MAX, "t", 2)]);
        let levels: Vec<i32> = q.levels().map(|(p, _)| p).collect();
        assert_eq!(levels, vec![i32::MAX, i32::MIN]);
        assert_eq!(q.jobs_of(i32::MIN, "t").collect::<Vec<_>>(), vec![JobId(1)]);
    }
}
