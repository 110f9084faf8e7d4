//! `PutSchedule`, `RemoveSchedule`, `FireSchedule`: a tenant's schedules, each due time fired
//! once.

use super::{EntryContext, Handled, Origin};
use crate::schedule::{FireOutcome, MAX_SCHEDULES_PER_TENANT, Schedule, ScheduleSpec};
use crate::spec::validate_name;
use crate::{Rejection, Response, ScheduledRun, SpecError, State};

impl State {
    pub(crate) fn put_schedule(
        &mut self,
        cx: &mut EntryContext,
        tenant: &str,
        spec: &ScheduleSpec,
        next_due_ms: u64,
    ) -> Handled {
        validate_name("tenant", tenant, &self.limits)?;
        spec.validate(&self.limits)?;
        if self.repository(tenant, &spec.repository).is_none() {
            return Err(Rejection::UnknownRepository {
                tenant: tenant.to_string(),
                name: spec.repository.clone(),
            });
        }
        let key = (tenant.to_string(), spec.name.clone());
        if let Some(s) = self.schedules.get_mut(&key) {
            let changed = s.spec != *spec || s.next_due_ms != next_due_ms;
            s.spec = spec.clone();
            s.next_due_ms = next_due_ms;
            return Ok(Response::Done { changed });
        }
        let count = self.schedules_of(tenant).count();
        if count >= MAX_SCHEDULES_PER_TENANT {
            return Err(Rejection::TooManySchedules {
                count,
                max: MAX_SCHEDULES_PER_TENANT,
            });
        }
        self.schedules.insert(
            key,
            Schedule {
                tenant: tenant.to_string(),
                spec: spec.clone(),
                next_due_ms,
                last: None,
                created_at_ms: cx.now_ms,
            },
        );
        Ok(Response::Done { changed: true })
    }

    pub(crate) fn remove_schedule(&mut self, tenant: &str, name: &str) -> Handled {
        match self.schedules.remove(&(tenant.to_string(), name.to_string())) {
            Some(_) => Ok(Response::Done { changed: true }),
            None => Err(Rejection::UnknownSchedule {
                tenant: tenant.to_string(),
                name: name.to_string(),
            }),
        }
    }

    /// Fires `due_ms` of a schedule, only if it is the time due: a second firing of the same
    /// time (a new leader that did not see the first) is refused. A run the spec refuses is
    /// recorded as failed; the schedule moves on either way.
    pub(crate) fn fire_schedule(
        &mut self,
        cx: &mut EntryContext,
        tenant: &str,
        name: &str,
        due_ms: u64,
        next_due_ms: u64,
        run: &ScheduledRun,
    ) -> Handled {
        let key = (tenant.to_string(), name.to_string());
        let Some(schedule) = self.schedules.get(&key) else {
            return Err(Rejection::UnknownSchedule {
                tenant: tenant.to_string(),
                name: name.to_string(),
            });
        };
        if schedule.next_due_ms != due_ms {
            return Err(Rejection::StaleSchedule {
                name: name.to_string(),
                due_ms,
                next_due_ms: schedule.next_due_ms,
            });
        }
        if next_due_ms <= due_ms {
            return Err(SpecError::Conflict {
                field: "next_due_ms".into(),
                reason: format!("{next_due_ms} is not after the time fired ({due_ms})"),
            }
            .into());
        }
        let outcome = match run {
            ScheduledRun::Skip { reason } => FireOutcome::Skipped { reason: reason.clone() },
            ScheduledRun::Fail { reason } => FireOutcome::Failed { reason: reason.clone() },
            ScheduledRun::Run { spec, source } => {
                let key = format!("schedule:{name}:{due_ms}");
                let origin = Origin {
                    source: Some(source),
                    rerun_of: None,
                };
                // A refused submission changes nothing (it checks before it changes).
                match self.submit_pipeline(cx, tenant, Some(&key), spec, origin, None) {
                    Ok(Response::Submitted { pipeline, .. }) => FireOutcome::Started { pipeline },
                    Ok(other) => FireOutcome::Failed {
                        reason: format!("unexpected answer {other:?}"),
                    },
                    Err(r) => FireOutcome::Failed { reason: r.to_string() },
                }
            }
        };
        if let Some(schedule) = self.schedules.get_mut(&key) {
            let mut outcome = outcome;
            if let FireOutcome::Skipped { reason } | FireOutcome::Failed { reason } = &mut outcome {
                crate::repository::cut(reason, crate::repository::MAX_REASON_BYTES);
            }
            schedule.last = Some((due_ms, outcome));
            schedule.next_due_ms = next_due_ms;
        }
        Ok(Response::Done { changed: true })
    }

    /// The schedules of `tenant`, by name.
    pub fn schedules_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a Schedule> + 'a {
        self.schedules
            .range((tenant.to_string(), String::new())..)
            .take_while(move |((t, _), _)| t == tenant)
            .map(|(_, s)| s)
    }

    /// Every schedule, by tenant and name.
    pub fn schedules(&self) -> impl Iterator<Item = &Schedule> {
        self.schedules.values()
    }
}
