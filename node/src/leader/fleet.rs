//! The leader's decisions about its providers and pools as a whole, as pure functions: which
//! listed workers are orphans, whether the leader sees a pool's workers at all, what a pool's
//! recorded problem should say, which measured capacity to propose. `drive.rs` gathers what they need and carries out what they return.

use flotilla_state_machine::{Command, Pool, ProviderKind, Resources};
use std::collections::BTreeMap;

/// The listed workers no live assignment accounts for (`live` says which are), or none at all
/// while the state that says which are live has not applied `read_index` (obtained after
/// listing): a lagging state would call a worker of a just-committed assignment an orphan.
pub fn orphans(listed: &[String], applied_index: u64, read_index: u64, live: impl Fn(&str) -> bool) -> Vec<String> {
    if applied_index < read_index {
        return Vec::new();
    }
    listed.iter().filter(|n| !live(n)).cloned().collect()
}

/// Whether a pool's workers live on one host only (the host of the leader that created them):
/// process workers, and Docker workers behind the node's local socket.
pub fn host_local(kind: ProviderKind) -> bool {
    matches!(kind, ProviderKind::Process | ProviderKind::Docker)
}

/// Whether this leader can see an assignment's worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// It has the pool's provider and is on the worker's host (or the worker has none).
    Sees,
    /// It has no provider of the pool's kind.
    NoProvider,
    /// The worker lives on another host (`host`), which this leader is not on: what its
    /// provider would say (no such worker) says nothing of the real one, which may still run.
    OtherHost { host: String },
}

/// Whether a leader on host `host_id`, which has or lacks the pool's provider, sees a worker
/// that lives on `worker_host`.
pub fn reach(worker_host: Option<&str>, has_provider: bool, host_id: &str) -> Reach {
    match worker_host {
        Some(host) if host != host_id => Reach::OtherHost { host: host.to_string() },
        _ if !has_provider => Reach::NoProvider,
        _ => Reach::Sees,
    }
}

/// The command that brings `pool`'s recorded problem in line with this leader (node `leader`
/// on host `host_id`, which has or lacks the pool's provider, and cannot see the pool's
/// workers counted in `elsewhere` by the host they live on); `None` when the record is
/// already right.
pub fn pool_problem(
    pool: &Pool,
    has_provider: bool,
    elsewhere: &BTreeMap<String, usize>,
    leader: u64,
    host_id: &str,
) -> Option<Command> {
    let mut problems = Vec::new();
    if !has_provider {
        problems.push(format!(
            "the leader (node {leader}) has no {} provider: the pool's jobs wait, and fail at their timeouts",
            pool.spec.provider
        ));
    }
    if !elsewhere.is_empty() {
        let hosts: Vec<String> = elsewhere
            .iter()
            .map(|(host, n)| format!("{n} on host {host}"))
            .collect();
        problems.push(format!(
            "workers the leader (node {leader}, on host {host_id}) cannot see: {}; their jobs are left alone until a leader on their host takes over, and fail at their timeouts",
            hosts.join(", ")
        ));
    }
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    (pool.problem != problem).then(|| Command::SetPoolProblem {
        pool: pool.spec.name.clone(),
        problem,
    })
}

/// The capacity update for a pool whose provider measured `measured`, or `None` when the
/// registered capacity already says it. Never below what is allocated: Flotilla's own workers
/// hold that, and `apply` refuses a capacity under it.
pub fn measured_capacity(pool: &Pool, measured: Resources) -> Option<Command> {
    let capacity = Resources {
        cpu_millis: measured.cpu_millis.max(pool.allocated.cpu_millis),
        memory_mib: measured.memory_mib.max(pool.allocated.memory_mib),
        gpus: measured.gpus.max(pool.allocated.gpus),
    };
    (capacity != pool.spec.capacity).then(|| Command::UpdatePoolCapacity {
        pool: pool.spec.name.clone(),
        capacity,
        max_workers: pool.spec.max_workers,
    })
}

#[cfg(test)]
mod tests {
    use super::{Reach, host_local, measured_capacity, orphans, pool_problem, reach};
    use flotilla_state_machine::{Command, Pool, PoolSpec, ProviderKind, Resources};
    use std::collections::BTreeMap;

    fn pool(provider: ProviderKind, problem: Option<&str>) -> Pool {
        let spec = PoolSpec {
            name: "d".into(),
            provider,
            capacity: Resources::new(1000, 1000, 0),
            max_workers: 4,
            labels: Default::default(),
            settings: Default::default(),
        };
        Pool {
            spec,
            allocated: Resources::ZERO,
            workers: 0,
            draining: false,
            problem: problem.map(str::to_string),
        }
    }

    #[test]
    fn a_pool_the_leader_cannot_drive_is_recorded_once_and_cleared() {
        let none = BTreeMap::new();
        let set = pool_problem(&pool(ProviderKind::Docker, None), false, &none, 2, "h").expect("a problem is recorded");
        let Command::SetPoolProblem {
            pool: name,
            problem: Some(text),
        } = &set
        else {
            panic!("{set:?}")
        };
        assert_eq!(name, "d");
        assert!(text.contains("node 2") && text.contains("docker"), "{text}");
        // Recorded already: nothing more to say until something changes.
        assert_eq!(
            pool_problem(&pool(ProviderKind::Docker, Some(text)), false, &none, 2, "h"),
            None
        );
        // Another leader without the provider names itself.
        assert!(matches!(
            pool_problem(&pool(ProviderKind::Docker, Some(text)), false, &none, 3, "h"),
            Some(Command::SetPoolProblem { problem: Some(_), .. })
        ));
        // A leader with the provider clears it.
        assert_eq!(
            pool_problem(&pool(ProviderKind::Docker, Some(text)), true, &none, 3, "h"),
            Some(Command::SetPoolProblem {
                pool: "d".into(),
                problem: None
            })
        );
        assert_eq!(
            pool_problem(&pool(ProviderKind::Docker, None), true, &none, 3, "h"),
            None
        );
    }

    #[test]
    fn a_worker_on_another_host_is_out_of_sight_and_the_pool_says_where() {
        assert_eq!(reach(Some("builder-1"), true, "builder-1"), Reach::Sees);
        let away = reach(Some("builder-1"), true, "builder-2");
        assert_eq!(
            away,
            Reach::OtherHost {
                host: "builder-1".into()
            }
        );
        // Out of sight whether or not this leader has the provider.
        assert_eq!(reach(Some("builder-1"), false, "builder-2"), away);
        assert_eq!(reach(Some("builder-1"), false, "builder-1"), Reach::NoProvider);
        // A worker every node reaches is seen from every host.
        assert_eq!(reach(None, true, "anywhere"), Reach::Sees);
        assert!(host_local(ProviderKind::Process) && host_local(ProviderKind::Docker));
        assert!(!host_local(ProviderKind::Kubernetes) && !host_local(ProviderKind::Sim));

        let elsewhere = BTreeMap::from([("builder-1".to_string(), 2)]);
        let Some(Command::SetPoolProblem {
            problem: Some(text), ..
        }) = pool_problem(&pool(ProviderKind::Process, None), true, &elsewhere, 4, "builder-2")
        else {
            panic!("no problem recorded")
        };
        assert!(
            text.contains("2 on host builder-1") && text.contains("node 4") && text.contains("builder-2"),
            "{text}"
        );
    }

    #[test]
    fn no_orphan_is_named_from_a_state_behind_the_read_index() {
        let listed = vec!["j1-a1".to_string(), "j2-a1".to_string()];
        let live = |n: &str| n == "j1-a1";
        // j2's assignment was committed at index 10 but this state has applied only 9: the
        // worker is not an orphan, whatever the state says (the bug the chaos harness found).
        assert!(orphans(&listed, 9, 10, live).is_empty());
        assert_eq!(orphans(&listed, 10, 10, live), vec!["j2-a1".to_string()]);
        assert_eq!(orphans(&listed, 11, 10, live), vec!["j2-a1".to_string()]);
        // Nothing listed, nothing to remove.
        assert!(orphans(&[], 10, 10, live).is_empty());
    }

    #[test]
    fn measured_capacity_is_proposed_when_it_differs_and_never_below_the_allocation() {
        let mut p = pool(ProviderKind::Kubernetes, None);
        // The same as registered: nothing to propose.
        assert_eq!(measured_capacity(&p, Resources::new(1000, 1000, 0)), None);
        // More room measured: proposed as measured, with the pool's worker limit kept.
        assert_eq!(
            measured_capacity(&p, Resources::new(4000, 8192, 1)),
            Some(Command::UpdatePoolCapacity {
                pool: "d".into(),
                capacity: Resources::new(4000, 8192, 1),
                max_workers: 4,
            })
        );
        // Less than the pool's own workers hold: each dimension is kept at the allocation.
        p.allocated = Resources::new(1500, 200, 0);
        assert_eq!(
            measured_capacity(&p, Resources::new(500, 300, 0)),
            Some(Command::UpdatePoolCapacity {
                pool: "d".into(),
                capacity: Resources::new(1500, 300, 0),
                max_workers: 4,
            })
        );
    }
}
