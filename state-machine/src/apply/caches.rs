//! `CacheSaved`, `CacheRestored` and `ClearCaches`: the tenants' caches (`cache.rs`). The
//! leader restores a job's cache into its worker at creation and saves it after the steps
//! succeeded, before the exit; `apply` keeps each tenant within its budget by forgetting its
//! least recently used caches, so every replica forgets the same ones.

use super::artifacts::check_digest;
use super::{EntryContext, Handled};
use crate::{CacheRecord, CacheSave, Event, FencingToken, JobId, Rejection, Response, SpecError, State};

/// Longest reason kept for a cache not saved, in bytes.
pub const MAX_CACHE_NOTE_BYTES: usize = 1024;

const UNCHANGED: Handled = Ok(Response::Done { changed: false });

impl State {
    pub(crate) fn cache_saved(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        outcome: &CacheSave,
    ) -> Handled {
        let Some(attempt) = self.running_attempt(job, fencing)? else {
            return UNCHANGED;
        };
        let j = self.jobs.get(&job).ok_or(Rejection::UnknownJob(job))?;
        let Some(spec) = j.spec.cache.as_deref().filter(|c| c.policy.pushes()) else {
            return Err(Rejection::Invalid(SpecError::Conflict {
                field: "cache".into(),
                reason: format!("job {job} saves no cache"),
            }));
        };
        if j.cache_settled(attempt) {
            return UNCHANGED;
        }
        let (tenant, key, pipeline) = (j.tenant.clone(), spec.key.clone(), j.pipeline);
        let budget = self.limits.max_cache_bytes_per_tenant;
        if let CacheSave::Stored { digest, .. } = outcome {
            check_digest(digest)?;
        }
        let verdict = match outcome {
            CacheSave::Stored { size_bytes, .. } if *size_bytes > budget => CacheSave::NotSaved {
                reason: format!(
                    "the cache takes {size_bytes} bytes, past tenant {:?}'s cache budget of {budget} bytes",
                    tenant.as_str()
                ),
            },
            CacheSave::Stored { .. } => outcome.clone(),
            CacheSave::NotSaved { reason } => CacheSave::NotSaved {
                reason: bounded(reason),
            },
        };
        match &verdict {
            CacheSave::Stored {
                digest,
                size_bytes,
                entries,
            } => {
                self.make_room(cx, &tenant, &key, *size_bytes, budget);
                self.caches.insert(CacheRecord {
                    tenant: tenant.clone(),
                    key: key.clone(),
                    digest: digest.clone(),
                    size_bytes: *size_bytes,
                    entries: *entries,
                    job,
                    pipeline,
                    saved_at_ms: cx.now_ms,
                    used_at_ms: cx.now_ms,
                });
                cx.emit(Event::CacheSaved {
                    job,
                    tenant: tenant.to_string(),
                    key: key.to_string(),
                    size_bytes: *size_bytes,
                });
            }
            CacheSave::NotSaved { reason } => cx.emit(Event::CacheNotSaved {
                job,
                reason: reason.clone(),
            }),
        }
        if let Some(a) = self.jobs.get_mut(&job).and_then(|j| j.current_attempt_mut()) {
            a.cache.get_or_insert_with(Default::default).saved = Some(verdict);
        }
        Ok(Response::Done { changed: true })
    }

    /// Forgets `tenant`'s least recently used caches other than `key` until `size_bytes` more
    /// (in place of `key`'s own) fit in `budget`, and one more cache fits in
    /// `max_caches_per_tenant`.
    fn make_room(&mut self, cx: &mut EntryContext, tenant: &str, key: &str, size_bytes: u64, budget: u64) {
        let replaced = self.caches.get(tenant, key);
        let mut kept = self
            .caches
            .tenant_bytes(tenant)
            .saturating_sub(replaced.map_or(0, |r| r.size_bytes));
        let mut count = self
            .caches
            .tenant_count(tenant)
            .saturating_sub(usize::from(replaced.is_some()));
        let max_count = usize::try_from(self.limits.max_caches_per_tenant).unwrap_or(usize::MAX);
        let victims: Vec<String> = self
            .caches
            .least_recently_used(tenant)
            .filter(|k| *k != key)
            .map(str::to_string)
            .collect();
        for victim in victims {
            if kept.saturating_add(size_bytes) <= budget && count < max_count {
                break;
            }
            if let Some(r) = self.caches.remove(tenant, &victim) {
                kept = kept.saturating_sub(r.size_bytes);
                count = count.saturating_sub(1);
                cx.emit(Event::CacheRemoved {
                    tenant: tenant.to_string(),
                    key: victim,
                    size_bytes: r.size_bytes,
                    evicted: true,
                });
            }
        }
    }

    pub(crate) fn cache_restored(
        &mut self,
        cx: &mut EntryContext,
        job: JobId,
        fencing: FencingToken,
        digest: &str,
    ) -> Handled {
        if self.running_attempt(job, fencing)?.is_none() {
            return UNCHANGED;
        }
        check_digest(digest)?;
        let j = self.jobs.get(&job).ok_or(Rejection::UnknownJob(job))?;
        let Some(key) = j.spec.cache.as_deref().map(|c| c.key.clone()) else {
            return Err(Rejection::Invalid(SpecError::Conflict {
                field: "cache".into(),
                reason: format!("job {job} restores no cache"),
            }));
        };
        let tenant = j.tenant.clone();
        if self.caches.get(&tenant, &key).is_some_and(|r| r.digest == digest) {
            self.caches.touch(&tenant, &key, cx.now_ms);
        }
        let Some(a) = self.jobs.get_mut(&job).and_then(|j| j.current_attempt_mut()) else {
            return UNCHANGED;
        };
        let note = a.cache.get_or_insert_with(Default::default);
        if note.restored.as_deref() == Some(digest) {
            return UNCHANGED;
        }
        note.restored = Some(digest.into());
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn clear_caches(&mut self, cx: &mut EntryContext, tenant: &str, key: Option<&str>) -> Handled {
        if let Some(reason) = key.and_then(crate::cache_key_problem) {
            return Err(Rejection::Invalid(SpecError::Conflict {
                field: "key".into(),
                reason: reason.to_string(),
            }));
        }
        let keys: Vec<String> = match key {
            Some(k) => {
                if self.caches.get(tenant, k).is_none() {
                    return Err(Rejection::UnknownCache {
                        tenant: tenant.to_string(),
                        key: k.to_string(),
                    });
                }
                vec![k.to_string()]
            }
            None => self.caches.of_tenant(tenant).map(|r| r.key.to_string()).collect(),
        };
        for k in &keys {
            if let Some(r) = self.caches.remove(tenant, k) {
                cx.emit(Event::CacheRemoved {
                    tenant: tenant.to_string(),
                    key: k.clone(),
                    size_bytes: r.size_bytes,
                    evicted: false,
                });
            }
        }
        Ok(Response::Done {
            changed: !keys.is_empty(),
        })
    }
}

/// `reason`, cut to `MAX_CACHE_NOTE_BYTES` on a character boundary and marked as cut.
fn bounded(reason: &str) -> String {
    let mut out = reason.to_string();
    if out.len() > MAX_CACHE_NOTE_BYTES {
        crate::repository::cut(&mut out, MAX_CACHE_NOTE_BYTES);
        out.push('…');
    }
    out
}
