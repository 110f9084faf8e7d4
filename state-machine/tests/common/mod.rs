//! Test harness: a state plus a log position. Every command goes through `run`, which applies
//! it, then checks the invariants and that no job moved backwards.

#![allow(dead_code)]

use flotilla_state_machine::scheduler::{SchedulerPolicy, Strategy, schedule};
use flotilla_state_machine::*;

pub const TERM: u64 = 1;

pub struct Harness {
    pub state: State,
    /// What `apply` wrote to disk (job output, archived pipelines), as a node's store would
    /// hold it.
    pub output: MemoryDisk,
    pub index: u64,
    pub now_ms: u64,
}

pub fn res(cpu_millis: u64, memory_mib: u64, gpus: u32) -> Resources {
    Resources::new(cpu_millis, memory_mib, gpus)
}

pub fn pool(name: &str, provider: ProviderKind, capacity: Resources, max_workers: u32) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        provider,
        capacity,
        max_workers,
        labels: Default::default(),
        settings: Default::default(),
    }
}

pub fn job(name: &str, needs: &[&str]) -> JobSpec {
    let mut j = JobSpec::simple(name, "echo hi", res(100, 64, 0));
    j.needs = needs.iter().map(|s| s.to_string()).collect();
    j
}

pub fn pipeline(name: &str, jobs: Vec<JobSpec>) -> PipelineSpec {
    PipelineSpec {
        name: name.into(),
        jobs,
    }
}

/// Applies one entry and checks what must hold after every entry: the invariants, the
/// output store against the state, forward progress, and that a rejected command changed
/// nothing, wrote no output and emitted nothing.
pub fn apply_checked(
    state: &mut State,
    output: &mut MemoryDisk,
    ctx: ApplyContext,
    proposal: &Proposal,
) -> Result<(Response, Vec<Event>), String> {
    let before = state.clone();
    let output_before = output.clone();
    let out = state.apply_with_disk(ctx, proposal, output);
    state.check_invariants().map_err(|v| format!("invariant: {v}"))?;
    state.check_disk(output).map_err(|v| format!("disk: {v}"))?;
    state
        .check_progress_from(&before, output)
        .map_err(|v| format!("progress: {v}"))?;
    if out.0.rejection().is_some() {
        if bytes(&before) != bytes(state) {
            return Err("a rejected command changed the state".into());
        }
        if output_before != *output {
            return Err("a rejected command wrote output".into());
        }
        if !out.1.is_empty() {
            return Err("a rejected command emitted events".into());
        }
    }
    Ok(out)
}

/// A history as applied: each entry's position, proposal and answer.
/// One applied entry: its context, the proposal, and what apply answered and emitted.
pub type Applied = (ApplyContext, Proposal, (Response, Vec<Event>));
pub type Log = Vec<Applied>;

/// Applies `log` to `replica` (with an empty output store) and checks that it answers every
/// entry as the log recorded and ends byte-identical to `first`, the state that produced the
/// log, in both parts: the state and the output it wrote (`first_output`).
pub fn replay_agrees(mut replica: State, log: &Log, first: &State, first_output: &MemoryDisk) -> Result<(), String> {
    let mut output = MemoryDisk::default();
    for (ctx, proposal, out) in log {
        let answer = replica.apply_with_disk(*ctx, proposal, &mut output);
        if &answer != out {
            return Err(format!("replica answered {answer:?} where the log has {out:?}"));
        }
    }
    if bytes(&replica) != bytes(first) {
        return Err("the replica's state differs from the first one's".into());
    }
    if output != *first_output {
        return Err("the replica's output differs from the first one's".into());
    }
    Ok(())
}

pub fn bytes(state: &State) -> Vec<u8> {
    bincode::serde::encode_to_vec(state, bincode::config::standard()).expect("state serializes")
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            state: State::default(),
            output: MemoryDisk::default(),
            index: 0,
            now_ms: 1_000,
        }
    }

    /// A harness with one big process pool named `main`.
    pub fn with_pool() -> Self {
        let mut h = Harness::new();
        h.ok(Command::RegisterPool {
            spec: pool("main", ProviderKind::Process, res(8000, 16384, 0), 16),
        });
        h
    }

    pub fn run(&mut self, command: Command) -> (Response, Vec<Event>) {
        self.index += 1;
        let ctx = ApplyContext {
            log_index: self.index,
            term: TERM,
        };
        apply_checked(
            &mut self.state,
            &mut self.output,
            ctx,
            &Proposal::new(self.now_ms, command),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `command` as request `request` of a client session.
    pub fn run_as(&mut self, request: ClientRequest, command: Command) -> (Response, Vec<Event>) {
        self.index += 1;
        let ctx = ApplyContext {
            log_index: self.index,
            term: TERM,
        };
        let proposal = Proposal::new(self.now_ms, command).from_client(request);
        apply_checked(&mut self.state, &mut self.output, ctx, &proposal).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a command that must be accepted; returns its events.
    pub fn ok(&mut self, command: Command) -> Vec<Event> {
        let kind = command.kind();
        let (r, e) = self.run(command);
        assert!(r.rejection().is_none(), "{kind} rejected: {r:?}");
        e
    }

    /// Runs a command that must be rejected; returns the rejection.
    pub fn rejected(&mut self, command: Command) -> Rejection {
        let kind = command.kind();
        match self.run(command).0 {
            Response::Rejected(r) => r,
            other => panic!("{kind} accepted: {other:?}"),
        }
    }

    pub fn submit(&mut self, spec: PipelineSpec) -> (PipelineId, Vec<JobId>) {
        match self
            .run(Command::SubmitPipeline {
                tenant: "default".into(),
                idempotency_key: None,
                spec,
                source: None,
                rerun_of: None,
            })
            .0
        {
            Response::Submitted { pipeline, jobs, .. } => (pipeline, jobs.into_iter().map(|j| j.id).collect()),
            other => panic!("submit: {other:?}"),
        }
    }

    /// Schedules with the default policy and applies the plan; returns accepted placements.
    pub fn schedule(&mut self) -> Vec<AcceptedPlacement> {
        self.schedule_with(Strategy::BinPack)
    }

    pub fn schedule_with(&mut self, strategy: Strategy) -> Vec<AcceptedPlacement> {
        let plan = schedule(
            &self.state,
            &SchedulerPolicy {
                strategy,
                max_placements: 1000,
                ..SchedulerPolicy::default()
            },
            self.now_ms,
        );
        match self
            .run(Command::ApplyPlan {
                placements: plan.placements,
            })
            .0
        {
            Response::PlanApplied { accepted, rejected } => {
                assert!(rejected.is_empty(), "fresh plan had rejections: {rejected:?}");
                accepted
            }
            other => panic!("plan: {other:?}"),
        }
    }

    pub fn fencing(&self, job: JobId) -> FencingToken {
        self.state
            .job(job)
            .and_then(|j| j.fencing())
            .expect("job has a fencing token")
    }

    pub fn job_state(&self, job: JobId) -> JobState {
        self.job(job).expect("job exists").state
    }

    /// A job, live or archived (as the node reads it: the state, then its store).
    pub fn job(&self, job: JobId) -> Option<&Job> {
        self.state.job(job).or_else(|| self.output.job(job))
    }

    /// A pipeline, live or archived.
    pub fn pipeline(&self, pipeline: PipelineId) -> Option<&Pipeline> {
        self.state.pipeline(pipeline).or_else(|| self.output.pipeline(pipeline))
    }

    /// Starts the job's worker and runs it to exit with `code`.
    pub fn finish(&mut self, job: JobId, code: i32) -> Vec<Event> {
        let fencing = self.fencing(job);
        self.ok(Command::WorkerCreated {
            job,
            fencing,
            worker_id: format!("w-{job}-{}", fencing.log_index),
        });
        self.ok(Command::WorkerStarted { job, fencing });
        self.ok(Command::WorkerExited {
            job,
            fencing,
            exit_code: code,
            jitter_permille: 1000,
        })
    }

    pub fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::kind).collect()
    }
}

/// Submits `spec`, which must be refused for a spec error; returns the error.
pub fn refusal(h: &mut Harness, spec: PipelineSpec) -> SpecError {
    match h.rejected(Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: None,
        spec,
        source: None,
        rerun_of: None,
    }) {
        Rejection::Invalid(e) => e,
        other => panic!("expected a spec error, got {other:?}"),
    }
}
