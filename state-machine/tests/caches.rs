//! Caches: saved by the running attempt of a job that pushes one, restored and touched by a
//! job that pulls one, kept within each tenant's budget by forgetting the least recently used,
//! never failing a job, and cleared on request.

mod common;
use common::*;
use flotilla_state_machine::*;

fn caching(name: &str, key: &str, policy: CachePolicy) -> JobSpec {
    let mut j = job(name, &[]);
    j.cache = Some(Box::new(CacheSpec {
        key: key.into(),
        files: Vec::new(),
        paths: vec!["target".into()],
        policy,
    }));
    j
}

fn digest(c: char) -> String {
    c.to_string().repeat(DIGEST_HEX_LEN)
}

fn stored(job: JobId, fencing: FencingToken, c: char, size_bytes: u64) -> Command {
    Command::CacheSaved {
        job,
        fencing,
        outcome: CacheSave::Stored {
            digest: digest(c).into(),
            size_bytes,
            entries: 3,
        },
    }
}

/// Submits a one-job pipeline whose job uses cache `key`, and starts it.
fn start(h: &mut Harness, key: &str, policy: CachePolicy) -> (JobId, FencingToken) {
    let (_, jobs) = h.submit(pipeline("p", vec![caching("build", key, policy)]));
    h.schedule();
    let f = h.fencing(jobs[0]);
    h.ok(Command::WorkerStarted {
        job: jobs[0],
        fencing: f,
    });
    (jobs[0], f)
}

fn keys_by_use(h: &Harness) -> Vec<String> {
    h.state
        .caches()
        .least_recently_used("default")
        .map(str::to_string)
        .collect()
}

#[test]
fn a_saved_cache_is_restored_by_the_next_job_of_the_tenant() {
    let mut h = Harness::with_pool();
    let (build, f) = start(&mut h, "deps", CachePolicy::PullPush);
    assert!(
        h.state.cache_for(h.state.job(build).unwrap()).is_none(),
        "nothing saved yet"
    );
    let e = h.ok(stored(build, f, 'a', 1000));
    assert_eq!(Harness::kinds(&e), ["CacheSaved"]);
    // Saved once per attempt: a repeat changes nothing.
    let (resp, e) = h.run(stored(build, f, 'b', 10));
    assert_eq!(resp, Response::Done { changed: false });
    assert!(e.is_empty());
    h.ok(Command::WorkerExited {
        job: build,
        fencing: f,
        exit_code: 0,
        jitter_permille: 0,
    });
    let r = h.state.caches().get("default", "deps").expect("kept").clone();
    assert_eq!(
        (r.digest.as_str(), r.size_bytes, r.job),
        (digest('a').as_str(), 1000, build)
    );
    assert_eq!(h.state.caches().tenant_bytes("default"), 1000);
    let note = h.job(build).unwrap().attempts[0].cache.clone().unwrap();
    assert!(matches!(note.saved, Some(CacheSave::Stored { size_bytes: 1000, .. })));

    // The next pipeline's job pulls it; its restore counts as a use.
    h.now_ms += 5_000;
    let (next, f2) = start(&mut h, "deps", CachePolicy::Pull);
    assert_eq!(
        h.state.cache_for(h.state.job(next).unwrap()).map(|r| r.digest.as_str()),
        Some(digest('a').as_str())
    );
    h.ok(Command::CacheRestored {
        job: next,
        fencing: f2,
        digest: digest('a'),
    });
    assert_eq!(h.state.caches().get("default", "deps").unwrap().used_at_ms, h.now_ms);
    let note = h.job(next).unwrap().attempts[0].cache.clone().unwrap();
    assert_eq!(note.restored.as_deref(), Some(digest('a').as_str()));
    // A pull-only job saves nothing.
    assert!(
        h.rejected(stored(next, f2, 'c', 5))
            .to_string()
            .contains("saves no cache")
    );
    // Another tenant sees nothing of it.
    assert!(h.state.caches().get("other", "deps").is_none());
}

#[test]
fn the_budget_evicts_the_least_recently_used_caches_first() {
    let mut h = Harness::with_pool();
    let mut limits = Limits::DEFAULT;
    limits.max_cache_bytes_per_tenant = 100;
    h.ok(Command::UpdateLimits { limits });
    for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
        h.now_ms += 1000;
        let (j, f) = start(&mut h, key, CachePolicy::Push);
        h.ok(stored(j, f, char::from(b'a' + i as u8), 30));
    }
    assert_eq!(keys_by_use(&h), ["a", "b", "c"]);
    // `a` is restored, so `b` is now the least recently used.
    h.now_ms += 1000;
    let (j, f) = start(&mut h, "a", CachePolicy::Pull);
    h.ok(Command::CacheRestored {
        job: j,
        fencing: f,
        digest: digest('a'),
    });
    assert_eq!(keys_by_use(&h), ["b", "c", "a"]);
    // 40 more bytes do not fit beside 90: `b` goes, and only `b`.
    h.now_ms += 1000;
    let (j, f) = start(&mut h, "d", CachePolicy::PullPush);
    let e = h.ok(stored(j, f, 'd', 40));
    assert_eq!(Harness::kinds(&e), ["CacheRemoved", "CacheSaved"]);
    assert!(
        e.iter()
            .any(|e| matches!(e, Event::CacheRemoved { key, evicted: true, size_bytes: 30, .. } if key == "b"))
    );
    assert_eq!(keys_by_use(&h), ["c", "a", "d"]);
    assert_eq!(h.state.caches().tenant_bytes("default"), 100);
    // A cache saved again under its key replaces itself, evicting nothing else.
    h.now_ms += 1000;
    let (j, f) = start(&mut h, "d", CachePolicy::PullPush);
    let e = h.ok(stored(j, f, 'e', 40));
    assert_eq!(Harness::kinds(&e), ["CacheSaved"]);
    assert_eq!(h.state.caches().tenant_bytes("default"), 100);
}

#[test]
fn a_cache_that_cannot_be_kept_is_noted_and_the_job_succeeds() {
    let mut h = Harness::with_pool();
    let mut limits = Limits::DEFAULT;
    limits.max_cache_bytes_per_tenant = 100;
    h.ok(Command::UpdateLimits { limits });
    let (j, f) = start(&mut h, "big", CachePolicy::PullPush);
    let e = h.ok(stored(j, f, 'a', 101));
    assert_eq!(Harness::kinds(&e), ["CacheNotSaved"]);
    assert!(h.state.caches().is_empty());
    let note = h.job(j).unwrap().attempts[0].cache.clone().unwrap();
    match note.saved {
        Some(CacheSave::NotSaved { reason }) => assert!(reason.contains("cache budget of 100 bytes"), "{reason}"),
        other => panic!("{other:?}"),
    }
    h.ok(Command::WorkerExited {
        job: j,
        fencing: f,
        exit_code: 0,
        jitter_permille: 0,
    });
    assert_eq!(h.job_state(j), JobState::Succeeded);

    // A failure the leader reports is kept, bounded.
    let (j, f) = start(&mut h, "k", CachePolicy::PullPush);
    h.ok(Command::CacheSaved {
        job: j,
        fencing: f,
        outcome: CacheSave::NotSaved {
            reason: "x".repeat(10_000),
        },
    });
    let note = h.job(j).unwrap().attempts[0].cache.clone().unwrap();
    assert!(matches!(note.saved, Some(CacheSave::NotSaved { reason }) if reason.len() < 1100));
}

#[test]
fn only_the_running_attempt_saves_and_only_real_digests() {
    let mut h = Harness::with_pool();
    let (j, f) = start(&mut h, "deps", CachePolicy::PullPush);
    let bad = Command::CacheSaved {
        job: j,
        fencing: f,
        outcome: CacheSave::Stored {
            digest: "../../etc/passwd".into(),
            size_bytes: 1,
            entries: 1,
        },
    };
    assert!(h.rejected(bad).to_string().contains("SHA-256"));
    let stale = FencingToken {
        term: f.term,
        log_index: f.log_index + 100,
    };
    assert!(matches!(
        h.rejected(stored(j, stale, 'a', 1)),
        Rejection::StaleFencing { .. }
    ));
    h.ok(Command::CancelJob { job: j });
    let (resp, _) = h.run(stored(j, f, 'a', 1));
    assert_eq!(resp, Response::Done { changed: false });
    assert!(h.state.caches().is_empty());
    // A job without a cache neither saves nor restores one.
    let (_, jobs) = h.submit(pipeline("plain", vec![job("x", &[])]));
    h.schedule();
    let fx = h.fencing(jobs[0]);
    assert!(
        h.rejected(stored(jobs[0], fx, 'a', 1))
            .to_string()
            .contains("saves no cache")
    );
}

#[test]
fn clearing_forgets_one_key_or_all_of_a_tenant() {
    let mut h = Harness::with_pool();
    for key in ["a", "b"] {
        let (j, f) = start(&mut h, key, CachePolicy::PullPush);
        h.ok(stored(j, f, 'a', 10));
    }
    assert!(matches!(
        h.rejected(Command::ClearCaches {
            tenant: "default".into(),
            key: Some("zz".into()),
        }),
        Rejection::UnknownCache { .. }
    ));
    let e = h.ok(Command::ClearCaches {
        tenant: "default".into(),
        key: Some("a".into()),
    });
    assert!(matches!(&e[..], [Event::CacheRemoved { evicted: false, .. }]));
    assert_eq!(keys_by_use(&h), ["b"]);
    h.ok(Command::ClearCaches {
        tenant: "default".into(),
        key: None,
    });
    assert!(h.state.caches().is_empty());
    let (resp, _) = h.run(Command::ClearCaches {
        tenant: "default".into(),
        key: None,
    });
    assert_eq!(resp, Response::Done { changed: false });
}

#[test]
fn a_tenant_keeps_at_most_so_many_caches() {
    let mut h = Harness::with_pool();
    let mut limits = Limits::DEFAULT;
    limits.max_caches_per_tenant = 3;
    h.ok(Command::UpdateLimits { limits });
    for i in 0..5 {
        h.now_ms += 1;
        let (j, f) = start(&mut h, &format!("k{i}"), CachePolicy::Push);
        h.ok(stored(j, f, 'a', 1));
    }
    assert_eq!(h.state.caches().tenant_count("default"), 3);
    assert_eq!(keys_by_use(&h), ["k2", "k3", "k4"], "the least recently used went");
}
