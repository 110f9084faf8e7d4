//! Manual gates and `if` conditions through `apply`: a manual job waits for an approval of
//! the right role once its needs let it run; a false condition skips its job, with the
//! reason, and every job that needs it.

mod common;
use common::*;
use flotilla_state_machine::*;

fn manual(name: &str, needs: &[&str]) -> JobSpec {
    let mut j = job(name, needs);
    j.manual = true;
    j
}

fn when(name: &str, needs: &[&str], condition: &str) -> JobSpec {
    let mut j = job(name, needs);
    j.condition = Some(condition.into());
    j
}

fn approve(job: JobId, role: Role) -> Command {
    Command::ApproveJob {
        job,
        by: "ada".into(),
        role,
    }
}

#[test]
fn a_manual_job_runs_only_once_approved_after_its_needs() {
    let mut h = Harness::with_pool();
    let (p, ids) = h.submit(pipeline(
        "release",
        vec![job("build", &[]), manual("deploy", &["build"])],
    ));
    let [build, deploy] = ids[..] else { panic!() };
    assert_eq!(h.job_state(deploy), JobState::AwaitingApproval);
    assert!(matches!(
        h.rejected(approve(deploy, Role::Submitter)),
        Rejection::NotReady { .. }
    ));
    assert_eq!(h.schedule().iter().map(|a| a.job).collect::<Vec<_>>(), vec![build]);
    h.finish(build, 0);
    assert!(h.schedule().is_empty(), "deploy waits for its approval");
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Running);
    assert!(matches!(
        h.rejected(approve(deploy, Role::Viewer)),
        Rejection::ApprovalRole {
            needed: Role::Submitter,
            ..
        }
    ));
    let events = h.ok(approve(deploy, Role::Submitter));
    assert!(events.contains(&Event::JobApproved {
        job: deploy,
        by: "ada".into()
    }));
    assert_eq!(h.job_state(deploy), JobState::Pending);
    // A retried approval is answered as the first, and changes nothing.
    let again = Command::ApproveJob {
        job: deploy,
        by: "bob".into(),
        role: Role::Admin,
    };
    assert_eq!(
        h.run(again).0,
        Response::Approved {
            job: deploy,
            by: "ada".into()
        }
    );
    assert_eq!(h.schedule().iter().map(|a| a.job).collect::<Vec<_>>(), vec![deploy]);
    h.finish(deploy, 0);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Succeeded);
    let mut r = h.run(approve(deploy, Role::Viewer)).0;
    let Ok(()) = complete_approval(&mut r, deploy, &h.output);
    assert_eq!(
        r,
        Response::Approved {
            job: deploy,
            by: "ada".into()
        },
        "a retry after it settled"
    );
    assert!(matches!(
        h.job(deploy).unwrap().gate.as_deref(),
        Some(Gate::Approved { by, .. }) if by == "ada"
    ));
}

#[test]
fn an_approval_role_asks_for_more_than_a_submitter() {
    let mut h = Harness::with_pool();
    let mut prod = manual("prod", &[]);
    prod.approval_role = Some(Role::Operator);
    let (_, ids) = h.submit(pipeline("release", vec![prod]));
    assert!(matches!(
        h.rejected(approve(ids[0], Role::Submitter)),
        Rejection::ApprovalRole {
            needed: Role::Operator,
            ..
        }
    ));
    h.ok(approve(ids[0], Role::Operator));
    assert_eq!(h.job_state(ids[0]), JobState::Pending);
    // Only a manual job takes a role, and only a manual job is approved.
    let mut plain = job("plain", &[]);
    plain.approval_role = Some(Role::Admin);
    assert_eq!(
        refusal(&mut h, pipeline("x", vec![plain])).field(),
        "jobs[plain].approval_role"
    );
    let (_, ids) = h.submit(pipeline("y", vec![job("auto", &[])]));
    assert!(matches!(
        h.rejected(approve(ids[0], Role::Admin)),
        Rejection::WrongState { .. }
    ));
}

#[test]
fn a_waiting_job_fails_with_its_need_and_is_cancelled_with_its_pipeline() {
    let mut h = Harness::with_pool();
    let (p, ids) = h.submit(pipeline(
        "release",
        vec![job("build", &[]), manual("deploy", &["build"])],
    ));
    h.schedule();
    h.finish(ids[0], 3);
    let deploy = h.job(ids[1]).unwrap();
    assert_eq!(deploy.state, JobState::Failed);
    assert!(deploy.attempts.is_empty());
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Failed);
    // Its pipeline settled and went to the archive: the node completes the answer from there.
    let mut r = h.run(approve(ids[1], Role::Admin)).0;
    assert_eq!(r, Response::Rejected(Rejection::UnknownJob(ids[1])));
    let Ok(()) = complete_approval(&mut r, ids[1], &h.output);
    assert!(matches!(
        r,
        Response::Rejected(Rejection::AlreadyFinished {
            state: JobState::Failed,
            ..
        })
    ));

    let (p, ids) = h.submit(pipeline("later", vec![manual("deploy", &[])]));
    match h.run(Command::CancelPipeline { pipeline: p }).0 {
        Response::Cancelled { jobs } => assert_eq!(jobs, ids),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Cancelled);
}

#[test]
fn a_false_condition_skips_its_job_and_its_dependants_with_the_reason() {
    let mut h = Harness::with_pool();
    let (p, ids) = h.submit(pipeline(
        "ci",
        vec![
            job("test", &[]),
            when("deploy", &["test"], r#"$FLOTILLA_BRANCH == "main""#),
            job("smoke", &["deploy"]),
        ],
    ));
    let [test, deploy, smoke] = ids[..] else { panic!() };
    for (id, reason) in [
        (deploy, r#"if: $FLOTILLA_BRANCH == "main" is false"#),
        (smoke, "needs deploy, which was skipped"),
    ] {
        let j = h.job(id).unwrap();
        assert_eq!(j.state, JobState::Skipped);
        assert_eq!(j.gate.as_deref(), Some(&Gate::Skipped { reason: reason.into() }));
    }
    assert_eq!(h.schedule().iter().map(|a| a.job).collect::<Vec<_>>(), vec![test]);
    h.finish(test, 0);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Succeeded);
    let mut r = h.run(Command::CancelJob { job: deploy }).0;
    let Ok(()) = complete_cancel(&mut r, deploy, &h.output);
    assert!(matches!(
        r,
        Response::Rejected(Rejection::AlreadyFinished {
            state: JobState::Skipped,
            ..
        })
    ));
}

#[test]
fn a_pipeline_whose_jobs_are_all_skipped_succeeds_at_once() {
    let mut h = Harness::with_pool();
    let (p, ids) = h.submit(pipeline("nothing", vec![when("only", &[], "$NOT_SET")]));
    assert_eq!(h.job_state(ids[0]), JobState::Skipped);
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Succeeded);
    assert_eq!(h.state.archive().get(p).map(|a| a.skipped), Some(1));
    assert_eq!(h.state.archive().job_counts().get(&JobState::Skipped), Some(&1));
}

#[test]
fn a_malformed_condition_is_refused_naming_the_field() {
    let mut h = Harness::with_pool();
    let e = refusal(&mut h, pipeline("x", vec![when("a", &[], "$A == main")]));
    assert_eq!(e.field(), "jobs[a].if");
    assert!(e.to_string().contains("unknown word 'main'"), "{e}");
}
