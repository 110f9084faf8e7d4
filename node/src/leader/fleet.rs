//! The leader's decisions about its providers and pools as a whole, as pure functions: which
//! listed workers are orphans, whether the leader sees a pool's workers at all, what a pool's
//! recorded problem should say, which measured capacity to propose. `drive.rs` gathers what they need and carries out what they return.

use flotilla_providers::ListedWorker;
use flotilla_state_machine::{Command, Pool, ProviderKind, Resources};
use std::collections::BTreeMap;

/// The names of the listed workers no live assignment accounts for (`live` says which are), or
/// none at all while the state that says which are live has not applied `read_index`
/// (obtained after listing): a lagging state would call a worker of a just-committed
/// assignment an orphan. A worker labelled with another cluster's id than `own_cluster` is
/// never one: it is that cluster's to remove.
pub fn orphans(
    listed: &[ListedWorker],
    own_cluster: Option<&str>,
    applied_index: u64,
    read_index: u64,
    live: impl Fn(&str) -> bool,
) -> Vec<String> {
    if applied_index < read_index {
        return Vec::new();
    }
    listed
        .iter()
        .filter(|w| !w.is_foreign(own_cluster) && !live(&w.name))
        .map(|w| w.name.clone())
        .collect()
}

/// Where this node's workers of each kind live, for the kinds only some nodes can see: process
/// workers on its host, Docker workers on its host behind a local socket or at a `tcp://`
/// engine every node reaches (then the endpoint is the place, and any leader configured with
/// it sees them). Kinds absent (Kubernetes, sim) are seen from anywhere. The placing leader
/// stamps its place on the placement (`Placement::worker_host`); `reach` compares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Whereabouts {
    by_kind: BTreeMap<ProviderKind, String>,
}

impl Whereabouts {
    /// A node on host `host_id`: its process and Docker workers live there.
    pub fn for_host(host_id: &str) -> Self {
        let by_kind = [ProviderKind::Process, ProviderKind::Docker]
            .into_iter()
            .map(|k| (k, host_id.to_string()))
            .collect();
        Whereabouts { by_kind }
    }

    /// The same, with `kind`'s workers at `place` instead (a shared Docker endpoint).
    pub fn with(mut self, kind: ProviderKind, place: impl Into<String>) -> Self {
        self.by_kind.insert(kind, place.into());
        self
    }

    /// Where this node's workers of `kind` live; `None`: where every node sees them.
    pub fn of(&self, kind: ProviderKind) -> Option<&str> {
        self.by_kind.get(&kind).map(String::as_str)
    }
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

/// Whether a leader whose workers of the pool's kind live at `own_place` (`Whereabouts::of`),
/// and which has or lacks the pool's provider, sees a worker that lives at `worker_host`.
pub fn reach(worker_host: Option<&str>, has_provider: bool, own_place: Option<&str>) -> Reach {
    match worker_host {
        Some(host) if Some(host) != own_place => Reach::OtherHost { host: host.to_string() },
        _ if !has_provider => Reach::NoProvider,
        _ => Reach::Sees,
    }
}

/// The command that brings `pool`'s recorded problem in line with this leader (node `leader`,
/// whose workers of the pool's kind live at `own_place`, which has or lacks the pool's
/// provider, and cannot see the pool's workers counted in `elsewhere` by the place they live
/// at); `None` when the record is already right.
pub fn pool_problem(
    pool: &Pool,
    has_provider: bool,
    elsewhere: &BTreeMap<String, usize>,
    leader: u64,
    own_place: &str,
) -> Option<Command> {
    let mut problems = Vec::new();
    if !has_provider {
        problems.push(format!(
            "the leader (node {leader}) has no {} provider: the pool's jobs wait, and fail at their timeouts",
            pool.spec.provider
        ));
    }
    if !elsewhere.is_empty() {
        let hosts: Vec<String> = elsewhere.iter().map(|(host, n)| format!("{n} on {host}")).collect();
        problems.push(format!(
            "workers the leader (node {leader}, on {own_place}) cannot see: {}; their jobs are left alone until a leader that reaches them takes over, and fail at their timeouts",
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
    use super::{ListedWorker, Reach, Whereabouts, measured_capacity, orphans, pool_problem, reach};
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
        let (b1, b2) = (Some("builder-1"), Some("builder-2"));
        assert_eq!(reach(b1, true, b1), Reach::Sees);
        let away = reach(b1, true, b2);
        assert_eq!(
            away,
            Reach::OtherHost {
                host: "builder-1".into()
            }
        );
        // Out of sight whether or not this leader has the provider.
        assert_eq!(reach(b1, false, b2), away);
        assert_eq!(reach(b1, false, b1), Reach::NoProvider);
        // A worker every node reaches is seen from every host.
        assert_eq!(reach(None, true, b2), Reach::Sees);
        assert_eq!(reach(None, true, None), Reach::Sees);

        let elsewhere = BTreeMap::from([("builder-1".to_string(), 2)]);
        let Some(Command::SetPoolProblem {
            problem: Some(text), ..
        }) = pool_problem(&pool(ProviderKind::Process, None), true, &elsewhere, 4, "builder-2")
        else {
            panic!("no problem recorded")
        };
        assert!(
            text.contains("2 on builder-1") && text.contains("node 4") && text.contains("builder-2"),
            "{text}"
        );
    }

    #[test]
    fn process_workers_live_on_the_host_and_docker_ones_at_a_shared_engine_when_there_is_one() {
        let local = Whereabouts::for_host("builder-1");
        assert_eq!(local.of(ProviderKind::Process), Some("builder-1"));
        assert_eq!(local.of(ProviderKind::Docker), Some("builder-1"));
        assert_eq!(local.of(ProviderKind::Kubernetes), None);
        assert_eq!(local.of(ProviderKind::Sim), None);

        // Two nodes on different hosts that reach one engine by TCP: a Docker worker placed by
        // either is seen by the other; their process workers are not.
        let engine = "tcp://docker.internal:2376";
        let one = Whereabouts::for_host("builder-1").with(ProviderKind::Docker, engine);
        let two = Whereabouts::for_host("builder-2").with(ProviderKind::Docker, engine);
        let docker = ProviderKind::Docker;
        assert_eq!(reach(one.of(docker), true, two.of(docker)), Reach::Sees);
        let process = ProviderKind::Process;
        assert!(matches!(
            reach(one.of(process), true, two.of(process)),
            Reach::OtherHost { .. }
        ));
        // A node still on its local socket does not see the shared engine's workers.
        assert!(matches!(
            reach(one.of(docker), true, local.of(docker)),
            Reach::OtherHost { .. }
        ));
    }

    #[test]
    fn no_orphan_is_named_from_a_state_behind_the_read_index() {
        let listed = vec![listed("j1-a1", Some(OURS)), listed("j2-a1", Some(OURS))];
        let live = |n: &str| n == "j1-a1";
        let own = Some(OURS);
        // j2's assignment was committed at index 10 but this state has applied only 9: the
        // worker is not an orphan, whatever the state says (the bug the chaos harness found).
        assert!(orphans(&listed, own, 9, 10, live).is_empty());
        assert_eq!(orphans(&listed, own, 10, 10, live), vec!["j2-a1".to_string()]);
        assert_eq!(orphans(&listed, own, 11, 10, live), vec!["j2-a1".to_string()]);
        // Nothing listed, nothing to remove.
        assert!(orphans(&[], own, 10, 10, live).is_empty());
    }

    const OURS: &str = "00000000000000000000000000000001";

    fn listed(name: &str, cluster_id: Option<&str>) -> ListedWorker {
        ListedWorker {
            name: name.into(),
            cluster_id: cluster_id.map(str::to_string),
        }
    }

    #[test]
    fn a_worker_of_another_cluster_is_never_an_orphan() {
        // A node that founded a cluster of its own (a lost volume under an old deployment)
        // shares the real cluster's name, engine and namespace, and has no assignment for the
        // real cluster's workers: it leaves them alone. Workers created before the id label
        // existed, and a node with no id recorded, fall back to the cluster name's label.
        let theirs = "00000000000000000000000000000002";
        let listed = vec![
            listed("j1-a1", Some(theirs)),
            listed("j2-a1", Some(OURS)),
            listed("j3-a1", None),
        ];
        let none_live = |_: &str| false;
        assert_eq!(
            orphans(&listed, Some(OURS), 10, 10, none_live),
            vec!["j2-a1".to_string(), "j3-a1".to_string()]
        );
        assert_eq!(orphans(&listed, None, 10, 10, none_live).len(), 3);
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
