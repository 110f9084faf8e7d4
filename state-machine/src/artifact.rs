//! The artifacts the cluster keeps: one record per job that kept files, naming the blob that
//! holds them (by its SHA-256), its size and when it expires.
//!
//! The bytes are never in the state or the Raft log: they are a blob in every node's blob
//! store, copied to a majority before the record is proposed. The record is what makes a blob
//! live: a node deletes the blobs no record names, and a job that needs another receives the
//! blob its record names. Records are kept apart from `Job` so that they outlive a settled
//! pipeline's move to disk (the state keeps a compact record of it) and so that expiry, the
//! tenants' usage and the blob stores' garbage collection read one small table.

use crate::{JobId, PipelineId};
use compact_str::CompactString;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Length of a blob's name: the SHA-256 of its bytes in lowercase hexadecimal.
pub const DIGEST_HEX_LEN: usize = 64;

/// Whether `digest` is a blob's name: 64 lowercase hexadecimal digits.
pub fn is_digest(digest: &str) -> bool {
    digest.len() == DIGEST_HEX_LEN && digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The files one job kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    pub job: JobId,
    pub pipeline: PipelineId,
    pub tenant: CompactString,
    /// The attempt whose workspace they come from.
    pub attempt: u32,
    /// The blob: a zstd-compressed tar of the paths, named by its SHA-256.
    pub digest: CompactString,
    /// The blob's size (compressed), what the limits count.
    pub size_bytes: u64,
    /// Files and directories in the archive.
    pub entries: u32,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// Every kept artifact, by job, with what expiry and the limits need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifacts {
    by_job: OrdMap<JobId, ArtifactRecord>,
    /// `(expires_at_ms, job)`, for expiry in order.
    by_expiry: OrdSet<(u64, JobId)>,
    /// Bytes kept per tenant.
    tenant_bytes: BTreeMap<CompactString, u64>,
}

impl Artifacts {
    pub fn get(&self, job: JobId) -> Option<&ArtifactRecord> {
        self.by_job.get(&job)
    }

    pub fn is_empty(&self) -> bool {
        self.by_job.is_empty()
    }

    /// Every record, by job.
    pub fn iter(&self) -> impl Iterator<Item = &ArtifactRecord> {
        self.by_job.values()
    }

    /// Bytes `tenant` keeps.
    pub fn tenant_bytes(&self, tenant: &str) -> u64 {
        self.tenant_bytes.get(tenant).copied().unwrap_or(0)
    }

    /// Bytes kept per tenant.
    pub fn usage(&self) -> impl Iterator<Item = (&str, u64)> {
        self.tenant_bytes.iter().map(|(t, b)| (t.as_str(), *b))
    }

    /// Jobs whose artifacts expired at `now_ms`, oldest expiry first, at most `max`.
    pub fn expired(&self, now_ms: u64, max: usize) -> Vec<JobId> {
        self.by_expiry
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .take(max)
            .map(|(_, job)| *job)
            .collect()
    }

    /// Puts `record` in place of the job's earlier one, if any.
    pub(crate) fn insert(&mut self, record: ArtifactRecord) {
        self.remove(record.job);
        if record.size_bytes > 0 {
            *self.tenant_bytes.entry(record.tenant.clone()).or_default() += record.size_bytes;
        }
        self.by_expiry.insert((record.expires_at_ms, record.job));
        self.by_job.insert(record.job, record);
    }

    /// Forgets the job's record; returns it.
    pub(crate) fn remove(&mut self, job: JobId) -> Option<ArtifactRecord> {
        let old = self.by_job.remove(&job)?;
        self.by_expiry.remove(&(old.expires_at_ms, job));
        if let Some(bytes) = self.tenant_bytes.get_mut(&old.tenant) {
            *bytes = bytes.saturating_sub(old.size_bytes);
            if *bytes == 0 {
                self.tenant_bytes.remove(&old.tenant);
            }
        }
        Some(old)
    }

    /// Checks the table's own bookkeeping (used by the invariant checks).
    pub(crate) fn consistent(&self) -> Result<(), String> {
        let mut bytes: BTreeMap<&str, u64> = BTreeMap::new();
        for r in self.by_job.values() {
            if r.size_bytes > 0 {
                *bytes.entry(r.tenant.as_str()).or_default() += r.size_bytes;
            }
            if !self.by_expiry.contains(&(r.expires_at_ms, r.job)) {
                return Err(format!("artifact of job {} is missing from the expiry order", r.job));
            }
        }
        if self.by_expiry.len() != self.by_job.len() {
            return Err("the artifact expiry order names jobs without artifacts".into());
        }
        let kept: BTreeMap<&str, u64> = self.tenant_bytes.iter().map(|(t, b)| (t.as_str(), *b)).collect();
        if kept != bytes {
            return Err(format!(
                "artifact bytes per tenant {kept:?}, records add up to {bytes:?}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(job: u64, tenant: &str, size_bytes: u64, expires_at_ms: u64) -> ArtifactRecord {
        ArtifactRecord {
            job: JobId(job),
            pipeline: PipelineId(1),
            tenant: tenant.into(),
            attempt: 1,
            digest: "a".repeat(64).into(),
            size_bytes,
            entries: 1,
            created_at_ms: 0,
            expires_at_ms,
        }
    }

    #[test]
    fn usage_and_expiry_follow_inserts_and_removals() {
        let mut a = Artifacts::default();
        a.insert(record(1, "t", 10, 100));
        a.insert(record(2, "t", 5, 50));
        a.insert(record(3, "u", 7, 200));
        assert_eq!(a.tenant_bytes("t"), 15);
        assert_eq!(a.expired(100, 10), vec![JobId(2), JobId(1)]);
        assert_eq!(a.expired(100, 1), vec![JobId(2)]);
        // A retry's artifact replaces the first one's.
        a.insert(record(1, "t", 3, 300));
        assert_eq!(a.tenant_bytes("t"), 8);
        assert_eq!(a.expired(100, 10), vec![JobId(2)]);
        a.remove(JobId(2));
        a.remove(JobId(1));
        assert_eq!(a.tenant_bytes("t"), 0);
        assert_eq!(a.usage().collect::<Vec<_>>(), vec![("u", 7)]);
        a.consistent().unwrap();
    }

    #[test]
    fn digests_are_lowercase_sha256_hex() {
        assert!(is_digest(&"0f".repeat(32)));
        assert!(!is_digest(&"0F".repeat(32)));
        assert!(!is_digest(&"0f".repeat(31)));
        assert!(!is_digest(&format!("../{}", "a".repeat(61))));
    }
}
