//! Pool registration and capacity changes.
//!
//! Capacity may not drop below what is allocated: the invariant "allocated <= capacity" holds
//! at every index. To shrink a busy pool, drain it first and wait for its workers to finish.

use super::{EntryContext, Handled};
use crate::spec::{validate_label_key, validate_name};
use crate::{Event, Limits, Pool, PoolSpec, Rejection, Resources, Response, SpecError, State};

impl State {
    pub(crate) fn register_pool(&mut self, cx: &mut EntryContext, spec: &PoolSpec) -> Handled {
        validate_name("name", &spec.name, &self.limits)?;
        if spec.labels.len() > self.limits.max_labels {
            let max = self.limits.max_labels;
            return Err(SpecError::TooMany {
                field: "labels".into(),
                count: spec.labels.len(),
                max,
            }
            .into());
        }
        for (k, v) in &spec.labels {
            validate_label_key(&format!("labels.{k}"), k, &self.limits)?;
            if v.len() > self.limits.max_value_bytes {
                let max = self.limits.max_value_bytes;
                return Err(SpecError::TooLong {
                    field: format!("labels.{k}"),
                    len: v.len(),
                    max,
                }
                .into());
            }
        }
        let known = spec.provider.settings();
        for (k, v) in &spec.settings {
            if !known.contains(&k.as_str()) {
                let expected = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(SpecError::Conflict {
                    field: format!("settings.{k}"),
                    reason: format!(
                        "the {} provider takes no such setting (known: {expected})",
                        spec.provider
                    ),
                }
                .into());
            }
            if v.len() > self.limits.max_value_bytes {
                let max = self.limits.max_value_bytes;
                return Err(SpecError::TooLong {
                    field: format!("settings.{k}"),
                    len: v.len(),
                    max,
                }
                .into());
            }
            if let Err(reason) = spec.provider.check_setting(k, v) {
                return Err(SpecError::Conflict {
                    field: format!("settings.{k}"),
                    reason,
                }
                .into());
            }
        }
        check_capacity(&self.limits, &spec.capacity, spec.max_workers)?;
        if let Some(existing) = self.pools.get(&spec.name) {
            return if &existing.spec == spec {
                Ok(Response::Done { changed: false })
            } else {
                Err(Rejection::PoolExists(spec.name.clone()))
            };
        }
        if self.pools.len() >= self.limits.max_pools {
            let max = self.limits.max_pools;
            return Err(SpecError::TooMany {
                field: "pools".into(),
                count: self.pools.len() + 1,
                max,
            }
            .into());
        }
        self.pools.insert(
            spec.name.clone(),
            Pool {
                spec: spec.clone(),
                allocated: Resources::ZERO,
                workers: 0,
                draining: false,
                problem: None,
            },
        );
        cx.emit(Event::PoolRegistered {
            pool: spec.name.clone(),
        });
        self.emit_capacity(cx, &spec.name);
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn update_pool_capacity(
        &mut self,
        cx: &mut EntryContext,
        pool: &str,
        capacity: Resources,
        max_workers: u32,
    ) -> Handled {
        check_capacity(&self.limits, &capacity, max_workers)?;
        let p = self
            .pools
            .get(pool)
            .ok_or_else(|| Rejection::UnknownPool(pool.to_string()))?;
        if !p.allocated.fits_within(&capacity) || max_workers < p.workers {
            let allocated = format!("{} in {} workers", p.allocated, p.workers);
            return Err(Rejection::CapacityBelowAllocated {
                pool: pool.to_string(),
                allocated,
            });
        }
        if p.spec.capacity == capacity && p.spec.max_workers == max_workers {
            return Ok(Response::Done { changed: false });
        }
        if let Some(p) = self.pools.get_mut(pool) {
            p.spec.capacity = capacity;
            p.spec.max_workers = max_workers;
        }
        self.emit_capacity(cx, pool);
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn set_pool_draining(&mut self, cx: &mut EntryContext, pool: &str, draining: bool) -> Handled {
        let p = self
            .pools
            .get_mut(pool)
            .ok_or_else(|| Rejection::UnknownPool(pool.to_string()))?;
        if p.draining == draining {
            return Ok(Response::Done { changed: false });
        }
        p.draining = draining;
        self.emit_capacity(cx, pool);
        Ok(Response::Done { changed: true })
    }

    /// Records why the leader cannot drive `pool` (or that it can again). Emits no event: it is
    /// the leader's report of itself, shown by `GET /v1/pools`.
    pub(crate) fn set_pool_problem(&mut self, pool: &str, problem: Option<&str>) -> Handled {
        if let Some(text) = problem
            && text.len() > self.limits.max_value_bytes
        {
            let max = self.limits.max_value_bytes;
            return Err(SpecError::TooLong {
                field: "problem".into(),
                len: text.len(),
                max,
            }
            .into());
        }
        let p = self
            .pools
            .get_mut(pool)
            .ok_or_else(|| Rejection::UnknownPool(pool.to_string()))?;
        if p.problem.as_deref() == problem {
            return Ok(Response::Done { changed: false });
        }
        p.problem = problem.map(str::to_string);
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn remove_pool(&mut self, cx: &mut EntryContext, pool: &str) -> Handled {
        let p = self
            .pools
            .get(pool)
            .ok_or_else(|| Rejection::UnknownPool(pool.to_string()))?;
        if p.workers > 0 {
            return Err(Rejection::PoolBusy {
                pool: pool.to_string(),
                workers: p.workers,
            });
        }
        self.pools.remove(pool);
        cx.emit(Event::PoolRemoved { pool: pool.to_string() });
        Ok(Response::Done { changed: true })
    }
}

fn check_capacity(limits: &Limits, capacity: &Resources, max_workers: u32) -> Result<(), SpecError> {
    if capacity.cpu_millis == 0 {
        return Err(SpecError::Zero {
            field: "capacity.cpu_millis".into(),
        });
    }
    if capacity.memory_mib == 0 {
        return Err(SpecError::Zero {
            field: "capacity.memory_mib".into(),
        });
    }
    limits.check_resources("capacity", capacity)?;
    if max_workers == 0 {
        return Err(SpecError::Zero {
            field: "max_workers".into(),
        });
    }
    if max_workers > limits.max_workers_per_pool {
        let max = i64::from(limits.max_workers_per_pool);
        return Err(SpecError::OutOfRange {
            field: "max_workers".into(),
            value: i64::from(max_workers),
            min: 1,
            max,
        });
    }
    Ok(())
}
