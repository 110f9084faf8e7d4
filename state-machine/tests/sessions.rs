//! Client sessions: a retried request gets its first answer and is not applied again; an
//! older one is refused; the table forgets by the state's clock and by least recent use.

mod common;
use common::*;
use flotilla_state_machine::*;

fn client(n: u64, seq: u64) -> ClientRequest {
    ClientRequest {
        client: ClientId(n),
        seq,
    }
}

fn submit(name: &str, jobs: Vec<JobSpec>) -> Command {
    Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: None,
        spec: pipeline(name, jobs),
        source: None,
        rerun_of: None,
    }
}

#[test]
fn a_retried_submission_without_a_key_is_answered_once_and_creates_one_pipeline() {
    let mut h = Harness::with_pool();
    let (first, events) = h.run_as(client(1, 1), submit("p", vec![job("a", &[]), job("b", &["a"])]));
    assert!(
        matches!(first, Response::Submitted { duplicate: false, .. }),
        "{first:?}"
    );
    assert!(!events.is_empty());
    let before = bytes(&h.state);
    let (again, events) = h.run_as(client(1, 1), submit("p", vec![job("a", &[]), job("b", &["a"])]));
    assert_eq!(again, first, "the retry gets the first answer, job list included");
    assert!(events.is_empty(), "nothing happened the second time");
    assert_eq!(bytes(&h.state), before, "the retry changed nothing, not even the clock");
    assert_eq!(h.state.pipelines().count(), 1);
    // Without a session the same command is a second submission: what the sessions prevent.
    h.submit(pipeline("p", vec![job("a", &[])]));
    assert_eq!(h.state.pipelines().count(), 2);
}

#[test]
fn a_retried_cancel_still_lists_the_dependants_it_cancelled() {
    let mut h = Harness::with_pool();
    let (_, jobs) = h.submit(pipeline("p", vec![job("a", &[]), job("b", &["a"])]));
    let cancel = Command::CancelJob { job: jobs[0] };
    let (first, _) = h.run_as(client(2, 1), cancel.clone());
    assert_eq!(first, Response::Cancelled { jobs: jobs.clone() });
    assert_eq!(h.run_as(client(2, 1), cancel.clone()).0, first);
    // A new request is applied again: the dependant is no longer news. (The pipeline is
    // archived by now; the node answers from the job's record.)
    let (mut again, _) = h.run_as(client(2, 2), cancel);
    let Ok(()) = complete_cancel(&mut again, jobs[0], &h.output);
    assert_eq!(again, Response::Cancelled { jobs: vec![jobs[0]] });
}

#[test]
fn a_retried_pool_registration_answers_created_as_the_first_time() {
    let mut h = Harness::new();
    let register = Command::RegisterPool {
        spec: pool("gpu", ProviderKind::Process, res(1000, 1000, 1), 2),
    };
    let (first, _) = h.run_as(client(3, 1), register.clone());
    assert_eq!(first, Response::Done { changed: true });
    assert_eq!(h.run_as(client(3, 1), register.clone()).0, first);
    assert_eq!(h.run_as(client(3, 2), register).0, Response::Done { changed: false });
}

#[test]
fn an_older_request_is_refused_and_changes_nothing() {
    let mut h = Harness::with_pool();
    h.run_as(client(4, 1), submit("one", vec![job("a", &[])]));
    h.run_as(client(4, 2), submit("two", vec![job("a", &[])]));
    let before = bytes(&h.state);
    let (late, events) = h.run_as(client(4, 1), submit("one", vec![job("a", &[])]));
    assert_eq!(
        late,
        Response::Rejected(Rejection::StaleRequest {
            client: ClientId(4),
            seq: 1,
            last_seq: 2
        })
    );
    assert!(events.is_empty());
    assert_eq!(bytes(&h.state), before);
    assert_eq!(h.state.pipelines().count(), 2);
}

#[test]
fn a_refused_request_is_not_recorded_and_its_retry_is_decided_afresh() {
    let mut h = Harness::new();
    // No pool can run the job yet: refused, and the session does not remember it.
    let refused = h.run_as(client(5, 1), submit("p", vec![job("a", &[])])).0;
    assert!(refused.rejection().is_some(), "{refused:?}");
    assert_eq!(h.state.sessions().last_seq(ClientId(5)), None);
    h.ok(Command::RegisterPool {
        spec: pool("main", ProviderKind::Process, res(8000, 16384, 0), 16),
    });
    let retried = h.run_as(client(5, 1), submit("p", vec![job("a", &[])])).0;
    assert!(matches!(retried, Response::Submitted { .. }), "{retried:?}");
    assert_eq!(h.state.sessions().last_seq(ClientId(5)), Some(1));
}

#[test]
fn sessions_expire_by_the_state_clock_and_past_the_bound_the_least_recent_goes_first() {
    let mut h = Harness::with_pool();
    h.ok(Command::UpdateLimits {
        limits: Limits {
            session_ttl_ms: 10_000,
            max_sessions: 2,
            ..Limits::DEFAULT
        },
    });
    let pools = |n| Command::SetPoolDraining {
        pool: "main".into(),
        draining: n % 2 == 1,
    };
    h.run_as(client(10, 1), pools(0));
    h.now_ms += 1_000;
    h.run_as(client(11, 1), pools(1));
    h.now_ms += 1_000;
    // A third client: the table holds two, so the least recently used (10) is forgotten.
    h.run_as(client(12, 1), pools(0));
    assert_eq!(h.state.sessions().len(), 2);
    assert_eq!(h.state.sessions().last_seq(ClientId(10)), None);
    assert_eq!(h.state.sessions().last_seq(ClientId(11)), Some(1));
    // Client 11 used again: now 12 is the least recent.
    h.now_ms += 1_000;
    h.run_as(client(11, 2), pools(1));
    h.now_ms += 1_000;
    h.run_as(client(13, 1), pools(0));
    assert_eq!(h.state.sessions().last_seq(ClientId(12)), None);
    assert_eq!(h.state.sessions().last_seq(ClientId(11)), Some(2));
    // Idle past the time to live by the entries' clock: forgotten at the next record.
    h.now_ms += 10_001;
    h.run_as(client(14, 1), pools(1));
    assert_eq!(h.state.sessions().len(), 1);
    assert_eq!(h.state.sessions().last_seq(ClientId(14)), Some(1));
}

#[test]
fn replicas_keep_the_same_sessions() {
    let mut h = Harness::with_pool();
    let mut log: Log = Vec::new();
    let start = h.state.clone();
    let proposals = [
        (client(20, 1), submit("p", vec![job("a", &[])])),
        (client(20, 1), submit("p", vec![job("a", &[])])),
        (client(21, 1), submit("q", vec![job("a", &[])])),
        (client(20, 2), submit("r", vec![job("a", &[])])),
        (client(21, 1), submit("q", vec![job("a", &[])])),
    ];
    for (i, (request, command)) in proposals.into_iter().enumerate() {
        let ctx = ApplyContext {
            log_index: 100 + i as u64,
            term: 2,
        };
        let proposal = Proposal::new(5_000, command).from_client(request);
        let out = apply_checked(&mut h.state, &mut h.output, ctx, &proposal).expect("applies");
        log.push((ctx, proposal, out));
    }
    assert_eq!(h.state.pipelines().count(), 3);
    replay_agrees(start, &log, &h.state, &h.output).expect("a replica answers and ends the same");
}
