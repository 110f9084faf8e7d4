//! Re-runs: a settled pipeline submitted again, whole or its failed part, linked to the first
//! run; refused while it runs, across tenants, and when nothing failed.

mod common;

use common::*;
use flotilla_state_machine::rerun::{RerunError, RerunScope, rerun_spec};
use flotilla_state_machine::*;

/// build -> test -> deploy, and lint alone; `test` fails, so `deploy` is cancelled.
fn settled_with_a_failure(h: &mut Harness) -> PipelineId {
    let (p, jobs) = h.submit(pipeline(
        "ci",
        vec![
            job("build", &[]),
            job("test", &["build"]),
            job("deploy", &["test"]),
            job("lint", &[]),
        ],
    ));
    for (job, code) in [(jobs[0], 0), (jobs[3], 0), (jobs[1], 1)] {
        h.schedule();
        h.finish(job, code);
    }
    assert!(h.pipeline(p).unwrap().state.is_terminal());
    p
}

fn spec_of(h: &Harness, p: PipelineId, scope: RerunScope) -> Result<PipelineSpec, RerunError> {
    let pipeline = h.pipeline(p).unwrap();
    let jobs: Vec<&Job> = pipeline.jobs.iter().map(|id| h.job(*id).unwrap()).collect();
    rerun_spec(pipeline, &jobs, scope)
}

#[test]
fn failed_only_runs_what_failed_and_what_depends_on_it_without_needs_on_the_rest() {
    let mut h = Harness::with_pool();
    let p = settled_with_a_failure(&mut h);
    let spec = spec_of(&h, p, RerunScope::Failed).unwrap();
    let names: Vec<&str> = spec.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["test", "deploy"]);
    assert!(
        spec.jobs[0].needs.is_empty(),
        "build succeeded: test no longer waits for it"
    );
    assert_eq!(spec.jobs[1].needs, ["test"]);
    let all = spec_of(&h, p, RerunScope::All).unwrap();
    assert_eq!(all.jobs.len(), 4);
    assert_eq!(all.jobs[1].needs, ["build"]);
}

#[test]
fn a_rerun_is_linked_to_its_first_run_and_only_within_its_tenant() {
    let mut h = Harness::with_pool();
    let p = settled_with_a_failure(&mut h);
    let spec = spec_of(&h, p, RerunScope::Failed).unwrap();
    let rerun = |tenant: &str| Command::SubmitPipeline {
        tenant: tenant.into(),
        idempotency_key: None,
        spec: spec.clone(),
        source: None,
        rerun_of: Some(p),
    };
    assert_eq!(h.rejected(rerun("other")), Rejection::UnknownPipeline(p));
    let unknown = Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: None,
        spec: spec.clone(),
        source: None,
        rerun_of: Some(PipelineId(999)),
    };
    assert_eq!(h.rejected(unknown), Rejection::UnknownPipeline(PipelineId(999)));
    let (r, _) = h.run(rerun("default"));
    let Response::Submitted { pipeline: second, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(h.pipeline(second).unwrap().rerun_of, Some(p));
}

#[test]
fn a_running_pipeline_or_one_that_all_succeeded_is_not_rerun_in_part() {
    let mut h = Harness::with_pool();
    let (p, jobs) = h.submit(pipeline("ci", vec![job("build", &[])]));
    assert_eq!(spec_of(&h, p, RerunScope::All), Err(RerunError::StillRunning(p)));
    h.schedule();
    h.finish(jobs[0], 0);
    assert_eq!(spec_of(&h, p, RerunScope::Failed), Err(RerunError::NothingFailed(p)));
    assert_eq!(spec_of(&h, p, RerunScope::All).unwrap().jobs.len(), 1);
}
