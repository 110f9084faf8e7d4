//! A worker pool: one provider instance with a capacity and labels.

use crate::{JobSpec, Resources};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Process,
    Docker,
    Kubernetes,
    /// Accounts capacity only; used by benchmarks and tests.
    Sim,
}

impl ProviderKind {
    /// Whether the provider can run a job that names a container image.
    pub fn runs_images(self) -> bool {
        !matches!(self, ProviderKind::Process)
    }

    /// The keys a pool of this provider may set in `PoolSpec::settings`.
    pub fn settings(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Kubernetes => &["image_pull_secrets", "node_selector", "service_account", "tolerations"],
            ProviderKind::Docker => &["network", "pids_limit", "user"],
            ProviderKind::Process | ProviderKind::Sim => &[],
        }
    }

    /// Why `value` is no good for setting `key` (one of `settings()`), if it is not.
    pub fn check_setting(self, key: &str, value: &str) -> Result<(), String> {
        let plain = |v: &str| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match (self, key) {
            (ProviderKind::Docker, "network") if !plain(value) => {
                Err("a Docker network name: letters, digits, '-', '_' or '.'".into())
            }
            (ProviderKind::Docker, "pids_limit") => match value.parse::<u32>() {
                Ok(1..=1_000_000) => Ok(()),
                _ => Err("a number of processes from 1 to 1000000".into()),
            },
            (ProviderKind::Docker, "user") => {
                let (user, group) = value.split_once(':').unwrap_or((value, "x"));
                if plain(user) && plain(group) {
                    Ok(())
                } else {
                    Err("a user (name or uid), optionally ':' and a group".into())
                }
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ProviderKind::Process => "process",
            ProviderKind::Docker => "docker",
            ProviderKind::Kubernetes => "kubernetes",
            ProviderKind::Sim => "sim",
        };
        f.write_str(s)
    }
}

/// What an operator registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    pub provider: ProviderKind,
    pub capacity: Resources,
    pub max_workers: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Settings for the pool's provider (Kubernetes: `node_selector`, `service_account`,
    /// `image_pull_secrets`, `tolerations`). Opaque to the state machine.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub spec: PoolSpec,
    /// Sum of the resources of the pool's live assignments.
    pub allocated: Resources,
    /// Number of live assignments.
    pub workers: u32,
    /// A draining pool receives no new placements.
    pub draining: bool,
    /// Why the leader cannot drive this pool's workers right now (it has no provider of the
    /// pool's kind), as the leader last reported it; `None` when it can.
    #[serde(default)]
    pub problem: Option<String>,
}

impl Pool {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn free(&self) -> Resources {
        self.spec.capacity.saturating_sub(&self.allocated)
    }

    /// Why this pool could never run `job`, whatever its load; `None` if it could.
    pub fn static_misfit(&self, job: &JobSpec) -> Option<String> {
        let name = &self.spec.name;
        self.misfit(job).map(|m| match m {
            Misfit::NoImages => format!("pool {name} ({}) cannot run images", self.spec.provider),
            Misfit::Label(k, v) => format!("pool {name} lacks label {k}={v}"),
            Misfit::TooSmall => format!("pool {name} offers {} < {}", self.spec.capacity, job.resources),
            Misfit::NoWorkers => format!("pool {name} allows no workers"),
        })
    }

    /// Whether this pool could run `job` once it had room (`static_misfit` is `None`), without
    /// building the explanation: the scheduler asks this of thousands of pools per plan.
    pub fn can_ever_run(&self, job: &JobSpec) -> bool {
        self.misfit(job).is_none()
    }

    fn misfit<'j>(&self, job: &'j JobSpec) -> Option<Misfit<'j>> {
        if job.image.is_some() && !self.spec.provider.runs_images() {
            return Some(Misfit::NoImages);
        }
        if let Some((k, v)) = job
            .constraints
            .iter()
            .find(|(k, v)| self.spec.labels.get(*k).map(String::as_str) != Some(*v))
        {
            return Some(Misfit::Label(k, v));
        }
        if !job.resources.fits_within(&self.spec.capacity) {
            return Some(Misfit::TooSmall);
        }
        if self.spec.max_workers == 0 {
            return Some(Misfit::NoWorkers);
        }
        None
    }

    /// Whether `job` fits now: statically and in the free capacity.
    pub fn fits_now(&self, job: &JobSpec) -> bool {
        self.unfit_now(job).is_none()
    }

    /// Why `job` does not fit this pool now, the first reason in this order: it never could
    /// (`static_misfit`), the pool is draining, it runs its most workers, its free capacity is
    /// too small. `None` when it fits. The plan's re-check and "why pending" both ask this.
    pub fn unfit_now(&self, job: &JobSpec) -> Option<UnfitNow> {
        if let Some(reason) = self.static_misfit(job) {
            Some(UnfitNow::Never(reason))
        } else if self.draining {
            Some(UnfitNow::Draining)
        } else if self.workers >= self.spec.max_workers {
            Some(UnfitNow::AtWorkerLimit)
        } else if !job.resources.fits_within(&self.free()) {
            Some(UnfitNow::NoRoom)
        } else {
            None
        }
    }
}

/// Why a pool cannot take a job now (see `Pool::unfit_now`); each reader words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnfitNow {
    /// It could never run the job: `static_misfit`'s reason.
    Never(String),
    Draining,
    /// It runs `max_workers` workers.
    AtWorkerLimit,
    /// Its free capacity is smaller than the job asks.
    NoRoom,
}

/// Why a pool can never run a job (see `Pool::static_misfit`).
enum Misfit<'j> {
    NoImages,
    Label(&'j str, &'j str),
    TooSmall,
    NoWorkers,
}

#[cfg(test)]
mod tests {
    use super::ProviderKind;

    #[test]
    fn docker_settings_are_checked_and_other_providers_take_any_value() {
        let docker = ProviderKind::Docker;
        assert!(docker.check_setting("network", "bridge").is_ok());
        assert!(docker.check_setting("network", "ci_net.1").is_ok());
        assert!(docker.check_setting("network", "host;rm").is_err());
        assert!(docker.check_setting("network", "").is_err());
        assert!(docker.check_setting("pids_limit", "256").is_ok());
        for bad in ["0", "-1", "abc", "1000001", ""] {
            assert!(docker.check_setting("pids_limit", bad).is_err(), "{bad}");
        }
        assert!(docker.check_setting("user", "1000").is_ok());
        assert!(docker.check_setting("user", "build:build").is_ok());
        assert!(docker.check_setting("user", "a b").is_err());
        assert!(docker.check_setting("user", "a:").is_err());
        assert!(
            ProviderKind::Kubernetes
                .check_setting("node_selector", "a=b,c=d")
                .is_ok()
        );
    }
}
