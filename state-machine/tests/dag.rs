//! DAG order and failure propagation through `needs`.

mod common;
use common::*;
use flotilla_state_machine::*;

#[test]
fn fan_out_fan_in_runs_in_dependency_order() {
    let mut h = Harness::with_pool();
    let (p, ids) = h.submit(pipeline(
        "diamond",
        vec![
            job("build", &[]),
            job("test1", &["build"]),
            job("test2", &["build"]),
            job("deploy", &["test1", "test2"]),
        ],
    ));
    let [build, t1, t2, deploy] = ids[..] else { panic!() };
    let placed: Vec<JobId> = h.schedule().iter().map(|a| a.job).collect();
    assert_eq!(placed, vec![build], "only the root is ready");
    h.finish(build, 0);
    let mut placed: Vec<JobId> = h.schedule().iter().map(|a| a.job).collect();
    placed.sort();
    assert_eq!(placed, vec![t1, t2]);
    h.finish(t1, 0);
    assert!(h.schedule().is_empty(), "deploy waits for both tests");
    h.finish(t2, 0);
    assert_eq!(h.schedule().iter().map(|a| a.job).collect::<Vec<_>>(), vec![deploy]);
    h.finish(deploy, 0);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Succeeded);
}

#[test]
fn failure_fails_all_dependants_transitively() {
    let mut h = Harness::with_pool();
    let (p, ids) = h.submit(pipeline(
        "chain",
        vec![job("a", &[]), job("b", &["a"]), job("c", &["b"]), job("side", &[])],
    ));
    h.schedule();
    h.finish(ids[0], 1);
    for dependant in [ids[1], ids[2]] {
        let j = h.job(dependant).unwrap();
        assert_eq!(j.state, JobState::Failed);
        assert!(matches!(
            j.failure.as_deref(),
            Some(FailureReason::DependencyFailed { .. })
        ));
        assert!(j.attempts.is_empty(), "a dependant of a failed job never runs");
    }
    assert_eq!(
        h.pipeline(p).unwrap().state,
        PipelineState::Running,
        "side job still runs"
    );
    h.finish(ids[3], 0);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Failed);
}

#[test]
fn allow_failure_lets_dependants_run_and_the_pipeline_succeed() {
    let mut h = Harness::with_pool();
    let mut lint = job("lint", &[]);
    lint.allow_failure = true;
    let (p, ids) = h.submit(pipeline("lenient", vec![lint, job("package", &["lint"])]));
    h.schedule();
    h.finish(ids[0], 1);
    assert_eq!(h.job_state(ids[0]), JobState::Failed);
    assert_eq!(h.schedule().len(), 1);
    h.finish(ids[1], 0);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Succeeded);
}

#[test]
fn cancelling_a_pipeline_cancels_every_unfinished_job() {
    let mut h = Harness::with_pool();
    let (p, ids) = h.submit(pipeline("stop", vec![job("a", &[]), job("b", &["a"]), job("c", &[])]));
    h.schedule();
    h.finish(ids[2], 0);
    match h.run(Command::CancelPipeline { pipeline: p }).0 {
        Response::Cancelled { jobs } => assert_eq!(jobs, vec![ids[0], ids[1]]),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.job_state(ids[2]), JobState::Succeeded);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Cancelled);
    assert_eq!(
        h.run(Command::CancelPipeline { pipeline: p }).0,
        Response::Cancelled { jobs: vec![] }
    );
    assert_eq!(
        h.rejected(Command::CancelPipeline {
            pipeline: PipelineId(99)
        }),
        Rejection::UnknownPipeline(PipelineId(99))
    );
}

#[test]
fn a_forced_placement_of_a_blocked_job_is_refused() {
    let mut h = Harness::with_pool();
    let (_, ids) = h.submit(pipeline("order", vec![job("a", &[]), job("b", &["a"])]));
    match h
        .run(Command::ApplyPlan {
            placements: vec![Placement {
                job: ids[1],
                attempt: 1,
                pool: "main".into(),
                worker_host: None,
            }],
        })
        .0
    {
        Response::PlanApplied { accepted, rejected } => {
            assert!(accepted.is_empty());
            assert!(matches!(rejected[0].reason, Rejection::NotReady { .. }));
        }
        other => panic!("{other:?}"),
    }
}
