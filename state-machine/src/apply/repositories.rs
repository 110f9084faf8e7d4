//! `PutRepository`, `RemoveRepository`, `RecordDelivery`: a tenant's source repositories and
//! what came of their webhook deliveries.

use super::{EntryContext, Handled};
use crate::repository::{MAX_REPOSITORIES, MAX_REPOSITORIES_PER_TENANT};
use crate::spec::validate_name;
use crate::{Delivery, Rejection, Repository, RepositorySpec, Response, SpecError, State};
use std::collections::VecDeque;

impl State {
    pub(crate) fn put_repository(&mut self, cx: &mut EntryContext, tenant: &str, spec: &RepositorySpec) -> Handled {
        validate_name("tenant", tenant, &self.limits)?;
        spec.validate(&self.limits)?;
        for (field, name) in spec.secret_uses() {
            if self.secret(tenant, name).is_none() {
                return Err(SpecError::UnknownSecret {
                    field: field.to_string(),
                    tenant: tenant.to_string(),
                    name: name.to_string(),
                }
                .into());
            }
        }
        let key = (tenant.to_string(), spec.name.clone());
        if let Some(repo) = self.repositories.get_mut(&key) {
            let changed = repo.spec != *spec;
            if changed {
                repo.spec = spec.clone();
                repo.updated_at_ms = cx.now_ms;
            }
            return Ok(Response::Done { changed });
        }
        let count = self.repositories.len();
        if count >= MAX_REPOSITORIES {
            return Err(Rejection::TooManyRepositories {
                count,
                max: MAX_REPOSITORIES,
            });
        }
        let of_tenant = self.repositories_of(tenant).count();
        if of_tenant >= MAX_REPOSITORIES_PER_TENANT {
            return Err(Rejection::TooManyRepositories {
                count: of_tenant,
                max: MAX_REPOSITORIES_PER_TENANT,
            });
        }
        self.repositories.insert(
            key,
            Repository {
                tenant: tenant.to_string(),
                spec: spec.clone(),
                created_at_ms: cx.now_ms,
                updated_at_ms: cx.now_ms,
                deliveries: VecDeque::new(),
            },
        );
        Ok(Response::Done { changed: true })
    }

    /// Forgets a repository. Its pipelines keep their source (a job of one still running
    /// finds its checkout refused and fails with the reason).
    pub(crate) fn remove_repository(&mut self, tenant: &str, name: &str) -> Handled {
        match self.repositories.remove(&(tenant.to_string(), name.to_string())) {
            Some(_) => Ok(Response::Done { changed: true }),
            None => Err(unknown(tenant, name)),
        }
    }

    /// Records a delivery at the entry's time (not the proposer's).
    pub(crate) fn record_delivery(
        &mut self,
        cx: &mut EntryContext,
        tenant: &str,
        repository: &str,
        delivery: &Delivery,
    ) -> Handled {
        if delivery.id.is_empty() {
            return Err(SpecError::Empty {
                field: "delivery.id".into(),
            }
            .into());
        }
        let repo = self
            .repositories
            .get_mut(&(tenant.to_string(), repository.to_string()))
            .ok_or_else(|| unknown(tenant, repository))?;
        let changed = repo.record(Delivery {
            at_ms: cx.now_ms,
            ..delivery.clone()
        });
        Ok(Response::Done { changed })
    }

    /// The repositories of `tenant`, by name.
    pub fn repositories_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a Repository> + 'a {
        self.repositories
            .range((tenant.to_string(), String::new())..)
            .take_while(move |((t, _), _)| t == tenant)
            .map(|(_, r)| r)
    }

    /// Every repository, by tenant and name.
    pub fn repositories(&self) -> impl Iterator<Item = &Repository> {
        self.repositories.values()
    }

    pub fn repository(&self, tenant: &str, name: &str) -> Option<&Repository> {
        self.repositories.get(&(tenant.to_string(), name.to_string()))
    }
}

fn unknown(tenant: &str, name: &str) -> Rejection {
    Rejection::UnknownRepository {
        tenant: tenant.to_string(),
        name: name.to_string(),
    }
}
