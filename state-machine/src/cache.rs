//! The caches the cluster keeps: one record per `(tenant, key)`, naming the blob that holds the
//! files (by its SHA-256), its size, and when a job last saved or restored it.
//!
//! As with artifacts (`artifact.rs`), the bytes are a blob on the nodes, copied to a majority
//! before the record is proposed; the record is what keeps the blob alive. A tenant's caches
//! share one budget (`Limits::max_cache_bytes_per_tenant`): saving a cache that would pass it
//! first forgets the tenant's least recently used others, in `apply`, so every replica evicts
//! the same ones.

use crate::{JobId, PipelineId};
use compact_str::CompactString;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One tenant's cache of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub tenant: CompactString,
    pub key: CompactString,
    /// The blob: a zstd-compressed tar of the paths, named by its SHA-256.
    pub digest: CompactString,
    /// The blob's size (compressed), what the budget counts.
    pub size_bytes: u64,
    /// Files and directories in the archive.
    pub entries: u32,
    /// The job (and its pipeline) that saved it.
    pub job: JobId,
    pub pipeline: PipelineId,
    pub saved_at_ms: u64,
    /// When a job last saved or restored it: the least recent go first.
    pub used_at_ms: u64,
}

/// What became of a job's cache after its steps succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSave {
    /// Packed into the blob `digest`, which a majority of the nodes hold.
    Stored {
        digest: CompactString,
        size_bytes: u64,
        entries: u32,
    },
    /// Not saved, and why; the job's outcome does not change.
    NotSaved { reason: String },
}

/// What an attempt did with its job's cache.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptCache {
    /// The blob restored into its workspace before the first step, if there was one.
    pub restored: Option<CompactString>,
    /// The save, once decided.
    pub saved: Option<CacheSave>,
}

/// `(tenant, key)`.
type CacheId = (CompactString, CompactString);

/// Every cache, with the use order and the bytes per tenant the budget needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caches {
    by_key: OrdMap<CacheId, CacheRecord>,
    /// `(tenant, used_at_ms, key)`: each tenant's caches, least recently used first.
    by_use: OrdSet<(CompactString, u64, CompactString)>,
    /// Bytes kept per tenant.
    tenant_bytes: BTreeMap<CompactString, u64>,
    /// Caches kept per tenant.
    tenant_counts: BTreeMap<CompactString, usize>,
}

impl Caches {
    pub fn get(&self, tenant: &str, key: &str) -> Option<&CacheRecord> {
        self.by_key.get(&(tenant.into(), key.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every record, by tenant and key.
    pub fn iter(&self) -> impl Iterator<Item = &CacheRecord> {
        self.by_key.values()
    }

    /// `tenant`'s caches, by key.
    pub fn of_tenant<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a CacheRecord> + 'a {
        self.by_key
            .range((CompactString::from(tenant), CompactString::default())..)
            .take_while(move |((t, _), _)| t == tenant)
            .map(|(_, r)| r)
    }

    /// Bytes `tenant` keeps.
    pub fn tenant_bytes(&self, tenant: &str) -> u64 {
        self.tenant_bytes.get(tenant).copied().unwrap_or(0)
    }

    /// How many caches `tenant` keeps.
    pub fn tenant_count(&self, tenant: &str) -> usize {
        self.tenant_counts.get(tenant).copied().unwrap_or(0)
    }

    /// Bytes kept per tenant.
    pub fn usage(&self) -> impl Iterator<Item = (&str, u64)> {
        self.tenant_bytes.iter().map(|(t, b)| (t.as_str(), *b))
    }

    /// `tenant`'s keys, least recently used first.
    pub fn least_recently_used<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_use
            .range((CompactString::from(tenant), 0, CompactString::default())..)
            .take_while(move |(t, _, _)| t == tenant)
            .map(|(_, _, key)| key.as_str())
    }

    /// Puts `record` in place of the same key's earlier one, if any; returns that one.
    pub(crate) fn insert(&mut self, record: CacheRecord) -> Option<CacheRecord> {
        let old = self.remove(&record.tenant, &record.key);
        if record.size_bytes > 0 {
            *self.tenant_bytes.entry(record.tenant.clone()).or_default() += record.size_bytes;
        }
        *self.tenant_counts.entry(record.tenant.clone()).or_default() += 1;
        self.by_use
            .insert((record.tenant.clone(), record.used_at_ms, record.key.clone()));
        self.by_key.insert((record.tenant.clone(), record.key.clone()), record);
        old
    }

    /// Marks the cache used at `at_ms` (never earlier than it was).
    pub(crate) fn touch(&mut self, tenant: &str, key: &str, at_ms: u64) -> bool {
        let id: CacheId = (tenant.into(), key.into());
        let Some(r) = self.by_key.get_mut(&id) else {
            return false;
        };
        if at_ms <= r.used_at_ms {
            return false;
        }
        self.by_use.remove(&(id.0.clone(), r.used_at_ms, id.1.clone()));
        r.used_at_ms = at_ms;
        self.by_use.insert((id.0, at_ms, id.1));
        true
    }

    /// Forgets a cache; returns it.
    pub(crate) fn remove(&mut self, tenant: &str, key: &str) -> Option<CacheRecord> {
        let old = self.by_key.remove(&(tenant.into(), key.into()))?;
        self.by_use
            .remove(&(old.tenant.clone(), old.used_at_ms, old.key.clone()));
        if let Some(bytes) = self.tenant_bytes.get_mut(&old.tenant) {
            *bytes = bytes.saturating_sub(old.size_bytes);
            if *bytes == 0 {
                self.tenant_bytes.remove(&old.tenant);
            }
        }
        if let Some(count) = self.tenant_counts.get_mut(&old.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.tenant_counts.remove(&old.tenant);
            }
        }
        Some(old)
    }

    /// Checks the table's own bookkeeping (used by the invariant checks).
    pub(crate) fn consistent(&self) -> Result<(), String> {
        let mut bytes: BTreeMap<&str, u64> = BTreeMap::new();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for ((tenant, key), r) in &self.by_key {
            *counts.entry(r.tenant.as_str()).or_default() += 1;
            if r.tenant != *tenant || r.key != *key {
                return Err(format!(
                    "cache {tenant}/{key} holds the record of {}/{}",
                    r.tenant, r.key
                ));
            }
            if r.size_bytes > 0 {
                *bytes.entry(r.tenant.as_str()).or_default() += r.size_bytes;
            }
            if !self.by_use.contains(&(r.tenant.clone(), r.used_at_ms, r.key.clone())) {
                return Err(format!("cache {tenant}/{key} is missing from the use order"));
            }
        }
        if self.by_use.len() != self.by_key.len() {
            return Err("the cache use order names caches that are not kept".into());
        }
        let kept_counts: BTreeMap<&str, usize> = self.tenant_counts.iter().map(|(t, c)| (t.as_str(), *c)).collect();
        if kept_counts != counts {
            return Err(format!("caches per tenant {kept_counts:?}, records count {counts:?}"));
        }
        let kept: BTreeMap<&str, u64> = self.tenant_bytes.iter().map(|(t, b)| (t.as_str(), *b)).collect();
        if kept != bytes {
            return Err(format!("cache bytes per tenant {kept:?}, records add up to {bytes:?}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, key: &str, size_bytes: u64, used_at_ms: u64) -> CacheRecord {
        CacheRecord {
            tenant: tenant.into(),
            key: key.into(),
            digest: "a".repeat(64).into(),
            size_bytes,
            entries: 1,
            job: JobId(1),
            pipeline: PipelineId(1),
            saved_at_ms: used_at_ms,
            used_at_ms,
        }
    }

    #[test]
    fn use_order_and_usage_follow_inserts_touches_and_removals() {
        let mut c = Caches::default();
        c.insert(record("t", "a", 10, 100));
        c.insert(record("t", "b", 5, 50));
        c.insert(record("u", "a", 7, 10));
        assert_eq!(c.tenant_bytes("t"), 15);
        assert_eq!(c.least_recently_used("t").collect::<Vec<_>>(), vec!["b", "a"]);
        assert!(c.touch("t", "b", 200));
        assert!(!c.touch("t", "b", 150), "a use never goes back in time");
        assert!(!c.touch("t", "zz", 300));
        assert_eq!(c.least_recently_used("t").collect::<Vec<_>>(), vec!["a", "b"]);
        // A save of the same key replaces it.
        let old = c.insert(record("t", "a", 3, 300)).unwrap();
        assert_eq!(old.size_bytes, 10);
        assert_eq!(c.tenant_bytes("t"), 8);
        assert_eq!(c.least_recently_used("t").collect::<Vec<_>>(), vec!["b", "a"]);
        assert_eq!(
            c.of_tenant("t").map(|r| r.key.as_str()).collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert_eq!(c.of_tenant("u").count(), 1);
        c.remove("t", "a");
        c.remove("t", "b");
        assert_eq!(c.tenant_bytes("t"), 0);
        assert_eq!(c.usage().collect::<Vec<_>>(), vec![("u", 7)]);
        c.consistent().unwrap();
    }

    #[test]
    fn empty_caches_count_without_bytes() {
        let mut c = Caches::default();
        c.insert(record("t", "a", 0, 1));
        c.insert(record("t", "b", 0, 2));
        assert_eq!((c.tenant_bytes("t"), c.tenant_count("t")), (0, 2));
        c.remove("t", "a");
        assert_eq!(c.tenant_count("t"), 1);
        c.consistent().unwrap();
    }
}
