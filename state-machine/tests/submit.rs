//! Submission: validation with typed reasons (nothing applied on refusal) and idempotency keys.

mod common;
use common::*;
use flotilla_state_machine::*;

fn submit_with_key(h: &mut Harness, key: &str, spec: PipelineSpec) -> Response {
    h.run(Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: Some(key.into()),
        spec,
        source: None,
        rerun_of: None,
    })
    .0
}

#[test]
fn retry_with_the_same_key_returns_the_first_pipeline() {
    let mut h = Harness::with_pool();
    let spec = pipeline("p", vec![job("a", &[])]);
    let first = submit_with_key(&mut h, "k1", spec.clone());
    let Response::Submitted {
        pipeline,
        jobs,
        duplicate: false,
    } = first
    else {
        panic!("{first:?}")
    };
    let again = submit_with_key(&mut h, "k1", spec.clone());
    assert_eq!(
        again,
        Response::Submitted {
            pipeline,
            jobs,
            duplicate: true
        }
    );
    assert_eq!(h.state.pipelines().count(), 1);

    let mut other = spec.clone();
    other.jobs[0].steps = vec!["rm -rf /tmp/x".into()];
    assert_eq!(
        submit_with_key(&mut h, "k1", other),
        Response::Rejected(Rejection::IdempotencyKeyReused {
            key: "k1".into(),
            pipeline
        })
    );

    // Keys are per tenant, and forgotten after the TTL.
    let r = h
        .run(Command::SubmitPipeline {
            tenant: "team-b".into(),
            idempotency_key: Some("k1".into()),
            spec: spec.clone(),
            source: None,
            rerun_of: None,
        })
        .0;
    assert!(matches!(r, Response::Submitted { duplicate: false, .. }));
    h.now_ms += Limits::DEFAULT.idempotency_ttl_ms;
    assert!(matches!(
        submit_with_key(&mut h, "k1", spec),
        Response::Submitted { duplicate: false, .. }
    ));
    assert_eq!(h.state.pipelines().count(), 3);
}

#[test]
fn a_key_reused_with_another_spec_is_refused_after_its_pipeline_was_archived() {
    let mut h = Harness::with_pool();
    let mut spec = pipeline("p", vec![job("a", &[])]);
    spec.jobs[0].matrix = [("os".to_string(), vec!["linux".to_string(), "bsd".to_string()])].into();
    let Response::Submitted { pipeline, jobs, .. } = submit_with_key(&mut h, "k1", spec.clone()) else {
        panic!("first submission refused")
    };
    h.schedule();
    for j in &jobs {
        h.finish(j.id, 0);
    }
    assert!(h.state.pipeline(pipeline).is_none(), "the settled pipeline is archived");
    assert!(h.output.pipeline(pipeline).is_some(), "its record is on disk");
    let expanded = |s: &PipelineSpec| s.expand_matrix(&Limits::DEFAULT).expect("expands").spec;

    // The same spec again: `apply` answers with the pipeline alone; the node finds the specs
    // equal and fills in the jobs.
    let mut again = submit_with_key(&mut h, "k1", spec.clone());
    let duplicate_without_jobs = Response::Submitted {
        pipeline,
        jobs: Vec::new(),
        duplicate: true,
    };
    assert_eq!(again, duplicate_without_jobs);
    let Ok(()) = refuse_reused_key(&mut again, &h.output, "k1", &expanded(&spec));
    let Ok(()) = complete_submission(&mut again, &h.output);
    assert_eq!(
        again,
        Response::Submitted {
            pipeline,
            jobs: jobs.clone(),
            duplicate: true
        }
    );

    // A store that cannot read its jobs: the error comes back and the answer is left alone
    // (taking the failure for "no jobs" refused the key as reused).
    struct Failing<'a>(&'a MemoryDisk);
    impl ArchivedRecords for Failing<'_> {
        type Error = &'static str;
        fn archived_pipeline(&self, id: PipelineId) -> Result<Option<Pipeline>, &'static str> {
            Ok(self.0.pipeline(id).cloned())
        }
        fn archived_job(&self, _: JobId) -> Result<Option<Job>, &'static str> {
            Err("the disk failed")
        }
    }
    let mut failed = duplicate_without_jobs.clone();
    assert_eq!(
        refuse_reused_key(&mut failed, &Failing(&h.output), "k1", &expanded(&spec)),
        Err("the disk failed")
    );
    assert_eq!(failed, duplicate_without_jobs, "a failed read changed the answer");
    let mut cancel = Response::Rejected(Rejection::UnknownJob(jobs[0].id));
    assert_eq!(
        complete_cancel(&mut cancel, jobs[0].id, &Failing(&h.output)),
        Err("the disk failed")
    );
    assert_eq!(cancel, Response::Rejected(Rejection::UnknownJob(jobs[0].id)));

    // Another spec under the key: refused as for a live pipeline, with nothing applied.
    for change in 0..3 {
        let mut other = spec.clone();
        match change {
            0 => other.jobs[0].steps = vec!["rm -rf /tmp/x".into()],
            1 => other.name = "q".into(),
            _ => other.jobs[0].matrix = [("os".to_string(), vec!["linux".to_string()])].into(),
        }
        let before = bytes(&h.state);
        let mut r = submit_with_key(&mut h, "k1", other.clone());
        assert_eq!(r, duplicate_without_jobs, "apply cannot tell them apart");
        assert!(before == bytes(&h.state), "a repeat changed the state");
        let Ok(()) = refuse_reused_key(&mut r, &h.output, "k1", &expanded(&other));
        let Ok(()) = complete_submission(&mut r, &h.output);
        assert_eq!(
            r,
            Response::Rejected(Rejection::IdempotencyKeyReused {
                key: "k1".into(),
                pipeline
            }),
            "change {change}"
        );
    }
}

#[test]
fn cycles_are_refused_with_the_cycle_named() {
    let mut h = Harness::with_pool();
    let e = refusal(
        &mut h,
        pipeline(
            "cyc",
            vec![job("a", &["c"]), job("b", &["a"]), job("c", &["b"]), job("d", &[])],
        ),
    );
    let SpecError::Cycle { cycle } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    assert_eq!(e.field(), "jobs");
    assert_eq!(h.state.jobs().count(), 0);
}

#[test]
fn structural_errors_name_the_field() {
    let mut h = Harness::with_pool();
    let cases: Vec<(PipelineSpec, &str)> = vec![
        (pipeline("p", vec![job("a", &["nope"])]), "jobs[a].needs"),
        (pipeline("p", vec![job("a", &["a"])]), "jobs[a].needs"),
        (pipeline("p", vec![job("a", &[]), job("a", &[])]), "jobs[1].name"),
        (pipeline("p", vec![]), "jobs"),
        (pipeline("", vec![job("a", &[])]), "name"),
        (pipeline(&"x".repeat(129), vec![job("a", &[])]), "name"),
        (pipeline("p", vec![job("bad name!", &[])]), "jobs[0].name"),
        (
            pipeline(
                "p",
                vec![JobSpec {
                    resources: res(0, 64, 0),
                    ..job("a", &[])
                }],
            ),
            "jobs[a].resources.cpu_millis",
        ),
        (
            pipeline(
                "p",
                vec![JobSpec {
                    resources: res(100, 0, 0),
                    ..job("a", &[])
                }],
            ),
            "jobs[a].resources.memory_mib",
        ),
        (
            pipeline(
                "p",
                vec![JobSpec {
                    steps: vec![],
                    ..job("a", &[])
                }],
            ),
            "jobs[a].steps",
        ),
        (
            pipeline(
                "p",
                vec![JobSpec {
                    steps: vec!["  ".into()],
                    ..job("a", &[])
                }],
            ),
            "jobs[a].steps[0]",
        ),
        (
            pipeline(
                "p",
                vec![JobSpec {
                    timeout_ms: 0,
                    ..job("a", &[])
                }],
            ),
            "jobs[a].timeout_ms",
        ),
        (
            pipeline(
                "p",
                vec![JobSpec {
                    priority: 5000,
                    ..job("a", &[])
                }],
            ),
            "jobs[a].priority",
        ),
        (
            pipeline(
                "p",
                vec![JobSpec {
                    retry: RetryPolicy {
                        max_retries: 99,
                        ..RetryPolicy::NONE
                    },
                    ..job("a", &[])
                }],
            ),
            "jobs[a].retry.max_retries",
        ),
        (
            pipeline(
                "p",
                vec![JobSpec {
                    env: [("1BAD".to_string(), "x".to_string())].into(),
                    ..job("a", &[])
                }],
            ),
            "jobs[a].env.1BAD",
        ),
    ];
    for (spec, field) in cases {
        let e = refusal(&mut h, spec);
        assert_eq!(e.field(), field, "{e}");
    }
    assert_eq!(h.state.pipelines().count(), 0, "nothing was applied");
}

#[test]
fn a_job_larger_than_every_pool_is_refused() {
    let mut h = Harness::with_pool();
    let big = JobSpec {
        resources: res(100_000, 64, 0),
        ..job("big", &[])
    };
    let e = refusal(&mut h, pipeline("p", vec![job("a", &[]), big]));
    assert_eq!(e.field(), "jobs[big]");
    assert!(e.to_string().contains("no pool can ever run this job"), "{e}");

    let gpu = JobSpec {
        resources: res(100, 64, 1),
        ..job("gpu", &[])
    };
    assert_eq!(refusal(&mut h, pipeline("p", vec![gpu])).field(), "jobs[gpu]");
    let image = JobSpec {
        image: Some("alpine".into()),
        ..job("img", &[])
    };
    assert!(
        refusal(&mut h, pipeline("p", vec![image]))
            .to_string()
            .contains("cannot run images")
    );
    let constrained = JobSpec {
        constraints: [("arch".to_string(), "arm64".to_string())].into(),
        ..job("arm", &[])
    };
    assert!(
        refusal(&mut h, pipeline("p", vec![constrained]))
            .to_string()
            .contains("lacks label arch=arm64")
    );

    let mut empty = Harness::new();
    assert!(
        refusal(&mut empty, pipeline("p", vec![job("a", &[])]))
            .to_string()
            .contains("no pools are registered")
    );
    assert_eq!(h.state.jobs().count(), 0);
}

#[test]
fn bad_pool_and_settings_commands_are_refused() {
    let mut h = Harness::with_pool();
    let zero = pool("z", ProviderKind::Docker, res(0, 10, 0), 1);
    assert!(matches!(
        h.rejected(Command::RegisterPool { spec: zero }),
        Rejection::Invalid(SpecError::Zero { .. })
    ));
    let clash = pool("main", ProviderKind::Docker, res(10, 10, 0), 1);
    assert_eq!(
        h.rejected(Command::RegisterPool { spec: clash }),
        Rejection::PoolExists("main".into())
    );
    let same = pool("main", ProviderKind::Process, res(8000, 16384, 0), 16);
    assert_eq!(
        h.run(Command::RegisterPool { spec: same }).0,
        Response::Done { changed: false }
    );
    assert!(matches!(
        h.rejected(Command::RemovePool { pool: "nope".into() }),
        Rejection::UnknownPool(_)
    ));
    let limits = Limits {
        max_jobs_per_pipeline: 0,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        h.rejected(Command::UpdateLimits { limits }),
        Rejection::Invalid(SpecError::Zero { .. })
    ));
    assert!(matches!(
        h.rejected(Command::SetTenantQuota {
            tenant: "no spaces".into(),
            quota: None
        }),
        Rejection::Invalid(_)
    ));
}

#[test]
fn pool_settings_must_be_known_to_the_provider_and_label_keys_may_be_prefixed() {
    let mut h = Harness::new();
    let mut k8s = pool("k8s", ProviderKind::Kubernetes, res(1000, 1024, 0), 4);
    k8s.settings.insert("node_selector".into(), "pool=ci".into());
    k8s.labels.insert("kubernetes.io/arch".into(), "arm64".into());
    h.ok(Command::RegisterPool { spec: k8s.clone() });
    assert_eq!(h.state.pool("k8s").unwrap().spec.settings["node_selector"], "pool=ci");

    let mut typo = pool("typo", ProviderKind::Kubernetes, res(1000, 1024, 0), 4);
    typo.settings.insert("node_selecter".into(), "pool=ci".into());
    let Rejection::Invalid(e) = h.rejected(Command::RegisterPool { spec: typo }) else {
        panic!("not refused as invalid")
    };
    assert_eq!(e.field(), "settings.node_selecter");
    let mut process = pool("host", ProviderKind::Process, res(1000, 1024, 0), 4);
    process.settings.insert("node_selector".into(), "pool=ci".into());
    let Rejection::Invalid(e) = h.rejected(Command::RegisterPool { spec: process }) else {
        panic!("not refused as invalid")
    };
    assert_eq!(e.field(), "settings.node_selector");
    for bad in ["a/b/c", "/arch", "kubernetes.io/", "sp ace/x"] {
        let mut p = pool("bad", ProviderKind::Process, res(1000, 1024, 0), 4);
        p.labels.insert(bad.into(), "v".into());
        assert!(
            matches!(
                h.rejected(Command::RegisterPool { spec: p }),
                Rejection::Invalid(SpecError::InvalidName { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn capacity_cannot_drop_below_allocation_and_busy_pools_cannot_be_removed() {
    let mut h = Harness::with_pool();
    h.submit(pipeline(
        "p",
        vec![JobSpec {
            resources: res(4000, 1024, 0),
            ..job("a", &[])
        }],
    ));
    h.schedule();
    let r = h.rejected(Command::UpdatePoolCapacity {
        pool: "main".into(),
        capacity: res(2000, 16384, 0),
        max_workers: 16,
    });
    assert!(matches!(r, Rejection::CapacityBelowAllocated { .. }));
    assert!(matches!(
        h.rejected(Command::RemovePool { pool: "main".into() }),
        Rejection::PoolBusy { workers: 1, .. }
    ));
    h.ok(Command::UpdatePoolCapacity {
        pool: "main".into(),
        capacity: res(4000, 2048, 0),
        max_workers: 1,
    });
}

#[test]
fn a_tenants_priority_ceiling_refuses_higher_jobs_and_must_be_within_the_limits() {
    let mut h = Harness::new();
    h.ok(Command::RegisterPool {
        spec: pool("main", ProviderKind::Process, res(8000, 16384, 0), 16),
    });
    let quota = |max_priority| Quota {
        resources: res(8000, 16384, 0),
        max_running_jobs: 10,
        max_priority,
    };
    h.ok(Command::SetTenantQuota {
        tenant: "default".into(),
        quota: Some(quota(Some(10))),
    });
    let mut at_ceiling = job("build", &[]);
    at_ceiling.priority = 10;
    let mut above = job("deploy", &["build"]);
    above.priority = 11;
    let e = refusal(&mut h, pipeline("p", vec![at_ceiling.clone(), above]));
    assert_eq!(e.field(), "jobs[deploy].priority");
    assert!(e.to_string().contains("ceiling of 10"), "{e}");
    // At the ceiling, and below it, submissions go through; another tenant is not bound.
    h.submit(pipeline("q", vec![at_ceiling.clone()]));
    let mut high = job("high", &[]);
    high.priority = 900;
    assert!(matches!(
        h.run(Command::SubmitPipeline {
            tenant: "other".into(),
            idempotency_key: None,
            spec: pipeline("r", vec![high]),
            source: None,
            rerun_of: None,
        })
        .0,
        Response::Submitted { .. }
    ));
    // No ceiling: up to the limits.
    h.ok(Command::SetTenantQuota {
        tenant: "default".into(),
        quota: Some(quota(None)),
    });
    let mut top = job("top", &[]);
    top.priority = 1000;
    h.submit(pipeline("s", vec![top]));
    // A ceiling outside the limits' range is refused, naming the field; nothing changes.
    let Rejection::Invalid(e) = h.rejected(Command::SetTenantQuota {
        tenant: "default".into(),
        quota: Some(quota(Some(i32::MAX))),
    }) else {
        panic!("not refused as invalid")
    };
    assert_eq!(e.field(), "max_priority");
    let kept = h
        .state
        .tenants()
        .find(|(name, _)| *name == "default")
        .map(|(_, t)| t.quota.clone());
    assert_eq!(kept, Some(Some(quota(None))));
}

#[test]
fn lifting_an_unknown_tenants_quota_adds_no_tenant() {
    let mut h = Harness::new();
    for i in 0..100 {
        assert_eq!(
            h.run(Command::SetTenantQuota {
                tenant: format!("nobody-{i}"),
                quota: None,
            })
            .0,
            Response::Done { changed: false }
        );
    }
    assert_eq!(h.state.tenants().count(), 0, "no tenant was added");
    h.ok(Command::SetTenantQuota {
        tenant: "web".into(),
        quota: Some(Quota {
            resources: res(1000, 1024, 0),
            max_running_jobs: 1,
            max_priority: None,
        }),
    });
    assert_eq!(h.state.tenants().count(), 1);
}
