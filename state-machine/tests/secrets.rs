//! Secrets in the replicated state: a job may use only its tenant's secrets, and a secret a
//! live worker runs with cannot change under it.

mod common;

use common::*;
use flotilla_state_machine::*;

const KEY: &str = "1111111111111111";

fn data_key() -> WrappedDataKey {
    WrappedDataKey {
        id: KEY.into(),
        kek_id: "00000000000000aa".into(),
        nonce: [1; 12],
        wrapped: vec![7; 48],
    }
}

fn set(tenant: &str, name: &str, expected_version: Option<u64>) -> Command {
    Command::SetSecret {
        tenant: tenant.into(),
        name: name.into(),
        sealed: SealedValue {
            key_id: KEY.into(),
            nonce: [2; 12],
            ciphertext: vec![9; 40],
        },
        new_data_key: Some(data_key()),
        expected_version,
    }
}

fn using(secret: &str) -> PipelineSpec {
    let mut j = job("deploy", &[]);
    j.secrets.insert("DB_PASSWORD".into(), secret.into());
    pipeline("p", vec![j])
}

#[test]
fn a_job_may_use_only_a_secret_its_tenant_has() {
    let mut h = Harness::with_pool();
    h.ok(set("other", "db", None));
    let r = h.rejected(Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: None,
        spec: using("db"),
        source: None,
        rerun_of: None,
    });
    assert!(
        matches!(&r, Rejection::Invalid(SpecError::UnknownSecret { field, .. }) if field == "jobs[deploy].secrets.DB_PASSWORD"),
        "{r:?}"
    );
    h.ok(set("default", "db", None));
    h.submit(using("db"));
}

#[test]
fn a_secret_in_env_and_secrets_at_once_is_refused() {
    let mut h = Harness::with_pool();
    h.ok(set("default", "db", None));
    let mut spec = using("db");
    spec.jobs[0].env.insert("DB_PASSWORD".into(), "plain".into());
    let r = h.rejected(Command::SubmitPipeline {
        tenant: "default".into(),
        idempotency_key: None,
        spec,
        source: None,
        rerun_of: None,
    });
    assert!(
        matches!(&r, Rejection::Invalid(e) if e.field() == "jobs[deploy].secrets.DB_PASSWORD"),
        "{r:?}"
    );
}

#[test]
fn secret_files_name_only_the_tenants_secrets_and_no_variable_twice() {
    let mut h = Harness::with_pool();
    h.ok(set("default", "db", None));
    let submit = |h: &mut Harness, spec| {
        h.rejected(Command::SubmitPipeline {
            tenant: "default".into(),
            idempotency_key: None,
            spec,
            source: None,
            rerun_of: None,
        })
    };
    let mut spec = using("db");
    spec.jobs[0].secret_files.insert("KEY_FILE".into(), "deploy-key".into());
    let r = submit(&mut h, spec);
    assert!(
        matches!(&r, Rejection::Invalid(SpecError::UnknownSecret { field, .. }) if field == "jobs[deploy].secret_files.KEY_FILE"),
        "{r:?}"
    );
    // One variable cannot be both the value and a file's path.
    let mut spec = using("db");
    spec.jobs[0].secret_files.insert("DB_PASSWORD".into(), "db".into());
    let r = submit(&mut h, spec);
    assert!(
        matches!(&r, Rejection::Invalid(e) if e.field() == "jobs[deploy].secret_files.DB_PASSWORD"),
        "{r:?}"
    );
    // Both kinds count against one limit.
    let mut spec = using("db");
    for i in 0..secret::MAX_SECRETS_PER_JOB {
        spec.jobs[0].secret_files.insert(format!("F{i}"), "db".into());
    }
    let r = submit(&mut h, spec);
    assert!(
        matches!(&r, Rejection::Invalid(e) if e.field() == "jobs[deploy].secret_files"),
        "{r:?}"
    );
    let mut spec = pipeline("p", vec![job("deploy", &[])]);
    spec.jobs[0].secret_files.insert("KEY_FILE".into(), "db".into());
    let (_, jobs) = h.submit(spec);
    // A secret used as a file is in use as much as one in the environment.
    h.schedule();
    let r = h.rejected(Command::DeleteSecret {
        tenant: "default".into(),
        name: "db".into(),
    });
    assert!(
        matches!(&r, Rejection::SecretInUse { job, .. } if *job == jobs[0]),
        "{r:?}"
    );
}

#[test]
fn a_secret_cannot_change_or_go_while_a_worker_runs_with_it() {
    let mut h = Harness::with_pool();
    h.ok(set("default", "db", None));
    let (_, jobs) = h.submit(using("db"));
    h.schedule();
    let in_use = |r: &Rejection| matches!(r, Rejection::SecretInUse { job, .. } if *job == jobs[0]);
    let r = h.rejected(set("default", "db", None));
    assert!(in_use(&r), "{r:?}");
    let r = h.rejected(Command::DeleteSecret {
        tenant: "default".into(),
        name: "db".into(),
    });
    assert!(in_use(&r), "{r:?}");
    // The same value sealed again (a key rotation) is no change for the worker.
    h.ok(set("default", "db", Some(1)));
    // Another tenant's secret of the same name is not in use.
    h.ok(set("other", "db", None));
    h.ok(set("other", "db", None));
    // Once the attempt is over, the secret may change.
    let fencing = h.fencing(jobs[0]);
    h.ok(Command::WorkerExited {
        job: jobs[0],
        fencing,
        exit_code: 0,
        jitter_permille: 0,
    });
    h.ok(set("default", "db", None));
    h.ok(Command::DeleteSecret {
        tenant: "default".into(),
        name: "db".into(),
    });
}
