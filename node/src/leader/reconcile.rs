//! The leader's decisions about one assignment, as a pure function.
//!
//! `decide` maps what is known of an assignment (the assignment and its job as replicated, what
//! the provider said last, the time, the jitter drawn for this tick) to the actions that bring
//! its worker one step closer to what the state wants, the way openraft's engine returns
//! commands for its runtime to run. It does no I/O, reads no clock and draws no random number;
//! `executor.rs` carries the actions out in order and feeds each provider answer back in as
//! the next `Sight`, until an answer calls for nothing more.
//!
//! The rules, each tested as an exact action list in `reconcile/tests.rs`:
//! - A released assignment (cancelled, timed out, lost) has its worker terminated; once the
//!   provider says it no longer runs, it is removed (its name buried, so no deposed leader can
//!   bring it back), and only then is it reported terminated, which releases its capacity.
//! - An assignment without a worker gets one created, and the worker is observed at once.
//!   A create the provider refuses for good (no such image) is reported as a loss, so the job is
//!   retried or failed by its policy; a provider that cannot be reached leaves it for the next
//!   tick.
//! - An observed worker is reported as what the job does not know yet: started, each finished
//!   step past `steps_completed` (but not the failed step already recorded), the step now
//!   running, output past `stream_offset`. A repeated observation reports nothing new.
//! - Output is committed before the exit: the exit is reported only once every byte the
//!   provider counted is committed, and the worker is removed after that.
//! - A job that keeps artifacts has them collected once its output is committed and it exited
//!   in a way that keeps them (`ArtifactsSpec::kept_after`), unless this attempt's record is
//!   already committed; the record is proposed before the exit, so a job that needs it never
//!   starts without it. Files that cannot be kept (a path missing, a limit passed) fail a job
//!   whose steps succeeded; a job whose steps failed ends with its own exit code.
//! - A job that saves a cache has it packed after its steps succeeded and its artifacts are
//!   kept, unless this attempt's save is already recorded; whatever came of it (saved, or why
//!   not) is reported before the exit, and never changes the job's outcome. A worker created
//!   with a cache restored reports that restore (the cache counts as used).
//! - A worker that vanished or was lost is reported lost.
//! - The job's timeout counts whatever the provider says: it is enforced when the provider
//!   cannot be reached and when the worker is out of this leader's sight (no provider for the
//!   pool, or the pool's workers on another host).
//! - A worker out of sight is never reported lost, started or finished: nothing is known of it.

use flotilla_providers::Observation;
use flotilla_state_machine::{Assignment, CacheSave, Command, FencingToken, Job, JobState};

/// What the leader knows of one assignment at one point of a tick.
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    /// The assignment as replicated (read at the start of the tick).
    pub assignment: &'a Assignment,
    /// Its job as replicated.
    pub job: &'a Job,
    /// The leader's clock when the tick started.
    pub now_ms: u64,
    /// Retry jitter (0..=1000) drawn for this assignment this tick, carried by the exit and
    /// termination reports so `apply` stays deterministic.
    pub jitter_permille: u16,
    /// Whether the state holds an artifact record of this very attempt.
    pub artifact_kept: bool,
    /// Whether the state records what came of this attempt's cache save.
    pub cache_settled: bool,
}

/// What the provider said last about the assignment's worker, this tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sight {
    /// Nothing asked yet: the start of driving the assignment.
    Unasked,
    /// This leader cannot see the worker: it has no provider for the assignment's pool, or the
    /// pool's workers live on a host it is not on. It can ask nothing, and nothing it could
    /// learn here (no such worker) would be true of the worker, so it reports no loss.
    OutOfSight,
    /// The provider did not answer (unreachable, timed out, circuit open): nothing is known of
    /// the worker, so nothing is reported about it.
    Unreachable,
    /// `create` made (or found) the worker; the provider's id for it, and the cache blob
    /// restored into it, if one was.
    Created {
        worker_id: String,
        cache_restored: Option<String>,
    },
    /// `create` refused the worker for good (the reason is the provider's).
    Refused { reason: String },
    /// `terminate` answered whether the worker no longer runs.
    Terminated { gone: bool },
    /// `observe` answered.
    Observed(Observation),
    /// The output of `observation` was committed up to byte `through` of the attempt's stream.
    OutputCommitted { observation: Observation, through: u64 },
    /// The worker (exited with `exit_code`) had its artifacts packed into a blob a majority
    /// of the nodes hold.
    ArtifactsCollected {
        exit_code: i32,
        digest: String,
        size_bytes: u64,
        entries: u32,
    },
    /// The worker's artifacts cannot be kept, and why (the job's files, not a passing fault).
    ArtifactsRefused { exit_code: i32, reason: String },
    /// The artifact record was committed, or refused by `apply` (`refused`: why).
    ArtifactRecorded { exit_code: i32, refused: Option<String> },
    /// The worker (exited with `exit_code`) had its cache packed into a blob a majority of the
    /// nodes hold, or it could not be (`CacheSave::NotSaved`, and why).
    CacheCollected { exit_code: i32, outcome: CacheSave },
}

/// One step for the executor. Provider calls are answered with a new `Sight`; the others are
/// carried out and the next action follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create and start the worker: answered `Created`, `Refused` or `Unreachable`.
    Create,
    /// Observe the worker: answered `Observed` or `Unreachable`.
    Observe,
    /// Read the worker's output from byte `from` up to byte `to` and commit it as `AppendLog`
    /// chunks: answered `OutputCommitted` with how far the commit got. `complete`: the worker
    /// exited, so `to` is the end of its output (a job's secrets are masked holding back the
    /// tail of a running worker's output; a finished one's is committed to the end).
    CommitOutput { from: u64, to: u64, complete: bool },
    /// The job's log is full: let the provider release its output before `to` and propose
    /// `SkipLog` over `from..to` instead of sending bytes `apply` would drop. Answered
    /// `OutputCommitted` through `to`, or `Unreachable`.
    SkipOutput { from: u64, to: u64 },
    /// Stop the worker: answered `Terminated` or `Unreachable`.
    Terminate,
    /// Delete what is left of a stopped worker and bury its name.
    Remove,
    /// Propose a worker report to Raft (fenced by the assignment's token in `apply`).
    Report(Command),
    /// Pack the exited worker's artifacts into a blob and copy it to a majority of the nodes:
    /// answered `ArtifactsCollected` or `ArtifactsRefused`, or nothing while it is under way.
    CollectArtifacts { exit_code: i32 },
    /// Propose `ArtifactStored` for the worker that exited with `exit_code`: answered
    /// `ArtifactRecorded`, with `apply`'s refusal if any.
    RecordArtifact { command: Command, exit_code: i32 },
    /// Pack the exited worker's cache into a blob and copy it to a majority of the nodes:
    /// answered `CacheCollected` (saved or not), or nothing while it is under way.
    CollectCache { exit_code: i32 },
}

/// The actions that follow from `known` and the provider's last answer, in order. An empty
/// list ends the assignment's turn for this tick.
pub fn decide(known: &Known<'_>, sight: &Sight) -> Vec<Action> {
    let a = known.assignment;
    match sight {
        Sight::Unasked if a.releasing => vec![Action::Terminate],
        Sight::Unasked if a.worker_id.is_none() => vec![Action::Create],
        Sight::Unasked => vec![Action::Observe],
        // A released assignment's clock no longer matters; any other job's still runs.
        Sight::OutOfSight | Sight::Unreachable if a.releasing => Vec::new(),
        Sight::OutOfSight | Sight::Unreachable => timeout_if_due(known),
        Sight::Created {
            worker_id,
            cache_restored,
        } => {
            let mut actions = vec![report(known, |job, fencing| Command::WorkerCreated {
                job,
                fencing,
                worker_id: worker_id.clone(),
            })];
            if let Some(digest) = cache_restored {
                actions.push(report(known, |job, fencing| Command::CacheRestored {
                    job,
                    fencing,
                    digest: digest.clone(),
                }));
            }
            actions.push(Action::Observe);
            actions
        }
        Sight::Refused { reason } => vec![report(known, |job, fencing| Command::WorkerLost {
            job,
            fencing,
            reason: reason.clone(),
        })],
        Sight::Terminated { gone: true } => vec![
            Action::Remove,
            report(known, |job, fencing| Command::WorkerTerminated {
                job,
                fencing,
                jitter_permille: known.jitter_permille,
            }),
        ],
        Sight::Terminated { gone: false } => Vec::new(),
        Sight::Observed(o) => observed(known, o),
        Sight::OutputCommitted { observation, through } => after_output(known, observation, *through),
        Sight::ArtifactsCollected {
            exit_code,
            digest,
            size_bytes,
            entries,
        } => vec![Action::RecordArtifact {
            command: Command::ArtifactStored {
                job: a.job,
                fencing: a.fencing,
                digest: digest.clone(),
                size_bytes: *size_bytes,
                entries: *entries,
            },
            exit_code: *exit_code,
        }],
        Sight::ArtifactRecorded {
            exit_code,
            refused: None,
        } => save_cache_or_exit(known, *exit_code),
        Sight::CacheCollected { exit_code, outcome } => {
            let mut actions = vec![report(known, |job, fencing| Command::CacheSaved {
                job,
                fencing,
                outcome: outcome.clone(),
            })];
            actions.extend(exited(known, *exit_code));
            actions
        }
        Sight::ArtifactRecorded {
            exit_code,
            refused: Some(reason),
        }
        | Sight::ArtifactsRefused { exit_code, reason } => {
            if *exit_code == 0 {
                vec![
                    report(known, |job, fencing| Command::ArtifactsFailed {
                        job,
                        fencing,
                        reason: reason.clone(),
                    }),
                    Action::Remove,
                ]
            } else {
                exited(known, *exit_code)
            }
        }
    }
}

/// Reports what an observation shows that the job does not know yet, then commits its output
/// or, with all of it committed, goes on to the exit.
fn observed(known: &Known<'_>, o: &Observation) -> Vec<Action> {
    let j = known.job;
    if !o.exists || o.lost {
        let reason = o.lost_reason.as_deref().unwrap_or("worker process vanished");
        return vec![report(known, |job, fencing| Command::WorkerLost {
            job,
            fencing,
            reason: reason.to_string(),
        })];
    }
    let mut actions = Vec::new();
    if o.started && j.state == JobState::Scheduled {
        actions.push(report(known, |job, fencing| Command::WorkerStarted { job, fencing }));
    }
    // Past the steps known completed, and not the failure already recorded.
    let unknown = |s: u32| s >= j.steps_completed && Some(s) != j.failed_step;
    for &(step, exit_code) in o.steps_finished.iter().filter(|(s, _)| unknown(*s)) {
        actions.push(report(known, |job, fencing| Command::StepFinished {
            job,
            fencing,
            step,
            exit_code,
        }));
    }
    if let Some(step) = o
        .step_started
        .filter(|s| Some(*s) != j.current_step && *s >= j.steps_completed)
        && !o.steps_finished.iter().any(|(s, _)| *s == step)
    {
        actions.push(report(known, |job, fencing| Command::StepStarted {
            job,
            fencing,
            step,
        }));
    }
    if j.stream_offset < o.output_bytes {
        let (from, to) = (j.stream_offset, o.output_bytes);
        actions.push(if j.log_truncated {
            Action::SkipOutput { from, to }
        } else {
            Action::CommitOutput {
                from,
                to,
                complete: o.exit_code.is_some(),
            }
        });
    } else {
        actions.extend(after_output(known, o, j.stream_offset));
    }
    actions
}

/// With output committed up to `through`: the exit, if the worker exited and every byte it
/// produced is committed; nothing more while output is missing; the timeout otherwise.
fn after_output(known: &Known<'_>, o: &Observation, through: u64) -> Vec<Action> {
    match o.exit_code {
        Some(exit_code) if through >= o.output_bytes => {
            let keeps = known
                .job
                .spec
                .artifacts
                .as_ref()
                .is_some_and(|s| s.kept_after(exit_code));
            if keeps && !known.artifact_kept {
                vec![Action::CollectArtifacts { exit_code }]
            } else {
                save_cache_or_exit(known, exit_code)
            }
        }
        // Exited, but output is still missing: the next tick commits the rest first.
        Some(_) => Vec::new(),
        None => timeout_if_due(known),
    }
}

/// The cache's collection, if the job saves one, its steps succeeded and this attempt's save
/// is not recorded yet; the exit otherwise.
fn save_cache_or_exit(known: &Known<'_>, exit_code: i32) -> Vec<Action> {
    let saves = known.job.spec.cache.as_ref().is_some_and(|c| c.policy.pushes());
    if saves && exit_code == 0 && !known.cache_settled {
        vec![Action::CollectCache { exit_code }]
    } else {
        exited(known, exit_code)
    }
}

/// The exit report, then the worker's removal.
fn exited(known: &Known<'_>, exit_code: i32) -> Vec<Action> {
    vec![
        report(known, |job, fencing| Command::WorkerExited {
            job,
            fencing,
            exit_code,
            jitter_permille: known.jitter_permille,
        }),
        Action::Remove,
    ]
}

fn timeout_if_due(known: &Known<'_>) -> Vec<Action> {
    if timed_out(known.job, known.assignment.fencing, known.now_ms) {
        vec![report(known, |job, fencing| Command::JobTimedOut { job, fencing })]
    } else {
        Vec::new()
    }
}

/// Whether the attempt fenced by `fencing` has run (or waited to start) past the job's
/// timeout at `now_ms`. Only an active job of that very attempt can time out.
pub fn timed_out(j: &Job, fencing: FencingToken, now_ms: u64) -> bool {
    let Some(a) = j.attempts.last().filter(|a| a.fencing == fencing) else {
        return false;
    };
    let since = a.started_at_ms.unwrap_or(a.scheduled_at_ms);
    j.state.is_active() && now_ms.saturating_sub(since) >= j.spec.timeout_ms
}

fn report(known: &Known<'_>, command: impl FnOnce(flotilla_state_machine::JobId, FencingToken) -> Command) -> Action {
    Action::Report(command(known.assignment.job, known.assignment.fencing))
}

#[cfg(test)]
mod tests;
