//! The pure scheduler: strategies, constraints, GPUs, quotas, priorities, fair share, and the
//! re-check in `apply` that makes stale plans harmless.

mod common;
use common::*;
use flotilla_state_machine::scheduler::{SchedulerPolicy, Strategy, schedule, schedule_explained};
use flotilla_state_machine::*;

fn two_pools() -> Harness {
    let mut h = Harness::new();
    h.ok(Command::RegisterPool {
        spec: pool("big", ProviderKind::Docker, res(4000, 4096, 0), 10),
    });
    h.ok(Command::RegisterPool {
        spec: pool("small", ProviderKind::Docker, res(2000, 2048, 0), 10),
    });
    h
}

fn sized(name: &str, cpu: u64) -> JobSpec {
    JobSpec {
        resources: res(cpu, 256, 0),
        ..job(name, &[])
    }
}

fn pool_of(placed: &[AcceptedPlacement], job: JobId) -> &str {
    &placed.iter().find(|p| p.job == job).expect("placed").pool
}

#[test]
fn bin_packing_fills_the_tightest_pool_spread_the_emptiest() {
    let mut h = two_pools();
    let (_, ids) = h.submit(pipeline("p", vec![sized("a", 1500), sized("b", 1500)]));
    let placed = h.schedule_with(Strategy::BinPack);
    // a: small leaves 25% free vs big 62%; b: only big still fits.
    assert_eq!(pool_of(&placed, ids[0]), "small");
    assert_eq!(pool_of(&placed, ids[1]), "big");

    let mut h = two_pools();
    let (_, ids) = h.submit(pipeline("p", vec![sized("a", 500), sized("b", 500), sized("c", 500)]));
    let placed = h.schedule_with(Strategy::Spread);
    assert_eq!(pool_of(&placed, ids[0]), "big");
    assert_eq!(pool_of(&placed, ids[1]), "big");
    assert_eq!(pool_of(&placed, ids[2]), "small", "big is now the fuller pool by share");
}

#[test]
fn constraints_pick_the_labelled_pool() {
    let mut h = Harness::new();
    let mut arm = pool("arm", ProviderKind::Docker, res(4000, 4096, 0), 10);
    arm.labels.insert("arch".into(), "arm64".into());
    h.ok(Command::RegisterPool { spec: arm });
    // Tighter than arm for bin-packing, but unlabelled.
    h.ok(Command::RegisterPool {
        spec: pool("x86", ProviderKind::Docker, res(1000, 1024, 0), 10),
    });
    let needs_arm = JobSpec {
        constraints: [("arch".to_string(), "arm64".to_string())].into(),
        ..sized("arm-build", 100)
    };
    let (_, ids) = h.submit(pipeline("p", vec![needs_arm, sized("plain", 100)]));
    let placed = h.schedule();
    assert_eq!(pool_of(&placed, ids[0]), "arm");
    assert_eq!(pool_of(&placed, ids[1]), "x86");
}

#[test]
fn gpu_jobs_get_gpu_pools_and_plain_jobs_avoid_them_while_they_can() {
    let mut h = Harness::new();
    h.ok(Command::RegisterPool {
        spec: pool("gpu", ProviderKind::Docker, res(2000, 4096, 2), 10),
    });
    h.ok(Command::RegisterPool {
        spec: pool("cpu", ProviderKind::Docker, res(4000, 4096, 0), 10),
    });
    let train = JobSpec {
        resources: res(100, 256, 1),
        ..job("train", &[])
    };
    let (_, ids) = h.submit(pipeline(
        "p",
        vec![train, sized("plain", 1000), sized("big", 3000), sized("overflow", 500)],
    ));
    let placed = h.schedule();
    assert_eq!(pool_of(&placed, ids[0]), "gpu");
    // Bin-packing alone would put `plain` on the tighter gpu pool.
    assert_eq!(pool_of(&placed, ids[1]), "cpu");
    assert_eq!(pool_of(&placed, ids[2]), "cpu");
    // The cpu pool is full: a plain job may still use the gpu pool's CPUs.
    assert_eq!(pool_of(&placed, ids[3]), "gpu");
    assert_eq!(h.state.pool("gpu").unwrap().allocated, res(600, 512, 1));
}

#[test]
fn higher_priority_goes_first_fifo_among_equals() {
    let mut h = Harness::new();
    h.ok(Command::RegisterPool {
        spec: pool("one", ProviderKind::Docker, res(1000, 1024, 0), 2),
    });
    let (_, low) = h.submit(pipeline("low", vec![sized("l1", 100), sized("l2", 100)]));
    let (_, high) = h.submit(pipeline(
        "high",
        vec![JobSpec {
            priority: 10,
            ..sized("h", 100)
        }],
    ));
    let placed: Vec<JobId> = h.schedule().iter().map(|p| p.job).collect();
    assert_eq!(
        placed,
        vec![high[0], low[0]],
        "two workers: high first, then the oldest low"
    );
}

#[test]
fn quotas_cap_a_tenant_and_fair_share_alternates_tenants() {
    let mut h = Harness::new();
    h.ok(Command::RegisterPool {
        spec: pool("one", ProviderKind::Docker, res(10_000, 10_240, 0), 100),
    });
    let quota = Quota {
        resources: res(250, 10_000, 0),
        max_running_jobs: 10,
        max_priority: None,
    };
    h.ok(Command::SetTenantQuota {
        tenant: "capped".into(),
        quota: Some(quota),
    });
    let submit = |h: &mut Harness, tenant: &str, n: usize| -> Vec<JobId> {
        let jobs = (0..n).map(|i| sized(&format!("j{i}"), 100)).collect();
        match h
            .run(Command::SubmitPipeline {
                tenant: tenant.into(),
                idempotency_key: None,
                spec: pipeline("p", jobs),
                source: None,
                rerun_of: None,
            })
            .0
        {
            Response::Submitted { jobs, .. } => jobs.into_iter().map(|j| j.id).collect(),
            other => panic!("{other:?}"),
        }
    };
    let capped = submit(&mut h, "capped", 5);
    let a = submit(&mut h, "alpha", 3);
    let b = submit(&mut h, "beta", 3);
    let (plan, unplaced) = schedule_explained(
        &h.state,
        &SchedulerPolicy {
            strategy: Strategy::BinPack,
            max_placements: 4,
            ..SchedulerPolicy::default()
        },
        h.now_ms,
    );
    let order: Vec<JobId> = plan.placements.iter().map(|p| p.job).collect();
    // Fair share: each tenant's first job before anyone's second.
    assert_eq!(order, vec![a[0], b[0], capped[0], a[1]]);
    assert!(unplaced.is_empty());
    h.run(Command::ApplyPlan {
        placements: plan.placements,
    });
    let placed = h.schedule();
    let capped_running = placed.iter().filter(|p| capped.contains(&p.job)).count() + 1;
    assert_eq!(capped_running, 2, "quota of 250 millis admits two 100-milli jobs");
    assert_eq!(h.state.tenant("capped").unwrap().allocated.cpu_millis, 200);
}

#[test]
fn a_stale_plan_cannot_oversubscribe_or_double_assign() {
    let mut h = Harness::new();
    h.ok(Command::RegisterPool {
        spec: pool("one", ProviderKind::Docker, res(1000, 1024, 0), 10),
    });
    let (_, ids) = h.submit(pipeline("p", vec![sized("a", 600), sized("b", 600)]));
    let policy = SchedulerPolicy::default();
    // Two plans computed from the same view (two scheduler rounds racing, or a deposed leader).
    let stale = schedule(&h.state, &policy, h.now_ms);
    let fresh = schedule(&h.state, &policy, h.now_ms);
    assert_eq!(stale.placements.len(), 1, "only one 600-milli job fits in 1000");
    h.run(Command::ApplyPlan {
        placements: fresh.placements,
    });
    match h
        .run(Command::ApplyPlan {
            placements: stale.placements,
        })
        .0
    {
        Response::PlanApplied { accepted, rejected } => {
            assert!(accepted.is_empty());
            assert!(matches!(rejected[0].reason, Rejection::WrongState { .. }));
        }
        other => panic!("{other:?}"),
    }
    // A hand-made plan that ignores capacity: the second placement is refused.
    let forced = vec![Placement {
        job: ids[1],
        attempt: 1,
        pool: "one".into(),
        worker_host: None,
    }];
    match h.run(Command::ApplyPlan { placements: forced }).0 {
        Response::PlanApplied { accepted, rejected } => {
            assert!(accepted.is_empty());
            assert!(
                matches!(rejected[0].reason, Rejection::NoCapacity { .. }),
                "{:?}",
                rejected[0]
            );
        }
        other => panic!("{other:?}"),
    }
    // The same job twice in one plan, a wrong attempt, an unknown pool.
    let (_, more) = h.submit(pipeline("q", vec![sized("c", 100)]));
    let c = more[0];
    let plan = vec![
        Placement {
            job: c,
            attempt: 2,
            pool: "one".into(),
            worker_host: None,
        },
        Placement {
            job: c,
            attempt: 1,
            pool: "nope".into(),
            worker_host: None,
        },
        Placement {
            job: c,
            attempt: 1,
            pool: "one".into(),
            worker_host: None,
        },
    ];
    match h.run(Command::ApplyPlan { placements: plan }).0 {
        Response::PlanApplied { accepted, rejected } => {
            assert!(accepted.is_empty());
            assert!(matches!(rejected[0].reason, Rejection::StaleAttempt { .. }));
            assert!(matches!(rejected[1].reason, Rejection::DuplicatePlacement { .. }));
            assert!(matches!(rejected[2].reason, Rejection::DuplicatePlacement { .. }));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state.pool("one").unwrap().allocated.cpu_millis, 600);
}

#[test]
fn draining_pools_and_worker_limits_stop_placements() {
    let mut h = Harness::new();
    h.ok(Command::RegisterPool {
        spec: pool("one", ProviderKind::Docker, res(10_000, 10_240, 0), 1),
    });
    h.ok(Command::RegisterPool {
        spec: pool("two", ProviderKind::Docker, res(10_000, 10_240, 0), 5),
    });
    h.ok(Command::SetPoolDraining {
        pool: "two".into(),
        draining: true,
    });
    h.submit(pipeline("p", vec![sized("a", 100), sized("b", 100)]));
    let placed = h.schedule();
    assert_eq!(placed.len(), 1, "pool one takes one worker, pool two is draining");
    assert_eq!(placed[0].pool, "one");
}
