//! Artifact records: kept by the running attempt alone, within the job's and the tenant's
//! limits, replaced by a retry's, failing the job when they cannot be kept, expired by time
//! and removed with their pipeline.

mod common;
use common::*;
use flotilla_state_machine::*;

fn keeping(name: &str, needs: &[&str]) -> JobSpec {
    let mut j = job(name, needs);
    j.artifacts = Some(Box::new(ArtifactsSpec {
        paths: vec!["out".into()],
        expire_in_ms: 60_000,
        when: ArtifactsWhen::OnSuccess,
    }));
    j
}

fn digest(c: char) -> String {
    c.to_string().repeat(DIGEST_HEX_LEN)
}

fn stored(job: JobId, fencing: FencingToken, size_bytes: u64) -> Command {
    Command::ArtifactStored {
        job,
        fencing,
        digest: digest('a'),
        size_bytes,
        entries: 2,
    }
}

/// A harness with one job that keeps artifacts, started.
fn running() -> (Harness, JobId, FencingToken) {
    let mut h = Harness::with_pool();
    let (_, jobs) = h.submit(pipeline("p", vec![keeping("build", &[]), job("test", &["build"])]));
    h.schedule();
    let f = h.fencing(jobs[0]);
    h.ok(Command::WorkerCreated {
        job: jobs[0],
        fencing: f,
        worker_id: "w".into(),
    });
    h.ok(Command::WorkerStarted {
        job: jobs[0],
        fencing: f,
    });
    (h, jobs[0], f)
}

#[test]
fn a_running_attempt_keeps_its_artifact_until_it_expires() {
    let (mut h, build, f) = running();
    let e = h.ok(stored(build, f, 1000));
    assert_eq!(Harness::kinds(&e), ["ArtifactStored"]);
    let r = h.state.artifacts().get(build).expect("kept").clone();
    assert_eq!((r.attempt, r.size_bytes, r.entries), (1, 1000, 2));
    assert_eq!(r.expires_at_ms, h.now_ms + 60_000);
    assert_eq!(h.state.artifacts().tenant_bytes("default"), 1000);
    // The same report again changes nothing.
    let (resp, e) = h.run(stored(build, f, 1000));
    assert_eq!(resp, Response::Done { changed: false });
    assert!(e.is_empty());
    h.ok(Command::WorkerExited {
        job: build,
        fencing: f,
        exit_code: 0,
        jitter_permille: 0,
    });
    // Finished, the stale fencing can no longer change it.
    assert!(h.state.artifacts().get(build).is_some());
    assert!(matches!(
        h.rejected(stored(build, f, 5)),
        Rejection::StaleFencing { .. }
    ));

    // Not yet expired: passed over.
    let (resp, _) = h.run(Command::ExpireArtifacts { jobs: vec![build] });
    assert_eq!(resp, Response::Done { changed: false });
    h.now_ms += 60_000;
    assert_eq!(h.state.artifacts().expired(h.now_ms, 10), vec![build]);
    let e = h.ok(Command::ExpireArtifacts { jobs: vec![build] });
    assert!(Harness::kinds(&e).contains(&"ArtifactRemoved"));
    assert!(h.state.artifacts().is_empty());
    assert_eq!(h.state.artifacts().tenant_bytes("default"), 0);
}

#[test]
fn limits_per_job_and_per_tenant_refuse_the_record() {
    let (mut h, build, f) = running();
    let mut limits = Limits::DEFAULT;
    limits.max_artifact_bytes_per_job = 100;
    limits.max_artifact_bytes_per_tenant = 150;
    h.ok(Command::UpdateLimits { limits });
    let r = h.rejected(stored(build, f, 101));
    assert!(r.to_string().contains("per job"), "{r}");
    h.ok(stored(build, f, 100));
    // A second pipeline's job may keep what the tenant has left, not more.
    let (_, jobs) = h.submit(pipeline("q", vec![keeping("b2", &[])]));
    h.schedule();
    let f2 = h.fencing(jobs[0]);
    h.ok(Command::WorkerStarted {
        job: jobs[0],
        fencing: f2,
    });
    let r = h.rejected(stored(jobs[0], f2, 51));
    assert!(r.to_string().contains("tenant \"default\""), "{r}");
    h.ok(stored(jobs[0], f2, 50));
    assert_eq!(h.state.artifacts().tenant_bytes("default"), 150);
}

#[test]
fn only_a_job_that_declares_artifacts_with_a_real_digest_keeps_one() {
    let (mut h, build, f) = running();
    let bad = Command::ArtifactStored {
        job: build,
        fencing: f,
        digest: "../../etc".into(),
        size_bytes: 1,
        entries: 1,
    };
    assert!(h.rejected(bad).to_string().contains("digest"));
    let (mut h2, jobs) = {
        let mut h2 = Harness::with_pool();
        let (_, jobs) = h2.submit(pipeline("p", vec![job("plain", &[])]));
        h2.schedule();
        (h2, jobs)
    };
    let f2 = h2.fencing(jobs[0]);
    assert!(
        h2.rejected(stored(jobs[0], f2, 1))
            .to_string()
            .contains("keeps no artifacts")
    );
    assert!(h.state.artifacts().is_empty());
}

#[test]
fn a_failure_to_keep_them_fails_the_job_and_its_dependants() {
    let (mut h, build, f) = running();
    let e = h.ok(Command::ArtifactsFailed {
        job: build,
        fencing: f,
        reason: "artifacts.paths[0] \"out\" does not exist".into(),
    });
    assert!(Harness::kinds(&e).contains(&"JobFailed"), "{:?}", Harness::kinds(&e));
    let j = h.job(build).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert!(
        matches!(j.failure.as_deref(), Some(FailureReason::Artifacts { reason }) if reason.contains("does not exist"))
    );
    assert_eq!(h.state.pool("main").unwrap().allocated, Resources::ZERO);
    assert_eq!(h.state.assignments().count(), 0);
}

#[test]
fn a_retry_replaces_the_first_attempts_artifact_and_removal_forgets_it() {
    let mut h = Harness::with_pool();
    let mut spec = keeping("build", &[]);
    spec.retry.max_retries = 1;
    spec.retry.backoff_base_ms = 0;
    spec.retry.backoff_max_ms = 0;
    let (p, jobs) = h.submit(pipeline("p", vec![spec]));
    let build = jobs[0];
    h.schedule();
    let f1 = h.fencing(build);
    h.ok(Command::WorkerStarted {
        job: build,
        fencing: f1,
    });
    h.ok(stored(build, f1, 10));
    h.ok(Command::WorkerExited {
        job: build,
        fencing: f1,
        exit_code: 3,
        jitter_permille: 0,
    });
    assert_eq!(h.job_state(build), JobState::Pending);
    h.schedule();
    let f2 = h.fencing(build);
    h.ok(Command::WorkerStarted {
        job: build,
        fencing: f2,
    });
    h.ok(Command::ArtifactStored {
        job: build,
        fencing: f2,
        digest: digest('b'),
        size_bytes: 7,
        entries: 1,
    });
    let r = h.state.artifacts().get(build).unwrap();
    assert_eq!(
        (r.attempt, r.size_bytes, r.digest.as_str()),
        (2, 7, digest('b').as_str())
    );
    assert_eq!(h.state.artifacts().tenant_bytes("default"), 7);
    h.ok(Command::WorkerExited {
        job: build,
        fencing: f2,
        exit_code: 0,
        jitter_permille: 0,
    });
    assert_eq!(h.pipeline(p).unwrap().state, PipelineState::Succeeded);
    // Retention removes the pipeline, and its artifact with it.
    h.ok(Command::SetRetention {
        tenant: None,
        policy: Some(retention::RetentionPolicy {
            max_age_ms: Some(1),
            ..Default::default()
        }),
    });
    h.now_ms += 10;
    h.ok(Command::ExpireHistory {
        pipelines: vec![p],
        outputs: vec![],
    });
    assert!(h.state.artifacts().is_empty(), "{:?}", h.state.artifacts().get(build));
}
