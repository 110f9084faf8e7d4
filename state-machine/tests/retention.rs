//! Retention: policies, what `due` chooses, and what `ExpireHistory` removes once re-checked.

mod common;
use common::*;
use flotilla_state_machine::retention::{RetentionPolicy, due};
use flotilla_state_machine::*;

fn policy(max_age_ms: Option<u64>, max_pipelines: Option<u64>, output_max_age_ms: Option<u64>) -> RetentionPolicy {
    RetentionPolicy {
        max_age_ms,
        max_pipelines,
        output_max_age_ms,
        output_max_bytes_per_job: None,
    }
}

/// Submits a one-job pipeline and runs it to success, with `output` bytes of output.
fn finished(h: &mut Harness, output: usize) -> (PipelineId, JobId) {
    let (p, ids) = h.submit(pipeline("done", vec![job("a", &[])]));
    h.schedule();
    let fencing = h.fencing(ids[0]);
    h.ok(Command::WorkerStarted { job: ids[0], fencing });
    if output > 0 {
        h.ok(Command::AppendLog {
            job: ids[0],
            fencing,
            offset: 0,
            data: vec![b'o'; output],
        });
    }
    h.ok(Command::WorkerExited {
        job: ids[0],
        fencing,
        exit_code: 0,
        jitter_permille: 0,
    });
    assert_eq!(h.pipeline(p).map(|p| p.state), Some(PipelineState::Succeeded));
    (p, ids[0])
}

/// Proposes what `due` chooses, as the leader does; returns the events.
fn expire_due(h: &mut Harness) -> Vec<Event> {
    let plan = due(&h.state, h.now_ms, retention::MAX_EXPIRE_PER_COMMAND);
    h.ok(Command::ExpireHistory {
        pipelines: plan.pipelines,
        outputs: plan.outputs,
    })
}

fn removed(events: &[Event]) -> Vec<PipelineId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PipelineRemoved { pipeline, .. } => Some(*pipeline),
            _ => None,
        })
        .collect()
}

#[test]
fn a_count_keeps_the_newest_and_removes_the_oldest_with_their_jobs_and_output() {
    let mut h = Harness::with_pool();
    let done: Vec<(PipelineId, JobId)> = (0..5).map(|_| finished(&mut h, 7)).collect();
    assert!(due(&h.state, h.now_ms, 100).is_empty(), "no policy, nothing due");
    h.ok(Command::SetRetention {
        tenant: None,
        policy: Some(policy(None, Some(2), None)),
    });
    let events = expire_due(&mut h);
    let oldest: Vec<PipelineId> = done[..3].iter().map(|(p, _)| *p).collect();
    assert_eq!(removed(&events), oldest);
    for (p, j) in &done[..3] {
        assert!(h.pipeline(*p).is_none() && h.job(*j).is_none());
        assert!(h.state.pipeline_removed(*p) && h.state.job_not_live(*j));
        assert!(h.output.log(*j).is_empty());
        let record = h.state.retention().removal_of(*p).expect("the removal is recorded");
        assert_eq!((record.tenant.as_str(), record.jobs), ("default", 1));
        assert_eq!(record.removed_at_ms, h.now_ms);
    }
    for (p, _) in &done[3..] {
        assert!(h.pipeline(*p).is_some() && !h.state.pipeline_removed(*p));
    }
    assert!(
        !h.state.pipeline_removed(PipelineId(99)),
        "an id never given out was not removed"
    );
    let totals = h.state.retention().totals();
    assert_eq!((totals.pipelines_removed, totals.jobs_removed), (3, 3));
    assert_eq!(totals.output_bytes_removed, 21);
    assert_eq!(h.state.archive().jobs(), 2, "the kept pipelines are archived");
    assert!(due(&h.state, h.now_ms, 100).is_empty(), "the count is met");
}

#[test]
fn an_age_is_rechecked_at_the_entry_so_an_early_or_forged_removal_changes_nothing() {
    let mut h = Harness::with_pool();
    let (p, _) = finished(&mut h, 0);
    let (q, _) = finished(&mut h, 0);
    h.ok(Command::SetRetention {
        tenant: Some("default".into()),
        policy: Some(policy(Some(10_000), None, None)),
    });
    h.now_ms += 9_999;
    assert!(due(&h.state, h.now_ms, 100).is_empty());
    let (r, e) = h.run(Command::ExpireHistory {
        pipelines: vec![p, q, PipelineId(77)],
        outputs: vec![p],
    });
    assert_eq!(r, Response::Done { changed: false });
    assert!(e.is_empty() && h.pipeline(p).is_some());
    h.now_ms += 1;
    assert_eq!(removed(&expire_due(&mut h)), vec![p, q]);
}

#[test]
fn only_the_oldest_goes_for_a_count_even_when_a_plan_names_a_newer_one() {
    let mut h = Harness::with_pool();
    let (p, _) = finished(&mut h, 0);
    let (q, _) = finished(&mut h, 0);
    h.ok(Command::SetRetention {
        tenant: None,
        policy: Some(policy(None, Some(1), None)),
    });
    let (r, _) = h.run(Command::ExpireHistory {
        pipelines: vec![q],
        outputs: vec![],
    });
    assert_eq!(r, Response::Done { changed: false }, "the newer one is kept");
    assert_eq!(removed(&expire_due(&mut h)), vec![p]);
}

#[test]
fn output_goes_first_and_the_record_stays_until_its_own_age() {
    let mut h = Harness::with_pool();
    let (p, j) = finished(&mut h, 64);
    let (quiet, _) = finished(&mut h, 0);
    h.ok(Command::SetRetention {
        tenant: None,
        policy: Some(policy(Some(60_000), None, Some(1_000))),
    });
    h.now_ms += 1_000;
    let plan = due(&h.state, h.now_ms, 100);
    assert_eq!(plan.outputs, vec![p], "a pipeline without output has none to remove");
    let events = expire_due(&mut h);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::OutputRemoved { pipeline, bytes: 64, .. } if *pipeline == p))
    );
    let kept = h.pipeline(p).expect("the pipeline stays");
    assert_eq!(kept.output_removed_at_ms, Some(h.now_ms));
    assert!(h.output.log(j).is_empty() && h.job(j).is_some_and(|j| j.log_bytes == 0));
    assert!(due(&h.state, h.now_ms, 100).is_empty(), "output is removed once");
    h.now_ms += 59_000;
    assert_eq!(removed(&expire_due(&mut h)), vec![p, quiet]);
    assert_eq!(h.state.retention().totals().outputs_removed, 1);
}

#[test]
fn a_cancelled_pipeline_whose_worker_still_runs_is_kept_until_the_worker_is_gone() {
    let mut h = Harness::with_pool();
    h.ok(Command::SetRetention {
        tenant: None,
        policy: Some(policy(None, Some(0), None)),
    });
    let (p, ids) = h.submit(pipeline("slow", vec![job("a", &[])]));
    h.schedule();
    let fencing = h.fencing(ids[0]);
    h.ok(Command::WorkerStarted { job: ids[0], fencing });
    h.ok(Command::CancelPipeline { pipeline: p });
    assert!(h.pipeline(p).is_some_and(|p| p.state == PipelineState::Cancelled));
    assert!(
        due(&h.state, h.now_ms, 100).is_empty(),
        "its worker still holds capacity"
    );
    let (r, _) = h.run(Command::ExpireHistory {
        pipelines: vec![p],
        outputs: vec![],
    });
    assert_eq!(r, Response::Done { changed: false });
    h.ok(Command::WorkerTerminated {
        job: ids[0],
        fencing,
        jitter_permille: 0,
    });
    assert_eq!(removed(&expire_due(&mut h)), vec![p]);
}

#[test]
fn a_tenant_policy_overrides_the_default_and_lifting_it_falls_back() {
    let mut h = Harness::with_pool();
    let (p, _) = finished(&mut h, 0);
    h.ok(Command::SetRetention {
        tenant: None,
        policy: Some(policy(None, Some(0), None)),
    });
    h.ok(Command::SetRetention {
        tenant: Some("default".into()),
        policy: Some(policy(None, Some(5), None)),
    });
    assert!(due(&h.state, h.now_ms, 100).is_empty());
    let events = h.ok(Command::SetRetention {
        tenant: Some("default".into()),
        policy: None,
    });
    assert_eq!(Harness::kinds(&events), vec!["RetentionUpdated"]);
    assert_eq!(due(&h.state, h.now_ms, 100).pipelines, vec![p]);
    // Lifting what is not set is no change.
    let (r, e) = h.run(Command::SetRetention {
        tenant: Some("other".into()),
        policy: None,
    });
    assert_eq!((r, e.len()), (Response::Done { changed: false }, 0));
}

#[test]
fn bad_policies_and_oversized_removals_are_refused_naming_the_field() {
    let mut h = Harness::with_pool();
    let field = |r: Rejection| match r {
        Rejection::Invalid(e) => e.to_string(),
        other => panic!("{other:?}"),
    };
    let empty = h.rejected(Command::SetRetention {
        tenant: None,
        policy: Some(policy(None, None, None)),
    });
    assert!(field(empty).starts_with("policy:"));
    let long = h.rejected(Command::SetRetention {
        tenant: None,
        policy: Some(policy(Some(u64::MAX), None, None)),
    });
    assert!(field(long).starts_with("max_age_ms:"));
    let bad_tenant = h.rejected(Command::SetRetention {
        tenant: Some("../x".into()),
        policy: Some(policy(None, Some(1), None)),
    });
    assert!(field(bad_tenant).starts_with("tenant:"));
    let many = h.rejected(Command::ExpireHistory {
        pipelines: (1..=1_001).map(PipelineId).collect(),
        outputs: vec![],
    });
    assert!(field(many).starts_with("pipelines:"));
}

#[test]
fn a_retried_submission_whose_pipeline_was_removed_runs_nothing_again() {
    let mut h = Harness::with_pool();
    let spec = pipeline("keyed", vec![job("a", &[])]);
    let submit = || Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: Some("k1".into()),
        spec: spec.clone(),
        source: None,
        rerun_of: None,
    };
    let Response::Submitted { pipeline: p, jobs, .. } = h.run(submit()).0 else {
        panic!("submitted")
    };
    h.schedule();
    let fencing = h.fencing(jobs[0].id);
    h.ok(Command::WorkerExited {
        job: jobs[0].id,
        fencing,
        exit_code: 0,
        jitter_permille: 0,
    });
    h.ok(Command::SetRetention {
        tenant: None,
        policy: Some(policy(None, Some(0), None)),
    });
    assert_eq!(removed(&expire_due(&mut h)), vec![p]);
    let (r, events) = h.run(submit());
    assert_eq!(
        r,
        Response::Submitted {
            pipeline: p,
            jobs: vec![],
            duplicate: true
        }
    );
    assert!(events.is_empty() && h.state.pending_jobs().next().is_none());
}

/// Under a steady load with a count policy the state stays the same size: what finishes
/// beyond the count leaves it, and replicas applying the same log agree byte for byte.
#[test]
fn under_steady_load_the_state_stays_bounded_and_replicas_agree() {
    let mut h = Harness::with_pool();
    let start = h.state.clone();
    let mut log: Log = Vec::new();
    let mut record = |h: &mut Harness, command: Command| {
        h.index += 1;
        let ctx = ApplyContext {
            log_index: h.index,
            term: TERM,
        };
        let proposal = Proposal::new(h.now_ms, command);
        let out = apply_checked(&mut h.state, &mut h.output, ctx, &proposal).expect("applies");
        let response = out.0.clone();
        log.push((ctx, proposal, out));
        response
    };
    record(
        &mut h,
        Command::SetRetention {
            tenant: None,
            policy: Some(policy(None, Some(20), Some(0))),
        },
    );
    let mut sizes = Vec::new();
    for round in 0..400u64 {
        let Response::Submitted { jobs, .. } = record(
            &mut h,
            Command::SubmitPipeline {
                tenant: format!("t{}", round % 3),
                idempotency_key: None,
                spec: pipeline("load", vec![job("a", &[])]),
                source: None,
                rerun_of: None,
            },
        ) else {
            panic!("submitted")
        };
        let plan = flotilla_state_machine::scheduler::schedule(
            &h.state,
            &flotilla_state_machine::scheduler::SchedulerPolicy::default(),
            h.now_ms,
        );
        record(
            &mut h,
            Command::ApplyPlan {
                placements: plan.placements,
            },
        );
        let job = jobs[0].id;
        let fencing = h.fencing(job);
        record(
            &mut h,
            Command::AppendLog {
                job,
                fencing,
                offset: 0,
                data: vec![b'x'; 512],
            },
        );
        record(
            &mut h,
            Command::WorkerExited {
                job,
                fencing,
                exit_code: 0,
                jitter_permille: 0,
            },
        );
        h.now_ms += 10;
        let plan = due(&h.state, h.now_ms, 50);
        record(
            &mut h,
            Command::ExpireHistory {
                pipelines: plan.pipelines,
                outputs: plan.outputs,
            },
        );
        if round % 100 == 99 {
            // Kept pipelines are archived: none live, their records on disk.
            assert_eq!((h.state.pipelines().count(), h.state.jobs().count()), (0, 0));
            sizes.push((
                h.output.pipelines().count(),
                h.output.jobs().count(),
                bytes(&h.state).len(),
            ));
        }
    }
    for (pipelines, jobs, _) in &sizes {
        assert_eq!((*pipelines, *jobs), (60, 60), "20 kept per tenant, 3 tenants");
    }
    // What still grows is the bounded record of recent removals, about one small record per
    // pipeline removed: 100 rounds add 100 removals and nothing else.
    let growth = sizes[3].2 as i64 - sizes[2].2 as i64;
    assert!(growth < 100 * 64, "the state grew by {growth} bytes in 100 rounds");
    assert_eq!(h.state.retention().totals().pipelines_removed, 340);
    replay_agrees(start, &log, &h.state, &h.output).expect("replicas agree");
}
