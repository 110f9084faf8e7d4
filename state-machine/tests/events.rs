//! Event identity and subjects, and the publisher's replicated progress mark.

mod common;

use common::*;
use flotilla_state_machine::*;

#[test]
fn the_published_mark_only_moves_forward_and_emits_nothing() {
    let mut h = Harness::with_pool();
    assert_eq!(h.state.events_published_through(), None);
    let (r, events) = h.run(Command::RecordEventsPublished {
        through: EventId::new(7, 1),
    });
    assert_eq!(r, Response::Done { changed: true });
    assert!(
        events.is_empty(),
        "recording progress must not create events to publish"
    );
    assert_eq!(h.state.events_published_through(), Some(EventId::new(7, 1)));

    // A deposed leader's late, lower mark changes nothing and is not an error.
    let before = bytes(&h.state);
    let (r, _) = h.run(Command::RecordEventsPublished {
        through: EventId::new(6, 9),
    });
    assert_eq!(r, Response::Done { changed: false });
    let (r, _) = h.run(Command::RecordEventsPublished {
        through: EventId::new(7, 1),
    });
    assert_eq!(r, Response::Done { changed: false });
    assert_eq!(before, bytes(&h.state));

    h.ok(Command::RecordEventsPublished {
        through: EventId::new(7, 2),
    });
    assert_eq!(h.state.events_published_through(), Some(EventId::new(7, 2)));
}

#[test]
fn every_event_of_a_run_names_its_subject() {
    let mut h = Harness::with_pool();
    let (response, mut events) = h.run(Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: None,
        spec: pipeline("p", vec![job("build", &[])]),
        source: None,
        rerun_of: None,
    });
    let Response::Submitted { pipeline, jobs, .. } = response else {
        panic!("submit: {response:?}")
    };
    let jobs: Vec<JobId> = jobs.into_iter().map(|j| j.id).collect();
    let plan = flotilla_state_machine::scheduler::schedule(&h.state, &Default::default(), h.now_ms);
    events.extend(h.ok(Command::ApplyPlan {
        placements: plan.placements,
    }));
    let fencing = h.fencing(jobs[0]);
    events.extend(h.ok(Command::WorkerCreated {
        job: jobs[0],
        fencing,
        worker_id: "w".into(),
    }));
    events.extend(h.ok(Command::WorkerStarted { job: jobs[0], fencing }));
    events.extend(h.ok(Command::WorkerExited {
        job: jobs[0],
        fencing,
        exit_code: 0,
        jitter_permille: 0,
    }));
    let subjects: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let s = e.subject();
            (s.category.to_string(), s.id)
        })
        .collect();
    let job_id = jobs[0].to_string();
    assert!(subjects.contains(&("job".into(), job_id.clone())), "{subjects:?}");
    assert!(
        subjects.contains(&("worker".into(), format!("{job_id}-a1"))),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&("pipeline".into(), pipeline.to_string())),
        "{subjects:?}"
    );
    assert!(subjects.contains(&("capacity".into(), "main".into())), "{subjects:?}");
    for (event, (category, id)) in events.iter().zip(&subjects) {
        assert!(!id.is_empty(), "{event:?} has no subject id");
        if category == "job" {
            assert_eq!(event.job(), Some(jobs[0]));
        }
    }
}

#[test]
fn the_list_of_kinds_matches_what_events_report() {
    // `kind()` is an exhaustive match, so a new variant cannot be forgotten there; this checks
    // the list filters are validated against holds exactly those names, once each.
    let mut kinds = Event::KINDS.to_vec();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), Event::KINDS.len());
    for kind in [
        "PipelineRequested",
        "JobCompleted",
        "CapacityUpdated",
        "LimitsUpdated",
        "LogAppended",
    ] {
        assert!(Event::KINDS.contains(&kind));
    }
    assert!(Event::KINDS.contains(&Event::LimitsUpdated.kind()));
}

#[test]
fn a_change_by_a_token_is_audited_once_after_its_own_events_and_a_refusal_not_at_all() {
    let mut h = Harness::with_pool();
    let token = Some(TokenId(7));
    let request = ClientRequest {
        client: ClientId(1),
        seq: 1,
    };
    let submit = Command::SubmitPipeline {
        tenant: "web".into(),
        idempotency_key: None,
        spec: pipeline("p", vec![job("a", &[])]),
        source: None,
        rerun_of: None,
    };
    let proposal = Proposal::new(h.now_ms, submit).by(token).from_client(request);
    let ctx = |index| ApplyContext {
        log_index: index,
        term: 1,
    };
    let (_, events) = h.state.apply(ctx(100), &proposal);
    assert!(
        matches!(events.first(), Some(Event::PipelineRequested { .. })),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&Event::Audited {
            token: TokenId(7),
            action: "submit_pipeline".into(),
            target: "web/p1".into()
        })
    );
    assert!(events.last().is_some_and(Event::is_audit));
    // The same request again (a retried forward) is answered from its session: no second record.
    let (_, again) = h.state.apply(ctx(101), &proposal);
    assert!(again.is_empty(), "{again:?}");
    // A refused change records nothing; the leader's own commands carry no token.
    let refused = Proposal::new(h.now_ms, Command::CancelJob { job: JobId(99) }).by(token);
    let (r, events) = h.state.apply(ctx(102), &refused);
    assert!(r.rejection().is_some() && events.is_empty());
    let (_, events) = h.run(Command::CancelJob { job: JobId(1) });
    assert!(!events.iter().any(|e| matches!(e, Event::Audited { .. })), "{events:?}");
}
