//! The scheduler's pool index changes its speed, never its plan: on random fleets and queues
//! (labels, images, GPUs, draining pools, quotas, priorities, several tenants, partly filled
//! pools) the plan with per-class indexes equals the plan from scanning every pool, and `apply`
//! accepts every placement of it.

mod common;
use common::*;
use flotilla_state_machine::scheduler::{SchedulerPolicy, Strategy as Placing, schedule};
use flotilla_state_machine::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct PoolDraw {
    cpu: u64,
    gpus: u32,
    max_workers: u32,
    zone: Option<u8>,
    docker: bool,
    draining: bool,
}

#[derive(Clone, Debug)]
struct JobDraw {
    tenant: u8,
    priority: i32,
    cpu: u64,
    gpus: u32,
    zone: Option<u8>,
    image: bool,
}

fn pool_draw() -> impl Strategy<Value = PoolDraw> {
    (
        prop::sample::select(vec![1000u64, 2000, 4000, 8000]),
        prop::sample::select(vec![0u32, 0, 1, 2]),
        1u32..8,
        prop::option::of(0u8..2),
        any::<bool>(),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(cpu, gpus, max_workers, zone, docker, draining)| PoolDraw {
            cpu,
            gpus,
            max_workers,
            zone,
            docker,
            draining,
        })
}

fn job_draw() -> impl Strategy<Value = JobDraw> {
    (
        0u8..3,
        prop::sample::select(vec![0i32, 0, 5]),
        prop::sample::select(vec![250u64, 500, 1000, 3000]),
        prop::sample::select(vec![0u32, 0, 0, 1]),
        prop::option::of(0u8..2),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(tenant, priority, cpu, gpus, zone, image)| JobDraw {
            tenant,
            priority,
            cpu,
            gpus,
            zone,
            image,
        })
}

fn build(pools: &[PoolDraw], jobs: &[JobDraw], quota_cpu: Option<u64>, first_plan: usize) -> Harness {
    let mut h = Harness::new();
    for (i, p) in pools.iter().enumerate() {
        let provider = if p.docker {
            ProviderKind::Docker
        } else {
            ProviderKind::Process
        };
        let mut spec = pool(
            &format!("pool-{i:02}"),
            provider,
            res(p.cpu, 8192, p.gpus),
            p.max_workers,
        );
        if let Some(z) = p.zone {
            spec.labels.insert("zone".into(), format!("z{z}"));
        }
        h.ok(Command::RegisterPool { spec });
    }
    if let Some(cpu) = quota_cpu {
        h.ok(Command::SetTenantQuota {
            tenant: "t1".into(),
            quota: Some(Quota {
                resources: res(cpu, 1 << 30, 8),
                max_running_jobs: 6,
                max_priority: None,
            }),
        });
    }
    for (i, j) in jobs.iter().enumerate() {
        let mut spec = JobSpec::simple(&format!("j{i}"), "true", res(j.cpu, 256, j.gpus));
        spec.priority = j.priority;
        spec.image = j.image.then(|| "busybox".to_string());
        if let Some(z) = j.zone {
            spec.constraints.insert("zone".into(), format!("z{z}"));
        }
        // A job no pool could ever run is refused at submission; that is not under test here.
        h.run(Command::SubmitPipeline {
            tenant: format!("t{}", j.tenant),
            idempotency_key: None,
            spec: pipeline("p", vec![spec]),
            source: None,
            rerun_of: None,
        });
    }
    // Fill the pools part way, so plans start from uneven room.
    let plan = schedule(
        &h.state,
        &SchedulerPolicy {
            max_placements: first_plan,
            ..SchedulerPolicy::default()
        },
        h.now_ms,
    );
    h.ok(Command::ApplyPlan {
        placements: plan.placements,
    });
    for (i, p) in pools.iter().enumerate() {
        if p.draining {
            h.ok(Command::SetPoolDraining {
                pool: format!("pool-{i:02}"),
                draining: true,
            });
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn indexed_plans_equal_scanned_plans_and_apply_cleanly(
        pools in prop::collection::vec(pool_draw(), 1..24),
        jobs in prop::collection::vec(job_draw(), 1..80),
        quota_cpu in prop::option::of(500u64..6000),
        first_plan in 0usize..12,
        max_placements in 1usize..60,
        spread in any::<bool>(),
    ) {
        let mut h = build(&pools, &jobs, quota_cpu, first_plan);
        let strategy = if spread { Placing::Spread } else { Placing::BinPack };
        let policy = |classes| SchedulerPolicy { strategy, max_placements, max_indexed_classes: classes };
        let indexed = schedule(&h.state, &policy(32), h.now_ms);
        let scanned = schedule(&h.state, &policy(0), h.now_ms);
        let mixed = schedule(&h.state, &policy(1), h.now_ms);
        prop_assert_eq!(&indexed, &scanned);
        prop_assert_eq!(&indexed, &mixed);
        let planned = indexed.placements.len();
        match h.run(Command::ApplyPlan { placements: indexed.placements }).0 {
            Response::PlanApplied { accepted, rejected } => {
                prop_assert!(rejected.is_empty(), "rejected: {:?}", rejected);
                prop_assert_eq!(accepted.len(), planned);
            }
            other => prop_assert!(false, "plan not applied: {:?}", other),
        }
    }
}
