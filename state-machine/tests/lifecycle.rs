//! Every transition of the job lifecycle, asserted through the events `apply` emits.

mod common;
use common::*;
use flotilla_state_machine::*;

#[test]
fn job_runs_to_success_through_every_state() {
    let mut h = Harness::with_pool();
    let (p, jobs) = h.submit(pipeline("one", vec![job("a", &[])]));
    let a = jobs[0];
    assert_eq!(h.job_state(a), JobState::Pending);

    let placed = h.schedule();
    assert_eq!(placed.len(), 1);
    assert_eq!(h.job_state(a), JobState::Scheduled);
    assert_eq!(
        placed[0].fencing,
        FencingToken {
            term: TERM,
            log_index: h.index
        }
    );
    assert_eq!(h.state.pool("main").unwrap().allocated, res(100, 64, 0));

    let f = h.fencing(a);
    let e = h.ok(Command::WorkerCreated {
        job: a,
        fencing: f,
        worker_id: "c1".into(),
    });
    assert_eq!(Harness::kinds(&e), ["WorkerCreated"]);
    let e = h.ok(Command::WorkerStarted { job: a, fencing: f });
    assert_eq!(Harness::kinds(&e), ["JobStarted"]);
    assert_eq!(h.job_state(a), JobState::Running);
    let e = h.ok(Command::StepStarted {
        job: a,
        fencing: f,
        step: 0,
    });
    assert_eq!(Harness::kinds(&e), ["StepStarted"]);
    let e = h.ok(Command::StepFinished {
        job: a,
        fencing: f,
        step: 0,
        exit_code: 0,
    });
    assert_eq!(Harness::kinds(&e), ["StepCompleted"]);
    let e = h.ok(Command::WorkerExited {
        job: a,
        fencing: f,
        exit_code: 0,
        jitter_permille: 0,
    });
    assert_eq!(
        Harness::kinds(&e),
        [
            "WorkerTerminated",
            "CapacityUpdated",
            "JobCompleted",
            "PipelineCompleted"
        ]
    );
    assert_eq!(h.job_state(a), JobState::Succeeded);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Succeeded);
    assert_eq!(h.state.pool("main").unwrap().allocated, Resources::ZERO);
    assert_eq!(h.state.assignments().count(), 0);
}

#[test]
fn repeated_worker_reports_change_nothing() {
    let mut h = Harness::with_pool();
    let (_, jobs) = h.submit(pipeline("one", vec![job("a", &[])]));
    h.schedule();
    let f = h.fencing(jobs[0]);
    for _ in 0..2 {
        h.run(Command::WorkerCreated {
            job: jobs[0],
            fencing: f,
            worker_id: "c1".into(),
        });
        h.run(Command::WorkerStarted {
            job: jobs[0],
            fencing: f,
        });
    }
    let (r, e) = h.run(Command::WorkerStarted {
        job: jobs[0],
        fencing: f,
    });
    assert_eq!(r, Response::Done { changed: false });
    assert!(e.is_empty());
    let r = h.rejected(Command::WorkerCreated {
        job: jobs[0],
        fencing: f,
        worker_id: "other".into(),
    });
    assert!(matches!(r, Rejection::WorkerIdMismatch { .. }));
}

#[test]
fn failed_exit_retries_with_backoff_then_fails() {
    let mut h = Harness::with_pool();
    let mut spec = job("flaky", &[]);
    spec.retry = RetryPolicy {
        max_retries: 1,
        backoff_base_ms: 500,
        backoff_max_ms: 10_000,
    };
    let (p, jobs) = h.submit(pipeline("retry", vec![spec]));
    let a = jobs[0];
    h.schedule();
    let e = h.finish(a, 3);
    assert!(Harness::kinds(&e).contains(&"JobRetrying"));
    let j = h.job(a).unwrap();
    assert_eq!((j.state, j.attempt), (JobState::Pending, 2));
    assert_eq!(
        j.not_before_ms,
        h.now_ms + 500,
        "first retry waits the base backoff at full jitter"
    );
    assert_eq!(
        j.attempts[0].outcome.as_deref(),
        Some(&AttemptOutcome::ExitCode { code: 3 })
    );

    // Backoff not over: the scheduler skips it and a forced placement is refused.
    assert!(h.schedule().is_empty());
    let r = h.rejected_plan(a, 2);
    assert!(matches!(r, Rejection::NotReady { .. }), "{r:?}");

    h.now_ms += 500;
    assert_eq!(h.schedule().len(), 1);
    let e = h.finish(a, 4);
    assert!(Harness::kinds(&e).contains(&"JobFailed"));
    let j = h.job(a).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.failure.as_deref(), Some(&FailureReason::ExitCode { code: 4 }));
    assert_eq!(j.attempts.len(), 2);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Failed);
}

#[test]
fn cancel_of_pending_scheduled_and_running_jobs() {
    let mut h = Harness::with_pool();
    let (_, jobs) = h.submit(pipeline(
        "c",
        vec![job("pending", &["running"]), job("running", &[]), job("scheduled", &[])],
    ));
    let (pending, running, scheduled) = (jobs[0], jobs[1], jobs[2]);
    h.schedule();
    let f = h.fencing(running);
    h.ok(Command::WorkerStarted {
        job: running,
        fencing: f,
    });

    // Scheduled: cancelled at once, worker stop requested, capacity held until it is gone.
    let e = h.ok(Command::CancelJob { job: scheduled });
    assert_eq!(Harness::kinds(&e), ["WorkerStopRequested", "JobCancelled"]);
    assert_eq!(h.job_state(scheduled), JobState::Cancelled);
    assert_eq!(h.state.pool("main").unwrap().workers, 2);
    let fs = h.state.assignments_of(scheduled).next().unwrap().fencing;
    h.ok(Command::WorkerTerminated {
        job: scheduled,
        fencing: fs,
        jitter_permille: 0,
    });
    assert_eq!(h.state.pool("main").unwrap().workers, 1);

    // Running: cancels it and, through the DAG, the pending job that needs it.
    match h.run(Command::CancelJob { job: running }).0 {
        Response::Cancelled { jobs } => assert_eq!(jobs, vec![running, pending]),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.job_state(pending), JobState::Cancelled);
    // The worker's late exit releases the capacity and leaves the job cancelled.
    h.ok(Command::WorkerExited {
        job: running,
        fencing: f,
        exit_code: 137,
        jitter_permille: 0,
    });
    assert_eq!(h.job_state(running), JobState::Cancelled);
    assert_eq!(h.state.assignments().count(), 0);

    // Cancelling again is accepted, changes nothing, and answers as the first cancel did for
    // this job (a cancel retried after a lost answer must not say nothing was cancelled).
    // The pipeline settled and was archived: `apply` no longer holds the job, and the node
    // completes the answer from the archived record.
    let (mut r, events) = h.run(Command::CancelJob { job: running });
    assert_eq!(r, Response::Rejected(Rejection::UnknownJob(running)));
    let Ok(()) = complete_cancel(&mut r, running, &h.output);
    assert_eq!(r, Response::Cancelled { jobs: vec![running] });
    assert!(events.is_empty());
}

#[test]
fn cancel_of_finished_job_is_refused() {
    let mut h = Harness::with_pool();
    let (_, jobs) = h.submit(pipeline("c", vec![job("a", &[])]));
    h.schedule();
    h.finish(jobs[0], 0);
    let mut r = Response::Rejected(h.rejected(Command::CancelJob { job: jobs[0] }));
    let Ok(()) = complete_cancel(&mut r, jobs[0], &h.output);
    let Response::Rejected(r) = r else { panic!("{r:?}") };
    assert_eq!(
        r,
        Rejection::AlreadyFinished {
            job: jobs[0],
            state: JobState::Succeeded
        }
    );
}

#[test]
fn lost_worker_terminates_the_job_and_retries_only_once_it_is_gone() {
    let mut h = Harness::with_pool();
    let mut spec = job("a", &[]);
    spec.retry.max_retries = 1;
    spec.retry.backoff_base_ms = 0;
    let (_, jobs) = h.submit(pipeline("lost", vec![spec]));
    let a = jobs[0];
    h.schedule();
    let f = h.fencing(a);
    h.ok(Command::WorkerStarted { job: a, fencing: f });
    let e = h.ok(Command::WorkerLost {
        job: a,
        fencing: f,
        reason: "container vanished".into(),
    });
    assert_eq!(
        Harness::kinds(&e),
        ["WorkerFailed", "JobTerminated", "WorkerStopRequested"]
    );
    assert_eq!(h.job_state(a), JobState::Terminated);
    // Still holds capacity and cannot be placed while the old worker may live.
    assert!(h.schedule().is_empty());
    assert_eq!(h.state.pool("main").unwrap().workers, 1);

    let e = h.ok(Command::WorkerTerminated {
        job: a,
        fencing: f,
        jitter_permille: 0,
    });
    assert_eq!(
        Harness::kinds(&e),
        ["WorkerTerminated", "CapacityUpdated", "JobRetrying"]
    );
    assert_eq!((h.job_state(a), h.job(a).unwrap().attempt), (JobState::Pending, 2));
    assert_eq!(h.schedule().len(), 1);

    // Second loss with no retries left: FAILED once the worker is gone.
    let f2 = h.fencing(a);
    h.ok(Command::WorkerLost {
        job: a,
        fencing: f2,
        reason: "node lost".into(),
    });
    h.ok(Command::WorkerTerminated {
        job: a,
        fencing: f2,
        jitter_permille: 0,
    });
    assert_eq!(h.job_state(a), JobState::Failed);
    assert_eq!(
        h.job(a).unwrap().failure.as_deref(),
        Some(&FailureReason::WorkerLost {
            reason: "node lost".into()
        })
    );
}

#[test]
fn worker_gone_without_stop_request_counts_as_lost() {
    let mut h = Harness::with_pool();
    let (_, jobs) = h.submit(pipeline("gone", vec![job("a", &[])]));
    h.schedule();
    let f = h.fencing(jobs[0]);
    let e = h.ok(Command::WorkerTerminated {
        job: jobs[0],
        fencing: f,
        jitter_permille: 0,
    });
    assert!(Harness::kinds(&e).contains(&"JobTerminated"));
    assert_eq!(h.job_state(jobs[0]), JobState::Failed);
}

#[test]
fn stale_fencing_tokens_are_refused() {
    let mut h = Harness::with_pool();
    let mut spec = job("a", &[]);
    spec.retry = RetryPolicy {
        max_retries: 1,
        backoff_base_ms: 0,
        backoff_max_ms: 0,
    };
    let (_, jobs) = h.submit(pipeline("fence", vec![spec]));
    let a = jobs[0];
    h.schedule();
    let old = h.fencing(a);
    h.finish(a, 1);
    h.schedule();
    let new = h.fencing(a);
    assert_ne!(old, new);
    // Every report from the first attempt's worker is refused now.
    for cmd in [
        Command::WorkerStarted { job: a, fencing: old },
        Command::StepStarted {
            job: a,
            fencing: old,
            step: 0,
        },
        Command::WorkerExited {
            job: a,
            fencing: old,
            exit_code: 0,
            jitter_permille: 0,
        },
        Command::WorkerLost {
            job: a,
            fencing: old,
            reason: "x".into(),
        },
        Command::JobTimedOut { job: a, fencing: old },
        Command::AppendLog {
            job: a,
            fencing: old,
            offset: 0,
            data: b"late".to_vec(),
        },
    ] {
        let r = h.rejected(cmd);
        assert_eq!(r, Rejection::StaleFencing { job: a, got: old });
    }
    let forged = FencingToken {
        term: 9,
        log_index: 999,
    };
    assert!(matches!(
        h.rejected(Command::WorkerStarted {
            job: a,
            fencing: forged
        }),
        Rejection::StaleFencing { .. }
    ));
}

#[test]
fn timeout_fails_the_job_and_stops_its_worker() {
    let mut h = Harness::with_pool();
    let mut spec = job("slow", &[]);
    spec.timeout_ms = 5_000;
    spec.retry.max_retries = 3; // timeouts are not retried
    let (_, jobs) = h.submit(pipeline("t", vec![spec]));
    let a = jobs[0];
    h.schedule();
    let f = h.fencing(a);
    h.ok(Command::WorkerStarted { job: a, fencing: f });
    h.now_ms += 4_999;
    let r = h.rejected(Command::JobTimedOut { job: a, fencing: f });
    assert!(
        matches!(r, Rejection::TimeoutNotReached { elapsed_ms: 4_999, .. }),
        "{r:?}"
    );
    h.now_ms += 1;
    let e = h.ok(Command::JobTimedOut { job: a, fencing: f });
    assert_eq!(
        Harness::kinds(&e),
        ["WorkerStopRequested", "JobFailed", "PipelineCompleted"]
    );
    assert_eq!(h.job(a).unwrap().failure.as_deref(), Some(&FailureReason::Timeout));
    h.ok(Command::WorkerExited {
        job: a,
        fencing: f,
        exit_code: 143,
        jitter_permille: 0,
    });
    assert_eq!(h.job_state(a), JobState::Failed);
    assert_eq!(h.state.assignments().count(), 0);
}

#[test]
fn steps_report_in_order_and_out_of_range_steps_are_refused() {
    let mut h = Harness::with_pool();
    let mut spec = job("s", &[]);
    spec.steps = vec!["true".into(), "false".into()];
    let (_, jobs) = h.submit(pipeline("steps", vec![spec]));
    let a = jobs[0];
    h.schedule();
    let f = h.fencing(a);
    // A step report before the start report implies the start.
    let e = h.ok(Command::StepStarted {
        job: a,
        fencing: f,
        step: 0,
    });
    assert_eq!(Harness::kinds(&e), ["JobStarted", "StepStarted"]);
    h.ok(Command::StepFinished {
        job: a,
        fencing: f,
        step: 0,
        exit_code: 0,
    });
    let (r, _) = h.run(Command::StepFinished {
        job: a,
        fencing: f,
        step: 0,
        exit_code: 0,
    });
    assert_eq!(
        r,
        Response::Done { changed: false },
        "a repeated step report changes nothing"
    );
    let e = h.ok(Command::StepFinished {
        job: a,
        fencing: f,
        step: 1,
        exit_code: 2,
    });
    assert_eq!(Harness::kinds(&e), ["StepFailed"]);
    // The leader reports what it observes every tick: a repeated failure changes nothing.
    let (r, e) = h.run(Command::StepFinished {
        job: a,
        fencing: f,
        step: 1,
        exit_code: 2,
    });
    assert_eq!((r, e.len()), (Response::Done { changed: false }, 0));
    let r = h.rejected(Command::StepStarted {
        job: a,
        fencing: f,
        step: 2,
    });
    assert_eq!(
        r,
        Rejection::UnknownStep {
            job: a,
            step: 2,
            steps: 2
        }
    );
}

impl Harness {
    fn rejected_plan(&mut self, job: JobId, attempt: u32) -> Rejection {
        match self
            .run(Command::ApplyPlan {
                placements: vec![Placement {
                    job,
                    attempt,
                    pool: "main".into(),
                    worker_host: None,
                }],
            })
            .0
        {
            Response::PlanApplied { accepted, mut rejected } => {
                assert!(accepted.is_empty());
                rejected.remove(0).reason
            }
            other => panic!("{other:?}"),
        }
    }
}
