//! Job output committed through the log: offsets, duplicates, gaps, the per-job cap.

mod common;
use common::*;
use flotilla_state_machine::*;

/// A harness whose jobs keep 10 bytes of output, and its running job.
fn running_job_with_a_10_byte_log() -> (Harness, JobId, FencingToken) {
    let mut h = Harness::with_pool();
    let limits = Limits {
        max_log_bytes_per_job: 10,
        ..Limits::DEFAULT
    };
    h.ok(Command::UpdateLimits { limits });
    let (a, f) = running_job(&mut h);
    (h, a, f)
}

fn running_job(h: &mut Harness) -> (JobId, FencingToken) {
    let (_, ids) = h.submit(pipeline("logs", vec![job("a", &[])]));
    h.schedule();
    let f = h.fencing(ids[0]);
    h.ok(Command::WorkerStarted {
        job: ids[0],
        fencing: f,
    });
    (ids[0], f)
}

#[test]
fn resent_chunks_are_stored_once_and_gaps_refused() {
    let mut h = Harness::with_pool();
    let (a, f) = running_job(&mut h);
    h.ok(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 0,
        data: b"hello ".to_vec(),
    });
    // A new leader resends from an older offset: only the unseen tail is kept.
    h.ok(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 3,
        data: b"lo world".to_vec(),
    });
    let (r, e) = h.run(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 0,
        data: b"hello".to_vec(),
    });
    assert_eq!((r, e.len()), (Response::Done { changed: false }, 0));
    assert_eq!(h.output.log(a), b"hello world");
    let r = h.rejected(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 20,
        data: b"x".to_vec(),
    });
    assert_eq!(
        r,
        Rejection::LogGap {
            job: a,
            offset: 20,
            expected: 11
        }
    );
}

#[test]
fn output_past_the_cap_is_dropped_and_marked_once() {
    let (mut h, a, f) = running_job_with_a_10_byte_log();
    h.ok(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 0,
        data: b"0123456789abc".to_vec(),
    });
    h.ok(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 13,
        data: b"more".to_vec(),
    });
    let log = String::from_utf8(h.output.log(a).to_vec()).unwrap();
    assert!(
        log.starts_with("0123456789\n[flotilla] log truncated at 10 bytes"),
        "{log}"
    );
    assert_eq!(log.matches("truncated").count(), 1);
    assert!(h.job(a).unwrap().log_truncated);
}

#[test]
fn output_is_skipped_only_once_the_log_is_full_and_never_backwards() {
    let (mut h, a, f) = running_job_with_a_10_byte_log();
    let skip = |offset, to| Command::SkipLog {
        job: a,
        fencing: f,
        offset,
        to,
    };
    // Room left: skipping would lose output the log can hold.
    let r = h.rejected(skip(0, 1_000));
    assert!(matches!(r, Rejection::LogNotFull { .. }), "{r:?}");
    h.ok(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 0,
        data: b"0123456789abc".to_vec(),
    });
    let before = h.output.log(a).to_vec();
    let r = h.rejected(skip(14, 1_000));
    assert!(matches!(r, Rejection::LogGap { expected: 13, .. }), "{r:?}");
    h.ok(skip(13, 1_000_000));
    assert_eq!(h.job(a).unwrap().stream_offset, 1_000_000);
    assert_eq!(h.output.log(a), &before[..], "nothing is stored");
    // A resent skip, or one that ends before the offset, changes nothing.
    let (r, events) = h.run(skip(13, 500));
    assert_eq!((r, events.len()), (Response::Done { changed: false }, 0));
    let r = h.rejected(skip(13, 12));
    assert!(matches!(r, Rejection::LogGap { .. }), "{r:?}");
    // The stream goes on after the skip; a chunk that the skip covered is stored once (never).
    h.ok(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 999_990,
        data: b"tail-bytes-past".to_vec(),
    });
    assert_eq!(h.output.log(a), &before[..]);
    assert_eq!(h.job(a).unwrap().stream_offset, 1_000_005);
}

#[test]
fn a_retry_marks_where_its_output_begins() {
    let mut h = Harness::with_pool();
    let mut spec = job("a", &[]);
    spec.retry = RetryPolicy {
        max_retries: 1,
        backoff_base_ms: 0,
        backoff_max_ms: 0,
    };
    let (_, ids) = h.submit(pipeline("r", vec![spec]));
    h.schedule();
    let f1 = h.fencing(ids[0]);
    h.ok(Command::AppendLog {
        job: ids[0],
        fencing: f1,
        offset: 0,
        data: b"first".to_vec(),
    });
    h.finish(ids[0], 1);
    h.schedule();
    let f2 = h.fencing(ids[0]);
    h.ok(Command::AppendLog {
        job: ids[0],
        fencing: f2,
        offset: 0,
        data: b"second".to_vec(),
    });
    assert_eq!(h.output.log(ids[0]), b"first\n[flotilla] attempt 2\nsecond");
}

#[test]
fn a_tenants_retention_policy_sets_how_much_output_its_jobs_keep() {
    let (mut h, a, f) = running_job_with_a_10_byte_log();
    let cap = |h: &mut Harness, bytes: Option<u64>| {
        h.ok(Command::SetRetention {
            tenant: Some("default".into()),
            policy: bytes.map(|b| retention::RetentionPolicy {
                output_max_bytes_per_job: Some(b),
                ..Default::default()
            }),
        })
    };
    // The tenant's policy keeps 20 bytes, past the cluster's 10.
    cap(&mut h, Some(20));
    assert_eq!(h.state.log_cap_bytes("default"), 20);
    assert_eq!(h.state.log_cap_bytes("other"), 10, "other tenants keep the limit");
    h.ok(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 0,
        data: b"0123456789abcdef".to_vec(),
    });
    assert_eq!(
        h.output.log(a),
        b"0123456789abcdef",
        "16 bytes kept under a 20-byte cap"
    );
    assert!(!h.job(a).unwrap().log_truncated);
    h.ok(Command::AppendLog {
        job: a,
        fencing: f,
        offset: 16,
        data: b"ghijklmn".to_vec(),
    });
    let log = String::from_utf8(h.output.log(a).to_vec()).unwrap();
    assert!(
        log.starts_with("0123456789abcdefghij\n[flotilla] log truncated at 20 bytes"),
        "{log}"
    );
    assert!(h.job(a).unwrap().log_truncated);
    // Without the policy the limit is back, for the jobs that append from then on.
    cap(&mut h, None);
    assert_eq!(h.state.log_cap_bytes("default"), 10);
    // A cap past the ceiling is refused by name.
    let r = h.rejected(Command::SetRetention {
        tenant: None,
        policy: Some(retention::RetentionPolicy {
            output_max_bytes_per_job: Some(Limits::CEILING.max_log_bytes_per_job + 1),
            ..Default::default()
        }),
    });
    assert!(r.to_string().contains("output_max_bytes_per_job"), "{r}");
}
