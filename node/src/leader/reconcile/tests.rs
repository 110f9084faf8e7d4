//! Each rule of the reconciler as an exact action list, from a real state: a pool, a job placed
//! on it by the scheduler, then whatever reports the situation needs, applied by `State::apply`.

use super::{Action, Known, Sight, decide, timed_out};
use flotilla_providers::Observation;
use flotilla_state_machine::scheduler::{SchedulerPolicy, schedule};
use flotilla_state_machine::{
    ApplyContext, ArtifactsSpec, ArtifactsWhen, Assignment, CachePolicy, CacheSave, CacheSpec, Command, FencingToken,
    Job, JobId, JobSpec, JobState, Limits, PipelineSpec, PoolSpec, Proposal, ProviderKind, Resources, State,
};

const START_MS: u64 = 1_000_000;
const TIMEOUT_MS: u64 = 60_000;
const JITTER: u16 = 417;

/// A state with one job of two steps placed on a process pool.
struct Fixture {
    state: State,
    index: u64,
    job: JobId,
}

impl Fixture {
    fn placed() -> Fixture {
        Fixture::placed_with(None, None)
    }

    /// A job that keeps `out` as its artifacts, `when` it says.
    fn keeping(when: ArtifactsWhen) -> Fixture {
        Fixture::placed_with(
            Some(ArtifactsSpec {
                paths: vec!["out".into()],
                expire_in_ms: 60_000,
                when,
            }),
            None,
        )
    }

    /// A job that restores and saves the cache `deps`.
    fn caching() -> Fixture {
        Fixture::placed_with(
            None,
            Some(CacheSpec {
                key: "deps".into(),
                files: Vec::new(),
                paths: vec!["target".into()],
                policy: CachePolicy::PullPush,
            }),
        )
    }

    fn placed_with(artifacts: Option<ArtifactsSpec>, cache: Option<CacheSpec>) -> Fixture {
        let mut f = Fixture {
            state: State::new(Limits::default()),
            index: 0,
            job: JobId(0),
        };
        f.apply(Command::RegisterPool {
            spec: PoolSpec {
                name: "local".into(),
                provider: ProviderKind::Process,
                capacity: Resources::new(4000, 4096, 0),
                max_workers: 4,
                labels: Default::default(),
                settings: Default::default(),
            },
        });
        let mut spec = JobSpec::simple("build", "make", Resources::new(100, 64, 0));
        spec.steps.push("make test".into());
        spec.timeout_ms = TIMEOUT_MS;
        spec.artifacts = artifacts.map(Box::new);
        spec.cache = cache.map(Box::new);
        f.apply(Command::SubmitPipeline {
            tenant: "default".into(),
            idempotency_key: None,
            spec: PipelineSpec {
                name: "p".into(),
                jobs: vec![spec],
            },
            source: None,
            rerun_of: None,
        });
        let plan = schedule(&f.state, &SchedulerPolicy::default(), START_MS);
        assert_eq!(plan.placements.len(), 1, "{plan:?}");
        f.job = plan.placements[0].job;
        f.apply(Command::ApplyPlan {
            placements: plan.placements,
        });
        f
    }

    /// Applies `command` at the next index, as Raft would, and checks it was accepted.
    fn apply(&mut self, command: Command) {
        self.index += 1;
        let ctx = ApplyContext {
            log_index: self.index,
            term: 1,
        };
        let (response, _) = self.state.apply(ctx, &Proposal::new(START_MS, command.clone()));
        assert!(response.rejection().is_none(), "{command:?} was refused: {response:?}");
    }

    fn assignment(&self) -> Assignment {
        self.state.assignments_of(self.job).last().expect("assigned").clone()
    }

    fn job(&self) -> Job {
        self.state.job(self.job).expect("job").clone()
    }

    fn fencing(&self) -> FencingToken {
        self.assignment().fencing
    }

    /// The worker created and started, and the first step running.
    fn running(mut self) -> Fixture {
        let (job, fencing) = (self.job, self.fencing());
        self.apply(Command::WorkerCreated {
            job,
            fencing,
            worker_id: "w1".into(),
        });
        self.apply(Command::WorkerStarted { job, fencing });
        self.apply(Command::StepStarted { job, fencing, step: 0 });
        self
    }

    /// `bytes` of output committed after what is committed already.
    fn commit_output(&mut self, bytes: usize) {
        let (job, fencing, offset) = (self.job, self.fencing(), self.job().stream_offset);
        self.apply(Command::AppendLog {
            job,
            fencing,
            offset,
            data: vec![b'x'; bytes],
        });
    }

    /// Step `step` reported finished with `exit_code`.
    fn finish_step(&mut self, step: u32, exit_code: i32) {
        let (job, fencing) = (self.job, self.fencing());
        self.apply(Command::StepFinished {
            job,
            fencing,
            step,
            exit_code,
        });
    }

    /// The decisions for `sight` at `now_ms`.
    fn decide_at(&self, now_ms: u64, sight: Sight) -> Vec<Action> {
        let (assignment, job) = (self.assignment(), self.job());
        let artifact_kept = self
            .state
            .artifacts()
            .get(self.job)
            .is_some_and(|r| r.attempt == assignment.attempt);
        let known = Known {
            assignment: &assignment,
            job: &job,
            now_ms,
            jitter_permille: JITTER,
            artifact_kept,
            cache_settled: job.cache_settled(assignment.attempt),
        };
        decide(&known, &sight)
    }

    fn decide(&self, sight: Sight) -> Vec<Action> {
        self.decide_at(START_MS + 1_000, sight)
    }

    fn report(&self, command: impl FnOnce(JobId, FencingToken) -> Command) -> Action {
        Action::Report(command(self.job, self.fencing()))
    }
}

/// What the provider shows of a worker that started and runs step `step` with `output_bytes`
/// of output, the steps before it finished with exit code 0.
fn running_at(step: u32, output_bytes: u64) -> Observation {
    Observation {
        exists: true,
        started: true,
        step_started: Some(step),
        steps_finished: (0..step).map(|s| (s, 0)).collect(),
        output_bytes,
        exit_code: None,
        lost: false,
        lost_reason: None,
    }
}

fn exited(code: i32, output_bytes: u64) -> Observation {
    Observation {
        exists: true,
        started: true,
        step_started: Some(1),
        steps_finished: vec![(0, 0), (1, code)],
        output_bytes,
        exit_code: Some(code),
        lost: false,
        lost_reason: None,
    }
}

#[test]
fn an_assignment_without_a_worker_gets_one_created_reported_and_observed_at_once() {
    let f = Fixture::placed();
    assert_eq!(f.decide(Sight::Unasked), vec![Action::Create]);
    assert_eq!(
        f.decide(Sight::Created {
            worker_id: "w1".into(),
            cache_restored: None
        }),
        vec![
            f.report(|job, fencing| Command::WorkerCreated {
                job,
                fencing,
                worker_id: "w1".into()
            }),
            Action::Observe,
        ]
    );
}

#[test]
fn an_assignment_with_a_worker_is_observed() {
    let f = Fixture::placed().running();
    assert_eq!(f.decide(Sight::Unasked), vec![Action::Observe]);
}

#[test]
fn a_started_worker_is_reported_started_with_its_running_step() {
    let mut f = Fixture::placed();
    let (job, fencing) = (f.job, f.fencing());
    f.apply(Command::WorkerCreated {
        job,
        fencing,
        worker_id: "w1".into(),
    });
    assert_eq!(f.job().state, JobState::Scheduled);
    assert_eq!(
        f.decide(Sight::Observed(running_at(0, 0))),
        vec![
            f.report(|job, fencing| Command::WorkerStarted { job, fencing }),
            f.report(|job, fencing| Command::StepStarted { job, fencing, step: 0 }),
        ]
    );
}

#[test]
fn a_repeated_observation_reports_nothing_new() {
    let mut f = Fixture::placed().running();
    // Everything this observation shows is committed already.
    f.commit_output(6);
    assert_eq!(f.decide(Sight::Observed(running_at(0, 6))), vec![]);
    // The same after the first step finished and the second started.
    f.finish_step(0, 0);
    let (job, fencing) = (f.job, f.fencing());
    f.apply(Command::StepStarted { job, fencing, step: 1 });
    assert_eq!(f.decide(Sight::Observed(running_at(1, 6))), vec![]);
}

#[test]
fn finished_steps_are_reported_from_the_first_the_job_does_not_know() {
    let mut f = Fixture::placed().running();
    f.finish_step(0, 0);
    // Step 0 is known finished; step 1 finished since, and nothing runs after it.
    let mut o = running_at(1, 0);
    o.steps_finished.push((1, 0));
    assert_eq!(
        f.decide(Sight::Observed(o)),
        vec![f.report(|job, fencing| Command::StepFinished {
            job,
            fencing,
            step: 1,
            exit_code: 0
        })]
    );
}

#[test]
fn new_output_is_committed_from_the_replicated_offset_before_anything_else_follows() {
    let mut f = Fixture::placed().running();
    f.commit_output(100);
    assert_eq!(
        f.decide(Sight::Observed(running_at(0, 250))),
        vec![Action::CommitOutput {
            from: 100,
            to: 250,
            complete: false
        }]
    );
}

#[test]
fn output_past_a_full_log_is_skipped_not_sent_and_the_exit_follows_it() {
    let mut f = Fixture::placed().running();
    f.apply(Command::UpdateLimits {
        limits: Limits {
            max_log_bytes_per_job: 100,
            ..Limits::DEFAULT
        },
    });
    // Room left: the output is sent, as ever.
    f.commit_output(60);
    assert_eq!(
        f.decide(Sight::Observed(running_at(0, 5_000_000))),
        vec![Action::CommitOutput {
            from: 60,
            to: 5_000_000,
            complete: false
        }]
    );
    // The chunk that overflows truncates the log: from then on the rest is skipped.
    f.commit_output(60);
    assert!(f.job().log_truncated);
    assert_eq!(
        f.decide(Sight::Observed(running_at(0, 5_000_000))),
        vec![Action::SkipOutput {
            from: 120,
            to: 5_000_000
        }]
    );
    let skipped = f.decide(Sight::OutputCommitted {
        observation: exited(0, 5_000_000),
        through: 5_000_000,
    });
    assert!(
        skipped.contains(&f.report(|job, fencing| Command::WorkerExited {
            job,
            fencing,
            exit_code: 0,
            jitter_permille: JITTER
        })),
        "{skipped:?}"
    );
}

#[test]
fn the_exit_is_reported_only_after_all_output_is_committed_then_the_worker_is_removed() {
    let f = Fixture::placed().running();
    // Exited with 300 bytes of output, none committed: output first, no exit.
    assert_eq!(
        f.decide(Sight::Observed(exited(0, 300))),
        vec![
            f.report(|job, fencing| Command::StepFinished {
                job,
                fencing,
                step: 0,
                exit_code: 0
            }),
            f.report(|job, fencing| Command::StepFinished {
                job,
                fencing,
                step: 1,
                exit_code: 0
            }),
            Action::CommitOutput {
                from: 0,
                to: 300,
                complete: true
            },
        ]
    );
    // The commit got only part of the way: no exit this tick, and no timeout either.
    assert_eq!(
        f.decide(Sight::OutputCommitted {
            observation: exited(0, 300),
            through: 200
        }),
        vec![]
    );
    // All of it committed: the exit, then the removal.
    assert_eq!(
        f.decide(Sight::OutputCommitted {
            observation: exited(0, 300),
            through: 300
        }),
        vec![
            f.report(|job, fencing| Command::WorkerExited {
                job,
                fencing,
                exit_code: 0,
                jitter_permille: JITTER
            }),
            Action::Remove,
        ]
    );
}

#[test]
fn an_exit_whose_output_is_all_committed_is_reported_from_the_observation() {
    let mut f = Fixture::placed().running();
    f.commit_output(10);
    f.finish_step(0, 0);
    // The second step failed; the job records it, and it is not reported again.
    f.finish_step(1, 3);
    assert_eq!(
        f.decide(Sight::Observed(exited(3, 10))),
        vec![
            f.report(|job, fencing| Command::WorkerExited {
                job,
                fencing,
                exit_code: 3,
                jitter_permille: JITTER
            }),
            Action::Remove,
        ]
    );
}

#[test]
fn a_vanished_or_lost_worker_is_reported_lost() {
    let f = Fixture::placed().running();
    let lost = f.report(|job, fencing| Command::WorkerLost {
        job,
        fencing,
        reason: "worker process vanished".into(),
    });
    assert_eq!(f.decide(Sight::Observed(Observation::default())), vec![lost.clone()]);
    let mut o = running_at(0, 0);
    o.lost = true;
    assert_eq!(f.decide(Sight::Observed(o.clone())), vec![lost]);
    // The provider's reason, when it has one, is what the job records.
    o.lost_reason = Some("the source could not be fetched (exit 1): no node answered".into());
    let said = f.report(|job, fencing| Command::WorkerLost {
        job,
        fencing,
        reason: "the source could not be fetched (exit 1): no node answered".into(),
    });
    assert_eq!(f.decide(Sight::Observed(o)), vec![said]);
}

#[test]
fn a_permanent_create_failure_becomes_a_loss() {
    let f = Fixture::placed();
    assert_eq!(
        f.decide(Sight::Refused {
            reason: "rejected: no such image".into()
        }),
        vec![f.report(|job, fencing| Command::WorkerLost {
            job,
            fencing,
            reason: "rejected: no such image".into()
        })]
    );
}

#[test]
fn an_unreachable_provider_reports_nothing_until_the_timeout_which_it_still_enforces() {
    let f = Fixture::placed().running();
    // Started at START_MS; the timeout is TIMEOUT_MS.
    assert_eq!(f.decide_at(START_MS + TIMEOUT_MS - 1, Sight::Unreachable), vec![]);
    let timed_out = f.report(|job, fencing| Command::JobTimedOut { job, fencing });
    assert_eq!(
        f.decide_at(START_MS + TIMEOUT_MS, Sight::Unreachable),
        vec![timed_out.clone()]
    );
    // A create that could not reach the provider counts the same.
    let waiting = Fixture::placed();
    assert_eq!(
        waiting.decide_at(START_MS + TIMEOUT_MS, Sight::Unreachable),
        vec![waiting.report(|job, fencing| Command::JobTimedOut { job, fencing })]
    );
}

#[test]
fn a_leader_without_the_pools_provider_still_enforces_the_timeout() {
    let f = Fixture::placed();
    assert_eq!(f.decide_at(START_MS + 10, Sight::OutOfSight), vec![]);
    assert_eq!(
        f.decide_at(START_MS + TIMEOUT_MS + 5, Sight::OutOfSight),
        vec![f.report(|job, fencing| Command::JobTimedOut { job, fencing })]
    );
}

#[test]
fn a_running_worker_out_of_sight_is_never_reported_lost_and_still_times_out() {
    // A leader on another host than the pool's: the worker may be running there.
    let f = Fixture::placed().running();
    for at in [START_MS + 1, START_MS + TIMEOUT_MS / 2, START_MS + TIMEOUT_MS - 1] {
        assert_eq!(f.decide_at(at, Sight::OutOfSight), vec![], "at {at}");
    }
    assert_eq!(
        f.decide_at(START_MS + TIMEOUT_MS, Sight::OutOfSight),
        vec![f.report(|job, fencing| Command::JobTimedOut { job, fencing })]
    );
}

#[test]
fn a_running_worker_past_its_timeout_is_timed_out_from_its_observation() {
    let f = Fixture::placed().running();
    assert_eq!(
        f.decide_at(START_MS + TIMEOUT_MS, Sight::Observed(running_at(0, 0))),
        vec![f.report(|job, fencing| Command::JobTimedOut { job, fencing })]
    );
}

#[test]
fn a_cancelled_jobs_worker_is_terminated_then_removed_then_its_capacity_released() {
    let mut f = Fixture::placed().running();
    let job = f.job;
    f.apply(Command::CancelJob { job });
    assert!(f.assignment().releasing);
    let allocated = f.state.pool("local").expect("pool").allocated;
    assert_ne!(allocated, Resources::ZERO, "capacity is held until the worker is gone");
    assert_eq!(f.decide(Sight::Unasked), vec![Action::Terminate]);
    // Still stopping: wait for the next tick.
    assert_eq!(f.decide(Sight::Terminated { gone: false }), vec![]);
    let gone = f.decide(Sight::Terminated { gone: true });
    let terminated = f.report(|job, fencing| Command::WorkerTerminated {
        job,
        fencing,
        jitter_permille: JITTER,
    });
    assert_eq!(gone, vec![Action::Remove, terminated.clone()]);
    // The report is what releases the capacity.
    let Action::Report(command) = terminated else {
        unreachable!()
    };
    f.apply(command);
    assert_eq!(f.state.pool("local").expect("pool").allocated, Resources::ZERO);
    assert_eq!(f.state.assignments_of(job).count(), 0);
}

#[test]
fn a_released_assignment_whose_provider_cannot_be_reached_is_left_alone() {
    let mut f = Fixture::placed().running();
    let job = f.job;
    f.apply(Command::CancelJob { job });
    // No timeout for a job that no longer runs, whatever the time.
    assert_eq!(f.decide_at(START_MS + 10 * TIMEOUT_MS, Sight::Unreachable), vec![]);
    assert_eq!(f.decide_at(START_MS + 10 * TIMEOUT_MS, Sight::OutOfSight), vec![]);
}

#[test]
fn only_the_current_attempt_of_an_active_job_times_out() {
    let f = Fixture::placed().running();
    let job = f.job();
    assert!(timed_out(&job, f.fencing(), START_MS + TIMEOUT_MS));
    assert!(!timed_out(&job, f.fencing(), START_MS + TIMEOUT_MS - 1));
    let stale = FencingToken {
        term: 1,
        log_index: f.fencing().log_index + 100,
    };
    assert!(!timed_out(&job, stale, START_MS + TIMEOUT_MS));
    let mut finished = job.clone();
    finished.state = JobState::Succeeded;
    assert!(!timed_out(&finished, f.fencing(), START_MS + TIMEOUT_MS));
}

/// The executor asks the provider at most once per list, as the list's last action, and takes
/// the answer as the next sight: every list `decide` returns has that shape.
#[test]
fn every_decision_asks_the_provider_at_most_once_and_last() {
    let asks = |a: &Action| !matches!(a, Action::Report(_) | Action::Remove);
    let keeping = Fixture::keeping(ArtifactsWhen::OnSuccess).running();
    let placed = Fixture::placed();
    let running = Fixture::placed().running();
    let mut released = Fixture::placed().running();
    let job = released.job;
    released.apply(Command::CancelJob { job });
    let sights = [
        Sight::Unasked,
        Sight::OutOfSight,
        Sight::Unreachable,
        Sight::Created {
            worker_id: "w".into(),
            cache_restored: Some("c".repeat(64)),
        },
        Sight::Refused { reason: "r".into() },
        Sight::Terminated { gone: true },
        Sight::Terminated { gone: false },
        Sight::Observed(Observation::default()),
        Sight::Observed(running_at(0, 0)),
        Sight::Observed(running_at(1, 500)),
        Sight::Observed(exited(0, 0)),
        Sight::Observed(exited(1, 500)),
        Sight::OutputCommitted {
            observation: exited(0, 500),
            through: 500,
        },
        Sight::ArtifactsCollected {
            exit_code: 0,
            digest: "d".repeat(64),
            size_bytes: 1,
            entries: 1,
        },
        Sight::ArtifactsRefused {
            exit_code: 0,
            reason: "r".into(),
        },
        Sight::ArtifactRecorded {
            exit_code: 0,
            refused: None,
        },
        Sight::CacheCollected {
            exit_code: 0,
            outcome: CacheSave::NotSaved { reason: "r".into() },
        },
    ];
    let caching = Fixture::caching().running();
    for f in [&placed, &running, &released, &keeping, &caching] {
        for sight in &sights {
            for now_ms in [START_MS, START_MS + TIMEOUT_MS] {
                let actions = f.decide_at(now_ms, sight.clone());
                let asking: Vec<usize> = (0..actions.len()).filter(|i| asks(&actions[*i])).collect();
                assert!(
                    asking.is_empty() || asking == vec![actions.len() - 1],
                    "{sight:?} at {now_ms}: {actions:?}"
                );
            }
        }
    }
}

#[test]
fn artifacts_are_collected_after_the_output_and_recorded_before_the_exit() {
    let mut f = Fixture::keeping(ArtifactsWhen::OnSuccess).running();
    f.commit_output(500);
    f.finish_step(0, 0);
    f.finish_step(1, 0);
    assert_eq!(
        f.decide(Sight::Observed(exited(0, 500))),
        vec![Action::CollectArtifacts { exit_code: 0 }]
    );
    let digest = "d".repeat(64);
    let collected = Sight::ArtifactsCollected {
        exit_code: 0,
        digest: digest.clone(),
        size_bytes: 42,
        entries: 3,
    };
    assert_eq!(
        f.decide(collected),
        vec![Action::RecordArtifact {
            command: Command::ArtifactStored {
                job: f.job,
                fencing: f.fencing(),
                digest: digest.clone(),
                size_bytes: 42,
                entries: 3,
            },
            exit_code: 0,
        }]
    );
    let exit = vec![
        f.report(|job, fencing| Command::WorkerExited {
            job,
            fencing,
            exit_code: 0,
            jitter_permille: JITTER,
        }),
        Action::Remove,
    ];
    assert_eq!(
        f.decide(Sight::ArtifactRecorded {
            exit_code: 0,
            refused: None
        }),
        exit
    );
    // Once this attempt's record is committed (a new leader, say), the exit follows at once.
    let (job, fencing) = (f.job, f.fencing());
    f.apply(Command::ArtifactStored {
        job,
        fencing,
        digest,
        size_bytes: 42,
        entries: 3,
    });
    assert_eq!(f.decide(Sight::Observed(exited(0, 500))), exit);
}

#[test]
fn artifacts_that_cannot_be_kept_fail_a_successful_job_and_leave_a_failed_one_its_exit_code() {
    let mut f = Fixture::keeping(ArtifactsWhen::Always).running();
    f.commit_output(10);
    f.finish_step(0, 0);
    f.finish_step(1, 2);
    // Kept `always`: a failed job's files are collected too.
    assert_eq!(
        f.decide(Sight::Observed(exited(2, 10))),
        vec![Action::CollectArtifacts { exit_code: 2 }]
    );
    let failed = vec![
        f.report(|job, fencing| Command::ArtifactsFailed {
            job,
            fencing,
            reason: "artifacts.paths[0] \"out\" does not exist in the workspace".into(),
        }),
        Action::Remove,
    ];
    let refused = |exit_code| Sight::ArtifactsRefused {
        exit_code,
        reason: "artifacts.paths[0] \"out\" does not exist in the workspace".into(),
    };
    assert_eq!(f.decide(refused(0)), failed);
    assert_eq!(
        f.decide(refused(2)),
        vec![
            f.report(|job, fencing| Command::WorkerExited {
                job,
                fencing,
                exit_code: 2,
                jitter_permille: JITTER,
            }),
            Action::Remove,
        ]
    );
    // A record `apply` refused (a limit) is the same as files that cannot be kept.
    let recorded = Sight::ArtifactRecorded {
        exit_code: 0,
        refused: Some("artifacts.paths[0] \"out\" does not exist in the workspace".into()),
    };
    assert_eq!(f.decide(recorded), failed);
}

#[test]
fn a_job_kept_on_success_only_exits_without_collecting_when_it_failed() {
    let mut f = Fixture::keeping(ArtifactsWhen::OnSuccess).running();
    f.commit_output(10);
    f.finish_step(0, 0);
    f.finish_step(1, 1);
    assert_eq!(
        f.decide(Sight::Observed(exited(1, 10))),
        vec![
            f.report(|job, fencing| Command::WorkerExited {
                job,
                fencing,
                exit_code: 1,
                jitter_permille: JITTER,
            }),
            Action::Remove,
        ]
    );
}

#[test]
fn a_restored_cache_is_reported_with_the_creation() {
    let f = Fixture::caching();
    let digest = "c".repeat(64);
    assert_eq!(
        f.decide(Sight::Created {
            worker_id: "w1".into(),
            cache_restored: Some(digest.clone()),
        }),
        vec![
            f.report(|job, fencing| Command::WorkerCreated {
                job,
                fencing,
                worker_id: "w1".into()
            }),
            f.report(|job, fencing| Command::CacheRestored { job, fencing, digest }),
            Action::Observe,
        ]
    );
}

#[test]
fn a_cache_is_collected_after_success_and_its_outcome_reported_before_the_exit() {
    let mut f = Fixture::caching().running();
    f.commit_output(100);
    f.finish_step(0, 0);
    f.finish_step(1, 0);
    assert_eq!(
        f.decide(Sight::Observed(exited(0, 100))),
        vec![Action::CollectCache { exit_code: 0 }]
    );
    let exit = vec![
        f.report(|job, fencing| Command::WorkerExited {
            job,
            fencing,
            exit_code: 0,
            jitter_permille: JITTER,
        }),
        Action::Remove,
    ];
    for outcome in [
        CacheSave::Stored {
            digest: "e".repeat(64).into(),
            size_bytes: 7,
            entries: 2,
        },
        // Not saved (a path missing, a node down): reported, and the job exits as it did.
        CacheSave::NotSaved {
            reason: "cache.paths[0] \"target\" does not exist in the workspace".into(),
        },
    ] {
        let mut expected = vec![f.report(|job, fencing| Command::CacheSaved {
            job,
            fencing,
            outcome: outcome.clone(),
        })];
        expected.extend(exit.clone());
        assert_eq!(f.decide(Sight::CacheCollected { exit_code: 0, outcome }), expected);
    }
    // Once this attempt's save is recorded (a new leader, say), the exit follows at once.
    let (job, fencing) = (f.job, f.fencing());
    f.apply(Command::CacheSaved {
        job,
        fencing,
        outcome: CacheSave::NotSaved { reason: "r".into() },
    });
    assert_eq!(f.decide(Sight::Observed(exited(0, 100))), exit);
}

#[test]
fn a_failed_job_saves_no_cache() {
    let mut f = Fixture::caching().running();
    f.commit_output(10);
    f.finish_step(0, 0);
    f.finish_step(1, 1);
    assert_eq!(
        f.decide(Sight::Observed(exited(1, 10))),
        vec![
            f.report(|job, fencing| Command::WorkerExited {
                job,
                fencing,
                exit_code: 1,
                jitter_permille: JITTER,
            }),
            Action::Remove,
        ]
    );
}
