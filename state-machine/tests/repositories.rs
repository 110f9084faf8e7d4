//! Repositories in the replicated state: registered only with their tenant's secrets, each
//! webhook delivery remembered once with what came of it, and pipelines from source only for
//! a repository of their own tenant.

mod common;

use common::*;
use flotilla_state_machine::*;

fn secret(tenant: &str, name: &str) -> Command {
    Command::SetSecret {
        tenant: tenant.into(),
        name: name.into(),
        sealed: SealedValue {
            key_id: "1111111111111111".into(),
            nonce: [2; 12],
            ciphertext: vec![9; 40],
        },
        new_data_key: Some(WrappedDataKey {
            id: "1111111111111111".into(),
            kek_id: "00000000000000aa".into(),
            nonce: [1; 12],
            wrapped: vec![7; 48],
        }),
        expected_version: None,
    }
}

fn repo(name: &str) -> RepositorySpec {
    RepositorySpec {
        name: name.into(),
        url: "https://git.example/acme/app.git".into(),
        forge: Forge::Github,
        pipeline_path: ".flotilla.yml".into(),
        webhook_secret: "hook".into(),
        credentials: None,
        status_api: None,
    }
}

fn put(tenant: &str, spec: RepositorySpec) -> Command {
    Command::PutRepository {
        tenant: tenant.into(),
        spec,
    }
}

fn from(repository: &str, delivery: Option<&str>) -> Source {
    Source {
        repository: repository.into(),
        commit: "c0ffee".repeat(6) + "abcd",
        reference: Some("refs/heads/main".into()),
        event: SourceEvent::Push,
        author: Some("ada".into()),
        pull_request: None,
        delivery: delivery.map(str::to_string),
    }
}

fn submit(tenant: &str, key: Option<&str>, source: Source) -> Command {
    Command::SubmitPipeline {
        tenant: tenant.into(),
        idempotency_key: key.map(str::to_string),
        spec: pipeline("ci", vec![job("build", &[])]),
        source: Some(Box::new(source)),
        rerun_of: None,
    }
}

#[test]
fn a_repository_names_only_secrets_its_tenant_has() {
    let mut h = Harness::with_pool();
    let r = h.rejected(put("acme", repo("app")));
    assert!(
        matches!(&r, Rejection::Invalid(SpecError::UnknownSecret { field, .. }) if field == "webhook_secret"),
        "{r:?}"
    );
    h.ok(secret("other", "hook"));
    h.rejected(put("acme", repo("app")));
    h.ok(secret("acme", "hook"));
    let mut private = repo("app");
    private.credentials = Some("token".into());
    let r = h.rejected(put("acme", private.clone()));
    assert!(matches!(&r, Rejection::Invalid(SpecError::UnknownSecret { field, .. }) if field == "credentials"));
    h.ok(secret("acme", "token"));
    h.ok(put("acme", private.clone()));
    assert_eq!(h.state.repository("acme", "app").unwrap().spec, private);
    assert!(h.state.repository("other", "app").is_none());
}

#[test]
fn putting_the_same_settings_again_changes_nothing_and_new_ones_keep_the_deliveries() {
    let mut h = Harness::with_pool();
    h.ok(secret("acme", "hook"));
    h.ok(put("acme", repo("app")));
    assert_eq!(h.run(put("acme", repo("app"))).0, Response::Done { changed: false });
    h.ok(submit("acme", Some("gh:1"), from("app", Some("1"))));
    let mut moved = repo("app");
    moved.pipeline_path = "ci/pipeline.yml".into();
    assert_eq!(h.run(put("acme", moved)).0, Response::Done { changed: true });
    let r = h.state.repository("acme", "app").unwrap();
    assert_eq!(r.spec.pipeline_path, "ci/pipeline.yml");
    assert_eq!(r.deliveries.len(), 1);
}

#[test]
fn a_pipeline_from_source_needs_a_repository_of_its_own_tenant() {
    let mut h = Harness::with_pool();
    h.ok(secret("other", "hook"));
    h.ok(put("other", repo("app")));
    let r = h.rejected(submit("acme", None, from("app", None)));
    assert!(matches!(&r, Rejection::UnknownRepository { tenant, name } if tenant == "acme" && name == "app"));
    let mut bad = from("app", None);
    bad.commit = "main".into();
    let r = h.rejected(submit("other", None, bad));
    assert!(
        matches!(&r, Rejection::Invalid(e) if e.field() == "source.commit"),
        "{r:?}"
    );
    h.ok(submit("other", None, from("app", None)));
}

#[test]
fn a_delivery_that_starts_a_pipeline_is_recorded_with_it_once() {
    let mut h = Harness::with_pool();
    h.ok(secret("acme", "hook"));
    h.ok(put("acme", repo("app")));
    let (first, _) = h.run(submit("acme", Some("github:d-1"), from("app", Some("d-1"))));
    let Response::Submitted {
        pipeline,
        duplicate: false,
        ..
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(
        h.state.pipeline(pipeline).unwrap().source,
        Some(from("app", Some("d-1")))
    );
    // The forge retries the delivery: same key, nothing new runs or is recorded.
    let (again, _) = h.run(submit("acme", Some("github:d-1"), from("app", Some("d-1"))));
    assert!(matches!(again, Response::Submitted { pipeline: p, duplicate: true, .. } if p == pipeline));
    let deliveries = &h.state.repository("acme", "app").unwrap().deliveries;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].id, "d-1");
    assert_eq!(deliveries[0].outcome, DeliveryOutcome::Started { pipeline });
}

#[test]
fn a_delivery_that_starts_nothing_is_recorded_once_and_only_for_a_known_repository() {
    let mut h = Harness::with_pool();
    h.ok(secret("acme", "hook"));
    h.ok(put("acme", repo("app")));
    let delivery = Delivery {
        id: "d-2".into(),
        event: "issues".into(),
        at_ms: 5,
        outcome: DeliveryOutcome::Ignored {
            reason: "event issues starts nothing".into(),
        },
    };
    let record = |repository: &str| Command::RecordDelivery {
        tenant: "acme".into(),
        repository: repository.into(),
        delivery: delivery.clone(),
    };
    assert_eq!(h.run(record("app")).0, Response::Done { changed: true });
    assert_eq!(h.run(record("app")).0, Response::Done { changed: false });
    assert!(matches!(h.rejected(record("web")), Rejection::UnknownRepository { .. }));
    assert_eq!(h.state.repository("acme", "app").unwrap().deliveries.len(), 1);
}

#[test]
fn conditions_see_the_source_and_the_job_variables() {
    let mut h = Harness::with_pool();
    h.ok(secret("default", "hook"));
    h.ok(put("default", repo("app")));
    let mut per_os = job("deploy", &[]);
    per_os.condition = Some(r#"$FLOTILLA_BRANCH =~ "release/*" && $OS == "linux""#.into());
    per_os.matrix.insert("OS".into(), vec!["linux".into(), "bsd".into()]);
    let spec = pipeline("ci", vec![per_os]);
    for (reference, running) in [("refs/heads/release/2.1", 1), ("refs/heads/main", 0)] {
        let mut source = from("app", None);
        source.reference = Some(reference.into());
        let r = h.run(Command::SubmitPipeline {
            tenant: "default".into(),
            idempotency_key: None,
            spec: spec.clone(),
            source: Some(Box::new(source)),
            rerun_of: None,
        });
        let Response::Submitted { jobs, .. } = r.0 else {
            panic!("{:?}", r.0)
        };
        let states: Vec<JobState> = jobs.iter().map(|j| h.job_state(j.id)).collect();
        let pending = states.iter().filter(|s| **s == JobState::Pending).count();
        assert_eq!((states.len(), pending), (2, running), "{reference}: {states:?}");
    }
}

#[test]
fn removing_a_repository_keeps_its_pipelines_and_refuses_new_ones() {
    let mut h = Harness::with_pool();
    h.ok(secret("acme", "hook"));
    h.ok(put("acme", repo("app")));
    h.ok(submit("acme", None, from("app", None)));
    h.ok(Command::RemoveRepository {
        tenant: "acme".into(),
        name: "app".into(),
    });
    assert!(h.state.repository("acme", "app").is_none());
    assert!(matches!(
        h.rejected(Command::RemoveRepository {
            tenant: "acme".into(),
            name: "app".into()
        }),
        Rejection::UnknownRepository { .. }
    ));
    assert!(matches!(
        h.rejected(submit("acme", None, from("app", None))),
        Rejection::UnknownRepository { .. }
    ));
    assert_eq!(h.state.pipelines().count(), 1);
}

#[test]
fn a_tenant_has_a_bounded_number_of_repositories() {
    let mut h = Harness::with_pool();
    h.ok(secret("acme", "hook"));
    for i in 0..repository::MAX_REPOSITORIES_PER_TENANT {
        h.ok(put("acme", repo(&format!("r{i}"))));
    }
    let r = h.rejected(put("acme", repo("one-more")));
    assert!(matches!(r, Rejection::TooManyRepositories { max, .. } if max == repository::MAX_REPOSITORIES_PER_TENANT));
    // Replacing one that exists is still allowed.
    h.ok(put("acme", repo("r0")));
}

#[test]
fn a_pipeline_from_a_reporting_repository_owes_its_commit_each_state_until_reported() {
    let mut h = Harness::with_pool();
    h.ok(secret("acme", "hook"));
    h.ok(secret("acme", "token"));
    // Without a token nothing is owed.
    h.ok(put("acme", repo("quiet")));
    h.ok(submit("acme", None, from("quiet", None)));
    assert!(h.state.statuses().is_empty());

    let mut reporting = repo("app");
    reporting.credentials = Some("token".into());
    assert!(reporting.reports_statuses());
    assert_eq!(
        reporting.status_api_root().as_deref(),
        Some("https://git.example/api/v3")
    );
    assert_eq!(reporting.project_path(), Some("acme/app"));
    h.ok(put("acme", reporting));
    let (r, _) = h.run(submit("acme", None, from("app", None)));
    let Response::Submitted { pipeline, jobs, .. } = r else {
        panic!("{r:?}")
    };
    let owed = |h: &Harness| {
        h.state
            .statuses()
            .due_after(None, 10)
            .map(|(p, d)| (p, d.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(owed(&h), [(pipeline, PipelineState::Running)]);

    h.schedule();
    h.finish(jobs[0].id, 2);
    assert_eq!(
        owed(&h),
        [(pipeline, PipelineState::Failed)],
        "the final state replaces the running one"
    );
    // A report of the state owed before changes nothing; the final one clears it.
    let reported = |state| Command::StatusReported { pipeline, state };
    assert_eq!(
        h.run(reported(PipelineState::Running)).0,
        Response::Done { changed: false }
    );
    assert_eq!(
        h.run(reported(PipelineState::Failed)).0,
        Response::Done { changed: true }
    );
    assert!(h.state.statuses().is_empty());
}

mod schedules {
    use super::*;
    use flotilla_state_machine::schedule::{FireOutcome, MissedPolicy, ScheduleSpec};

    fn nightly() -> ScheduleSpec {
        ScheduleSpec {
            name: "nightly".into(),
            repository: "app".into(),
            branch: "main".into(),
            cron: "0 3 * * *".into(),
            missed: MissedPolicy::Skip,
        }
    }

    fn fire(due_ms: u64, next_due_ms: u64, run: ScheduledRun) -> Command {
        Command::FireSchedule {
            tenant: "acme".into(),
            name: "nightly".into(),
            due_ms,
            next_due_ms,
            run: Box::new(run),
        }
    }

    fn run() -> ScheduledRun {
        let mut source = from("app", None);
        source.event = SourceEvent::Schedule;
        ScheduledRun::Run {
            spec: pipeline("ci", vec![job("build", &[])]),
            source,
        }
    }

    #[test]
    fn each_due_time_fires_once_and_the_schedule_moves_on() {
        let mut h = Harness::with_pool();
        let put = Command::PutSchedule {
            tenant: "acme".into(),
            spec: nightly(),
            next_due_ms: 10_000,
        };
        assert!(matches!(h.rejected(put.clone()), Rejection::UnknownRepository { .. }));
        h.ok(secret("acme", "hook"));
        h.ok(super::put("acme", repo("app")));
        h.ok(put);

        h.ok(fire(10_000, 20_000, run()));
        let s = h.state.schedules_of("acme").next().unwrap();
        assert_eq!(s.next_due_ms, 20_000);
        let Some((10_000, FireOutcome::Started { pipeline: started })) = s.last.clone() else {
            panic!("{:?}", s.last)
        };
        assert_eq!(
            h.state.pipeline(started).unwrap().source.as_ref().unwrap().event,
            SourceEvent::Schedule
        );
        // A new leader that did not see the first firing fires the same time: refused.
        assert!(matches!(
            h.rejected(fire(10_000, 20_000, run())),
            Rejection::StaleSchedule { .. }
        ));
        assert_eq!(h.state.pipelines().count(), 1);
        // The next time must come after the one fired.
        assert!(matches!(h.rejected(fire(20_000, 20_000, run())), Rejection::Invalid(_)));

        // A missed time skipped, and a run the spec refuses: recorded, and the schedule goes on.
        h.ok(fire(
            20_000,
            30_000,
            ScheduledRun::Skip {
                reason: "missed".into(),
            },
        ));
        let bad = ScheduledRun::Run {
            spec: pipeline("ci", vec![job("build", &["nope"])]),
            source: from("app", None),
        };
        h.ok(fire(30_000, 40_000, bad));
        let s = h.state.schedules_of("acme").next().unwrap();
        assert!(
            matches!(&s.last, Some((30_000, FireOutcome::Failed { reason })) if reason.contains("nope")),
            "{:?}",
            s.last
        );
        assert_eq!((s.next_due_ms, h.state.pipelines().count()), (40_000, 1));
    }
}

mod notifiers {
    use super::*;
    use flotilla_state_machine::notifier::{NotifierSpec, delivery_id};

    fn chat(on: Vec<PipelineState>) -> Command {
        Command::PutNotifier {
            tenant: "acme".into(),
            spec: NotifierSpec {
                name: "chat".into(),
                url: "https://chat.example/hook".into(),
                secret: "hook".into(),
                on,
            },
        }
    }

    #[test]
    fn a_tenants_notifiers_are_owed_each_state_they_hear_about_until_sent() {
        let mut h = Harness::with_pool();
        assert!(matches!(
            h.rejected(chat(vec![])),
            Rejection::Invalid(SpecError::UnknownSecret { .. })
        ));
        h.ok(secret("acme", "hook"));
        h.ok(chat(vec![PipelineState::Failed, PipelineState::Succeeded]));
        let (r, _) = h.run(Command::SubmitPipeline {
            tenant: "acme".into(),
            idempotency_key: None,
            spec: pipeline("ci", vec![job("build", &[])]),
            source: None,
            rerun_of: None,
        });
        let Response::Submitted { pipeline: p, jobs, .. } = r else {
            panic!("{r:?}")
        };
        assert!(h.state.notifications().is_empty(), "it does not hear about RUNNING");
        // Another tenant's pipeline owes acme's notifier nothing.
        h.submit(pipeline("other", vec![job("x", &[])]));
        h.schedule();
        h.finish(jobs[0].id, 1);
        let owed: Vec<String> = h.state.notifications().due(10).map(|(k, _)| delivery_id(k)).collect();
        assert_eq!(owed, [format!("p{}-failed-chat", p.0)]);
        let key = h.state.notifications().due(1).next().unwrap().0.clone();
        assert_eq!(
            h.run(Command::NotificationsSent {
                keys: vec![key.clone()]
            })
            .0,
            Response::Done { changed: true }
        );
        assert_eq!(
            h.run(Command::NotificationsSent { keys: vec![key] }).0,
            Response::Done { changed: false }
        );
        assert!(h.state.notifications().is_empty());
    }

    #[test]
    fn a_notifier_needs_a_web_url() {
        let mut h = Harness::with_pool();
        h.ok(secret("acme", "hook"));
        let bad = Command::PutNotifier {
            tenant: "acme".into(),
            spec: NotifierSpec {
                name: "chat".into(),
                url: "git://x/y".into(),
                secret: "hook".into(),
                on: vec![],
            },
        };
        assert!(matches!(h.rejected(bad), Rejection::Invalid(e) if e.field() == "url"));
    }
}
