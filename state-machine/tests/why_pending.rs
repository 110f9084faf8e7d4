//! "Why is this job pending": each reason the scheduler has, named; and the explanation agrees
//! with the scheduler itself (a job said to be ready is placed by the next plan, one said not
//! to be is not).

mod common;
use common::*;
use flotilla_state_machine::scheduler::{Blocker, SchedulerPolicy, schedule, why_pending};
use flotilla_state_machine::*;

fn sized(name: &str, cpu: u64, needs: &[&str]) -> JobSpec {
    JobSpec {
        resources: res(cpu, 256, 0),
        ..job(name, needs)
    }
}

/// Whether the scheduler, asked now, would place `job`.
fn scheduler_places(h: &Harness, job: JobId) -> bool {
    let policy = SchedulerPolicy {
        max_placements: 1000,
        ..SchedulerPolicy::default()
    };
    schedule(&h.state, &policy, h.now_ms)
        .placements
        .iter()
        .any(|p| p.job == job)
}

fn explain(h: &Harness, job: JobId) -> scheduler::PendingExplanation {
    why_pending(&h.state, job, h.now_ms).expect("the job is in the state")
}

#[test]
fn a_job_waiting_for_its_needs_names_them_and_is_ready_once_they_succeed() {
    let mut h = Harness::with_pool();
    let (_, ids) = h.submit(pipeline(
        "p",
        vec![sized("build", 100, &[]), sized("test", 100, &["build"])],
    ));
    let test = explain(&h, ids[1]);
    assert!(!test.ready);
    match &test.blockers[..] {
        [Blocker::WaitingForNeeds { jobs }] => {
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].name, "build");
            assert_eq!(jobs[0].state, JobState::Pending);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(test.summary, "waiting for needs: build");
    assert!(!scheduler_places(&h, ids[1]));

    assert!(explain(&h, ids[0]).ready);
    assert!(scheduler_places(&h, ids[0]));
    h.schedule();
    assert_eq!(
        explain(&h, ids[0]).blockers,
        vec![Blocker::NotPending {
            state: JobState::Scheduled
        }]
    );
    h.finish(ids[0], 0);
    let test = explain(&h, ids[1]);
    assert!(test.ready, "{test:?}");
    assert!(scheduler_places(&h, ids[1]));
}

#[test]
fn each_pool_says_why_it_cannot_take_the_job() {
    let mut h = Harness::new();
    let mut labelled = pool("labelled", ProviderKind::Docker, res(8000, 8192, 0), 10);
    labelled.labels.insert("arch".into(), "arm64".into());
    h.ok(Command::RegisterPool { spec: labelled });
    h.ok(Command::RegisterPool {
        spec: pool("small", ProviderKind::Docker, res(1000, 1024, 0), 10),
    });
    h.ok(Command::RegisterPool {
        spec: pool("busy", ProviderKind::Docker, res(4000, 4096, 0), 10),
    });
    h.ok(Command::RegisterPool {
        spec: pool("closed", ProviderKind::Docker, res(8000, 8192, 0), 10),
    });
    h.ok(Command::SetPoolDraining {
        pool: "closed".into(),
        draining: true,
    });
    // Fill "busy": the filler fits nowhere else (it needs the label-free 3000 millis).
    let filler = JobSpec {
        constraints: Default::default(),
        ..sized("filler", 3000, &[])
    };
    let (_, fill) = h.submit(pipeline("fill", vec![filler]));
    h.schedule();
    assert_eq!(h.job_state(fill[0]), JobState::Scheduled);

    let (_, ids) = h.submit(pipeline("p", vec![sized("big", 2000, &[])]));
    let e = explain(&h, ids[0]);
    assert!(e.ready && e.blockers.is_empty(), "{e:?}");
    let reason = |pool: &str| {
        e.pools
            .iter()
            .find(|v| v.pool == pool)
            .and_then(|v| v.reason.clone())
            .unwrap_or_default()
    };
    // The labelled pool fits: it asks nothing of an unlabelled job.
    assert!(e.pools.iter().any(|v| v.pool == "labelled" && v.fits_now));
    assert_eq!(e.pools[0].pool, "labelled", "pools that fit come first");
    assert!(reason("small").contains("offers"), "{}", reason("small"));
    assert!(reason("busy").contains("free"), "{}", reason("busy"));
    assert!(reason("closed").contains("draining"), "{}", reason("closed"));
    assert_eq!(scheduler_places(&h, ids[0]), e.pools.iter().any(|v| v.fits_now));

    // A job that asks for the label: only the labelled pool, and it names what others lack.
    let arm = JobSpec {
        constraints: [("arch".to_string(), "arm64".to_string())].into(),
        ..sized("arm", 2000, &[])
    };
    let (_, ids) = h.submit(pipeline("q", vec![arm]));
    h.ok(Command::SetPoolDraining {
        pool: "labelled".into(),
        draining: true,
    });
    let e = explain(&h, ids[0]);
    assert!(!e.ready);
    assert!(e.pools.iter().all(|v| !v.fits_now));
    assert!(
        e.pools.iter().any(|v| v
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("lacks label arch=arm64"))),
        "{e:?}"
    );
    assert!(e.summary.starts_with("no pool of 4 fits it now"), "{}", e.summary);
    assert!(!scheduler_places(&h, ids[0]));
}

#[test]
fn a_tenant_at_its_quota_is_named_with_its_numbers() {
    let mut h = Harness::with_pool();
    h.ok(Command::SetTenantQuota {
        tenant: "capped".into(),
        quota: Some(Quota {
            resources: res(150, 10_000, 0),
            max_running_jobs: 10,
            max_priority: None,
        }),
    });
    let ids = match h
        .run(Command::SubmitPipeline {
            tenant: "capped".into(),
            idempotency_key: None,
            spec: pipeline("p", vec![sized("a", 100, &[]), sized("b", 100, &[])]),
            source: None,
            rerun_of: None,
        })
        .0
    {
        Response::Submitted { jobs, .. } => jobs.into_iter().map(|j| j.id).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    h.schedule();
    assert_eq!(h.job_state(ids[0]), JobState::Scheduled);
    let e = explain(&h, ids[1]);
    match &e.blockers[..] {
        [Blocker::TenantQuota { tenant, detail }] => {
            assert_eq!(tenant, "capped");
            assert!(detail.contains("cpu=150m"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.summary, "tenant capped is at its quota");
    assert!(!scheduler_places(&h, ids[1]));
}

#[test]
fn a_failed_attempt_waits_out_its_backoff_and_a_fleet_without_pools_says_so() {
    // Submission refuses a job no pool could run, so a fleet without pools comes from removing
    // them after.
    let mut h = Harness::with_pool();
    let (_, ids) = h.submit(pipeline("p", vec![sized("a", 100, &[])]));
    h.ok(Command::RemovePool { pool: "main".into() });
    let e = explain(&h, ids[0]);
    assert_eq!(e.blockers, vec![Blocker::NoPools]);
    assert_eq!(e.summary, "the cluster has no pool");

    let mut h = Harness::with_pool();
    let retried = JobSpec {
        retry: RetryPolicy {
            max_retries: 2,
            backoff_base_ms: 60_000,
            ..RetryPolicy::NONE
        },
        ..sized("flaky", 100, &[])
    };
    let (_, ids) = h.submit(pipeline("p", vec![retried]));
    h.schedule();
    h.finish(ids[0], 1);
    assert_eq!(h.job_state(ids[0]), JobState::Pending, "retried");
    let e = explain(&h, ids[0]);
    let backoff = e
        .blockers
        .iter()
        .any(|b| matches!(b, Blocker::RetryBackoff { until_ms } if *until_ms > h.now_ms));
    assert!(backoff, "{e:?}");
    assert!(!scheduler_places(&h, ids[0]));
}

#[test]
fn an_unknown_job_has_no_explanation_and_a_large_fleet_is_cut_short() {
    let mut h = Harness::new();
    for i in 0..(scheduler::MAX_POOL_VERDICTS + 5) {
        h.ok(Command::RegisterPool {
            spec: pool(&format!("p{i:03}"), ProviderKind::Docker, res(1000, 1024, 0), 1),
        });
    }
    let (_, ids) = h.submit(pipeline("p", vec![sized("a", 100, &[])]));
    let e = explain(&h, ids[0]);
    assert_eq!(e.pools.len(), scheduler::MAX_POOL_VERDICTS);
    assert_eq!(e.pools_not_shown, 5);
    assert!(e.ready);
    assert!(why_pending(&h.state, JobId(999_999), h.now_ms).is_none());
}
