//! Hostile input: `apply` must never panic, whatever a command holds. Every value a client or
//! a forged proposal can choose is drawn from its extremes (0, 1, `u64::MAX`, `u32::MAX`,
//! `i32::MIN`, empty and over-long strings, huge matrices), mixed with commands that reach deep
//! states (placements from the real scheduler, reports with live fencing tokens). After every
//! entry the invariants hold and a rejected command changed nothing; two replicas applying the
//! same log end byte-identical.
//!
//! `scripts/test-all` runs this file in release mode too: there `apply` skips its debug-only
//! invariant check, and nothing but checked arithmetic and limits stands between an input and
//! a panic.

mod common;
use common::*;
use flotilla_state_machine::scheduler::{SchedulerPolicy, schedule};
use flotilla_state_machine::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn u64x() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(u64::from(u32::MAX)),
        Just(1 << 40),
        0u64..10_000,
        any::<u64>()
    ]
}

fn u32x() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u32::MAX),
        Just(u32::MAX - 1),
        0u32..100,
        any::<u32>()
    ]
}

fn i32x() -> impl Strategy<Value = i32> + Clone {
    prop_oneof![
        Just(0),
        Just(1),
        Just(-1),
        Just(i32::MAX),
        Just(i32::MIN),
        -2000i32..2000,
        any::<i32>()
    ]
}

fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just(String::new()),
        "[a-z][a-z0-9]{0,6}",
        Just("x".repeat(129)),
        Just("../../etc/passwd".to_string()),
        Just("é\u{0}\u{202e}".to_string()),
        "\\PC{0,12}",
    ]
}

/// Resource vectors from a few values per dimension, so that a job near `u64::MAX` and a pool
/// that can hold it are drawn together often.
fn resources() -> impl Strategy<Value = Resources> + Clone {
    let wide = || prop_oneof![Just(1u64), Just(4000), Just(u64::MAX / 2 + 1), Just(u64::MAX), u64x()];
    (wide(), wide(), prop_oneof![Just(0u32), Just(u32::MAX), u32x()]).prop_map(|(c, m, g)| Resources::new(c, m, g))
}

/// Mostly jobs that pass validation (so histories go deep), some hostile in every field.
fn job_spec() -> impl Strategy<Value = JobSpec> {
    prop_oneof![3 => sane_job(), 2 => hostile_job()]
}

fn sane_job() -> impl Strategy<Value = JobSpec> {
    let resources = prop_oneof![3 => (1u64..3000).prop_map(|cpu| res(cpu, 256, 0)), 1 => resources()];
    (any::<bool>(), resources, 0u32..3).prop_map(|(second, resources, retries)| {
        let mut j = JobSpec::simple(if second { "b" } else { "a" }, "true", resources);
        j.needs = if second { vec!["a".into()] } else { vec![] };
        j.timeout_ms = 5_000;
        if !second {
            // The first job keeps files the second one receives.
            j.artifacts = Some(Box::new(ArtifactsSpec {
                paths: vec!["out".into()],
                expire_in_ms: 50,
                when: ArtifactsWhen::OnSuccess,
            }));
        }
        // Both jobs share one cache, under a small budget (set by the limits drawn).
        j.cache = Some(Box::new(CacheSpec {
            key: "deps".into(),
            files: Vec::new(),
            paths: vec!["target".into()],
            policy: if second {
                CachePolicy::Pull
            } else {
                CachePolicy::PullPush
            },
        }));
        if second {
            // Often refused (no such secret yet), accepted once `db` is set.
            j.secrets.insert("DB".into(), "db".into());
            j.secret_files.insert("DB_FILE".into(), "db".into());
        }
        j.retry = RetryPolicy {
            max_retries: retries,
            backoff_base_ms: 10,
            backoff_max_ms: 100,
        };
        j
    })
}

fn hostile_job() -> impl Strategy<Value = JobSpec> {
    let steps = prop_oneof![
        Just(vec!["true".to_string()]),
        Just(vec![]),
        Just(vec!["x".repeat(65 * 1024)]),
        prop::collection::vec(text(), 0..4),
    ];
    let matrix = prop_oneof![
        Just(BTreeMap::new()),
        prop::collection::btree_map("[A-Z]{1,3}", prop::collection::vec("[a-z0-9]{1,4}", 0..12), 0..4),
        Just(BTreeMap::from([
            ("A".to_string(), vec!["v".repeat(1024); 30]),
            ("B".to_string(), vec!["w".repeat(1024); 30])
        ])),
    ];
    (
        prop_oneof![Just("a".to_string()), Just("b".to_string()), text()],
        steps,
        prop_oneof![
            resources(),
            (1u64..4000, 1u64..4000).prop_map(|(c, m)| Resources::new(c, m, 0))
        ],
        (i32x(), u64x(), u32x(), u64x(), u64x()),
        matrix,
        prop::collection::vec(prop_oneof![Just("a".to_string()), Just("b".to_string()), text()], 0..3),
        (condition(), any::<bool>(), prop::option::of(0usize..4)),
    )
        .prop_map(
            |(
                name,
                steps,
                resources,
                (priority, timeout_ms, max_retries, base, max),
                matrix,
                needs,
                (condition, manual, role),
            )| JobSpec {
                steps: steps.into_iter().map(Into::into).collect(),
                priority,
                timeout_ms,
                retry: RetryPolicy {
                    max_retries,
                    backoff_base_ms: base,
                    backoff_max_ms: max,
                },
                matrix,
                needs,
                condition,
                manual,
                approval_role: role.map(|r| Role::ALL[r]),
                ..JobSpec::simple(&name, "true", resources)
            },
        )
}

/// `if` conditions: well-formed, malformed, too deep, too long, and costly to decide.
fn condition() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(r#"$FLOTILLA_BRANCH == "main" || !$A"#.to_string())),
        1 => "[$A-Z!=~&|()\"' *?]{0,40}".prop_map(Some),
        1 => text().prop_map(Some),
        1 => (0usize..80).prop_map(|n| Some(format!("{}$A{}", "(".repeat(n), ")".repeat(n)))),
        1 => (0usize..80).prop_map(|n| Some(format!("{}$A", "!".repeat(n)))),
        1 => Just(Some(format!("$A =~ \"{}\"", "*".repeat(2000)))),
        1 => Just(Some(format!("{}$A", "$A =~ \"*a*a*a*a*a*b\" || ".repeat(40)))),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::DEFAULT),
        Just(Limits::CEILING),
        (u64x(), u64x(), u32x(), i32x()).prop_map(|(a, b, c, d)| Limits {
            max_jobs_per_pipeline: a as usize,
            max_log_bytes_per_job: b,
            max_retries: c,
            max_priority_abs: d,
            max_pipeline_bytes: a,
            max_resources: Resources::new(b, a, c),
            max_workers_per_pool: c,
            max_cache_bytes_per_tenant: b % (1 << 20),
            max_caches_per_tenant: u64::from(c % 4).max(1),
            ..Limits::CEILING
        }),
    ]
}

/// What a command is about: a live job of the state, or any id at all.
#[derive(Clone, Debug)]
enum Target {
    Live(u8),
    Any(u64, u64, u64),
}

#[derive(Clone, Debug)]
enum Op {
    Submit(String, Option<String>, Vec<JobSpec>),
    Schedule,
    ForgedPlan(Target, u32, String),
    Pool(String, Resources, u32, bool),
    Capacity(String, Resources, u32),
    Drain(String, bool),
    RemovePool(String),
    Problem(String, Option<String>),
    Quota(String, Option<(Resources, u32)>),
    Limits(Limits),
    Report(Target, u8, u32, i32, u16),
    Log(Target, u64, usize),
    Cancel(Target),
    Approve(Target, usize, String),
    Published(u64, u32),
    Batch(Vec<(Target, u8, u32, i32, u16)>),
    Clock(u64),
    /// Applies again, stamp and all, the proposal this many entries back (a retried forward).
    Resend(u8),
    /// A submission under an extreme session stamp: (client, seq).
    Stamped(u64, u64),
    /// A secret of tenant `t` set: (name, data key 0..3, sealed length, expected version,
    /// whether the key comes along, whether the key is malformed).
    Secret(String, u8, usize, Option<u64>, bool, bool),
    DeleteSecret(String),
    RotateKey(u8),
    /// A retention policy for a tenant (or the default) from extreme values.
    Retention(Option<String>, Option<u64>, Option<u64>, Option<u64>),
    /// Removal of what is due, or of any ids at all, up to past the bound.
    Expire(bool, Vec<u64>),
    /// A repository of tenant `t`: (name, URL, webhook secret, fetch token, status API).
    Repo(String, String, String, Option<String>, Option<String>),
    RemoveRepo(String),
    /// A pipeline from source: (repository, commit, ref, delivery, re-run of).
    FromSource(String, String, Option<String>, Option<String>, Option<u64>),
    /// A delivery recorded: (repository, id, reason).
    Delivery(String, String, String),
    /// A status reported for any pipeline id in any state.
    StatusReported(u64, u8),
    /// A schedule set: (name, repository, branch, cron, next due).
    SetSchedule(String, String, String, String, u64),
    /// A firing: (schedule, the due time or any, next due, what runs: 0 run, 1 skip, 2 fail).
    Fire(String, Option<u64>, u64, u8),
    /// A notifier set: (name, URL, secret, states heard).
    Notifier(String, String, String, Vec<u8>),
    /// Notifications cleared: the owed ones, or any keys.
    Sent(bool, Vec<(u64, u8, String)>),
}

fn target() -> impl Strategy<Value = Target> + Clone {
    prop_oneof![3 => any::<u8>().prop_map(Target::Live), 1 => (u64x(), u64x(), u64x()).prop_map(|(j, t, i)| Target::Any(j, t, i))]
}

fn report() -> impl Strategy<Value = (Target, u8, u32, i32, u16)> + Clone {
    (target(), 0u8..14, u32x(), i32x(), any::<u16>())
}

fn op() -> impl Strategy<Value = Op> {
    let pool_name = prop_oneof![
        Just("p1".to_string()),
        Just("p3".to_string()),
        Just("p4".to_string()),
        text()
    ];
    prop_oneof![
        3 => (any::<bool>(), sane_job(), sane_job(), any::<bool>()).prop_map(|(two, mut a, mut b, chain)| {
            a.name = "a".into();
            a.needs.clear();
            b.name = "b".into();
            b.needs = if chain { vec!["a".into()] } else { vec![] };
            Op::Submit("t".into(), None, if two { vec![a, b] } else { vec![a] })
        }),
        2 => (prop_oneof![Just("t".to_string()), text()], prop::option::of(text()), prop::collection::vec(job_spec(), 0..4))
            .prop_map(|(t, k, jobs)| Op::Submit(t, k, jobs)),
        3 => Just(Op::Schedule),
        1 => (target(), u32x(), pool_name.clone()).prop_map(|(t, a, p)| Op::ForgedPlan(t, a, p)),
        2 => (pool_name.clone(), resources(), u32x(), any::<bool>()).prop_map(|(n, r, w, d)| Op::Pool(n, r, w, d)),
        // Pools as large as any job can ask for: the shape of the review's reproduction.
        1 => (prop_oneof![Just("p3".to_string()), Just("p4".to_string())], resources())
            .prop_map(|(n, r)| Op::Pool(n, Resources::new(r.cpu_millis.max(1), u64::MAX, u32::MAX), 4, false)),
        1 => (pool_name.clone(), resources(), u32x()).prop_map(|(n, r, w)| Op::Capacity(n, r, w)),
        1 => (pool_name.clone(), any::<bool>()).prop_map(|(n, d)| Op::Drain(n, d)),
        1 => pool_name.clone().prop_map(Op::RemovePool),
        1 => (pool_name, prop::option::of(prop_oneof![text(), Just("p".repeat(2000))])).prop_map(|(n, t)| Op::Problem(n, t)),
        1 => (prop_oneof![Just("t".to_string()), text()], prop::option::of((resources(), u32x()))).prop_map(|(t, q)| Op::Quota(t, q)),
        1 => limits().prop_map(Op::Limits),
        8 => report().prop_map(|(t, k, s, c, j)| Op::Report(t, k, s, c, j)),
        2 => (target(), u64x(), prop_oneof![Just(0usize), Just(10), Just(11), Just(300 * 1024)]).prop_map(|(t, o, n)| Op::Log(t, o, n)),
        1 => target().prop_map(Op::Cancel),
        1 => (target(), 0usize..4, text()).prop_map(|(t, r, by)| Op::Approve(t, r, by)),
        1 => (u64x(), u32x()).prop_map(|(i, p)| Op::Published(i, p)),
        1 => prop::collection::vec(report(), 0..5).prop_map(Op::Batch),
        1 => u64x().prop_map(Op::Clock),
        3 => any::<u8>().prop_map(Op::Resend),
        1 => (u64x(), u64x()).prop_map(|(c, q)| Op::Stamped(c, q)),
        2 => (
            prop_oneof![Just("db".to_string()), text()],
            0u8..3,
            prop_oneof![Just(40usize), Just(0), Just(23), Just(24), Just(64 * 1024 + 17), 0usize..100],
            prop::option::of(prop_oneof![Just(0u64), Just(1), u64x()]),
            any::<bool>(),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(n, k, len, v, bring, bad)| Op::Secret(n, k, len, v, bring, bad)),
        1 => prop_oneof![Just("db".to_string()), text()].prop_map(Op::DeleteSecret),
        1 => (0u8..3).prop_map(Op::RotateKey),
        1 => (
            prop::option::of(prop_oneof![Just("t".to_string()), text()]),
            prop::option::of(u64x()),
            prop::option::of(u64x()),
            prop::option::of(u64x())
        )
            .prop_map(|(t, a, c, o)| Op::Retention(t, a, c, o)),
        2 => (any::<bool>(), prop_oneof![prop::collection::vec(u64x(), 0..4), Just((0..1_001).collect::<Vec<u64>>())])
            .prop_map(|(d, ids)| Op::Expire(d, ids)),
        2 => (
            prop_oneof![Just("app".to_string()), text()],
            prop_oneof![Just("https://git.example/a/app.git".to_string()), Just("git://127.0.0.1/app".to_string()),
                        Just("file:///etc".to_string()), Just("https://u:p@h/r".to_string()), text()],
            prop_oneof![Just("db".to_string()), text()],
            prop::option::of(prop_oneof![Just("db".to_string()), text()]),
            prop::option::of(prop_oneof![Just("http://127.0.0.1:1/api".to_string()), text()]),
        )
            .prop_map(|(n, u, w, c, a)| Op::Repo(n, u, w, c, a)),
        1 => prop_oneof![Just("app".to_string()), text()].prop_map(Op::RemoveRepo),
        3 => (
            prop_oneof![Just("app".to_string()), text()],
            prop_oneof![Just("a".repeat(40)), Just("0".repeat(64)), Just("A".repeat(40)), text()],
            prop::option::of(prop_oneof![Just("refs/heads/main".to_string()), text()]),
            prop::option::of(prop_oneof![Just("d-1".to_string()), Just("d".repeat(200)), text()]),
            prop::option::of(prop_oneof![Just(1u64), Just(2), u64x()]),
        )
            .prop_map(|(r, c, f, d, p)| Op::FromSource(r, c, f, d, p)),
        1 => (prop_oneof![Just("app".to_string()), text()], prop_oneof![Just("d-1".to_string()), text()], prop_oneof![text(), Just("r".repeat(5000))])
            .prop_map(|(r, i, why)| Op::Delivery(r, i, why)),
        1 => (prop_oneof![Just(1u64), Just(2), u64x()], 0u8..4).prop_map(|(p, s)| Op::StatusReported(p, s)),
        1 => (
            prop_oneof![Just("s".to_string()), text()],
            prop_oneof![Just("app".to_string()), text()],
            prop_oneof![Just("main".to_string()), Just("a..b".to_string()), text()],
            prop_oneof![Just("0 3 * * *".to_string()), Just("x".repeat(200)), text()],
            u64x(),
        )
            .prop_map(|(n, r, b, c, d)| Op::SetSchedule(n, r, b, c, d)),
        2 => (prop_oneof![Just("s".to_string()), text()], prop::option::of(u64x()), u64x(), 0u8..3)
            .prop_map(|(n, d, next, k)| Op::Fire(n, d, next, k)),
        1 => (
            prop_oneof![Just("chat".to_string()), text()],
            prop_oneof![Just("https://chat.example/h".to_string()), text()],
            prop_oneof![Just("db".to_string()), text()],
            prop::collection::vec(0u8..4, 0..6),
        )
            .prop_map(|(n, u, sec, on)| Op::Notifier(n, u, sec, on)),
        1 => (any::<bool>(), prop::collection::vec((u64x(), 0u8..4, text()), 0..4)).prop_map(|(owed, keys)| Op::Sent(owed, keys)),
    ]
}

fn resolve(state: &State, t: &Target) -> (JobId, FencingToken) {
    match t {
        Target::Live(i) => {
            let live: Vec<&Assignment> = state.assignments().collect();
            if let Some(a) = (!live.is_empty()).then(|| live[*i as usize % live.len()]) {
                return (a.job, a.fencing);
            }
            let job = state
                .jobs()
                .nth(*i as usize % state.jobs().count().max(1))
                .map_or(JobId(1), |j| j.id);
            (job, FencingToken { term: 1, log_index: 1 })
        }
        Target::Any(j, term, index) => (
            JobId(*j),
            FencingToken {
                term: *term,
                log_index: *index,
            },
        ),
    }
}

fn report_command(state: &State, (t, kind, step, code, jitter): &(Target, u8, u32, i32, u16)) -> Command {
    let (job, fencing) = resolve(state, t);
    let (step, exit_code, jitter_permille) = (*step % 4, *code, *jitter);
    match kind {
        0 => Command::WorkerCreated {
            job,
            fencing,
            worker_id: format!("w{step}"),
        },
        1 => Command::WorkerStarted { job, fencing },
        2 => Command::StepStarted { job, fencing, step },
        3 => Command::StepFinished {
            job,
            fencing,
            step,
            exit_code,
        },
        4 => Command::WorkerExited {
            job,
            fencing,
            exit_code,
            jitter_permille,
        },
        5 => Command::WorkerLost {
            job,
            fencing,
            reason: "gone".into(),
        },
        6 => Command::WorkerTerminated {
            job,
            fencing,
            jitter_permille,
        },
        7 => Command::JobTimedOut { job, fencing },
        // A digest that is one (or, for odd steps, a path), a size within or past the limits.
        8 => Command::ArtifactStored {
            job,
            fencing,
            digest: if step % 2 == 0 {
                format!("{:064x}", jitter_permille)
            } else {
                format!("../{step}")
            },
            size_bytes: u64::from(exit_code.unsigned_abs()) << (step * 10),
            entries: step,
        },
        9 => Command::ArtifactsFailed {
            job,
            fencing,
            reason: "missing".into(),
        },
        10 => Command::ExpireArtifacts {
            jobs: (0..u64::from(step)).map(|i| JobId(job.0.wrapping_add(i))).collect(),
        },
        // A cache saved (with a digest, or for odd steps a path), or not saved.
        11 => Command::CacheSaved {
            job,
            fencing,
            outcome: if step == 3 {
                CacheSave::NotSaved {
                    reason: "r".repeat(exit_code.unsigned_abs() as usize % 5000),
                }
            } else {
                CacheSave::Stored {
                    digest: if step % 2 == 0 {
                        format!("{:064x}", jitter_permille).into()
                    } else {
                        format!("../{step}").into()
                    },
                    size_bytes: u64::from(exit_code.unsigned_abs()) << (step * 10),
                    entries: step,
                }
            },
        },
        12 => Command::CacheRestored {
            job,
            fencing,
            digest: format!("{:064x}", jitter_permille % 4),
        },
        _ => Command::ClearCaches {
            tenant: if step % 2 == 0 { "default".into() } else { "t1".into() },
            key: (step < 2).then(|| "deps".into()),
        },
    }
}

fn command(state: &State, op: &Op) -> Option<Command> {
    Some(match op {
        Op::Submit(tenant, key, jobs) => Command::SubmitPipeline {
            tenant: tenant.clone(),
            idempotency_key: key.clone(),
            spec: PipelineSpec {
                name: "hostile".into(),
                jobs: jobs.clone(),
            },
            source: None,
            rerun_of: None,
        },
        Op::Schedule => {
            let policy = SchedulerPolicy {
                max_placements: 16,
                ..SchedulerPolicy::default()
            };
            Command::ApplyPlan {
                placements: schedule(state, &policy, state.now_ms()).placements,
            }
        }
        Op::ForgedPlan(t, attempt, pool) => {
            let (job, _) = resolve(state, t);
            Command::ApplyPlan {
                placements: vec![
                    Placement {
                        job,
                        attempt: *attempt,
                        pool: pool.clone(),
                        // The forged pool name doubles as a forged host (empty, over-long,
                        // path traversal, or valid).
                        worker_host: Some(pool.clone()).filter(|_| *attempt % 2 == 1),
                    };
                    2
                ],
            }
        }
        Op::Pool(name, capacity, max_workers, image) => {
            let provider = if *image {
                ProviderKind::Docker
            } else {
                ProviderKind::Process
            };
            Command::RegisterPool {
                spec: pool(name, provider, *capacity, *max_workers),
            }
        }
        Op::Capacity(name, capacity, max_workers) => Command::UpdatePoolCapacity {
            pool: name.clone(),
            capacity: *capacity,
            max_workers: *max_workers,
        },
        Op::Drain(name, draining) => Command::SetPoolDraining {
            pool: name.clone(),
            draining: *draining,
        },
        Op::RemovePool(name) => Command::RemovePool { pool: name.clone() },
        Op::Problem(name, problem) => Command::SetPoolProblem {
            pool: name.clone(),
            problem: problem.clone(),
        },
        Op::Quota(tenant, q) => Command::SetTenantQuota {
            tenant: tenant.clone(),
            // A ceiling from the running-jobs bound: sometimes none, sometimes far outside the
            // limits' range.
            quota: q.map(|(resources, max_running_jobs)| Quota {
                resources,
                max_running_jobs,
                max_priority: match max_running_jobs % 3 {
                    0 => None,
                    1 => Some(i32::try_from(max_running_jobs).unwrap_or(i32::MAX) - 500),
                    _ => Some(i32::MIN),
                },
            }),
        },
        Op::Limits(limits) => Command::UpdateLimits { limits: limits.clone() },
        Op::Report(t, k, s, c, j) => report_command(state, &(t.clone(), *k, *s, *c, *j)),
        Op::Log(t, offset, len) => {
            let (job, fencing) = resolve(state, t);
            let offset = if *offset == 1 {
                state.job(job).map_or(0, |j| j.stream_offset)
            } else {
                *offset
            };
            if *len % 3 == 2 {
                // Output past the cap, skipped (refused while the log has room).
                Command::SkipLog {
                    job,
                    fencing,
                    offset,
                    to: offset.saturating_add(*len as u64 * 1000),
                }
            } else {
                Command::AppendLog {
                    job,
                    fencing,
                    offset,
                    data: vec![b'o'; *len],
                }
            }
        }
        Op::Cancel(t) => {
            let (job, _) = resolve(state, t);
            if job.0 % 2 == 0 {
                Command::CancelJob { job }
            } else {
                Command::CancelPipeline {
                    pipeline: PipelineId(job.0),
                }
            }
        }
        Op::Approve(t, role, by) => Command::ApproveJob {
            job: resolve(state, t).0,
            by: by.clone(),
            role: Role::ALL[*role],
        },
        Op::Published(log_index, position) => Command::RecordEventsPublished {
            through: EventId {
                log_index: *log_index,
                position: *position,
            },
        },
        Op::Batch(reports) => Command::Batch {
            commands: reports.iter().map(|r| report_command(state, r)).collect(),
        },
        Op::Secret(name, key, len, expected_version, bring, bad) => Command::SetSecret {
            tenant: "t".into(),
            name: name.clone(),
            sealed: SealedValue {
                key_id: data_key_id(*key),
                nonce: [0; 12],
                ciphertext: vec![1; *len],
            },
            new_data_key: bring.then(|| data_key(*key, *bad)),
            expected_version: *expected_version,
        },
        Op::DeleteSecret(name) => Command::DeleteSecret {
            tenant: "t".into(),
            name: name.clone(),
        },
        Op::RotateKey(key) => Command::RotateDataKey {
            key: data_key(*key, false),
        },
        Op::Retention(tenant, age, count, output) => Command::SetRetention {
            tenant: tenant.clone(),
            policy: Some(retention::RetentionPolicy {
                max_age_ms: *age,
                max_pipelines: *count,
                output_max_age_ms: *output,
                // The same extremes as a byte cap: 0, 1, past the ceiling, u64::MAX.
                output_max_bytes_per_job: *count,
            }),
        },
        Op::Expire(true, _) => {
            let plan = retention::due(state, state.now_ms(), retention::MAX_EXPIRE_PER_COMMAND);
            Command::ExpireHistory {
                pipelines: plan.pipelines,
                outputs: plan.outputs,
            }
        }
        Op::Expire(false, ids) => Command::ExpireHistory {
            pipelines: ids.iter().map(|i| PipelineId(*i)).collect(),
            outputs: ids.iter().rev().map(|i| PipelineId(*i)).collect(),
        },
        Op::Repo(name, url, hook, creds, api) => Command::PutRepository {
            tenant: "t".into(),
            spec: RepositorySpec {
                name: name.clone(),
                url: url.clone(),
                forge: Forge::Github,
                pipeline_path: ".flotilla.yml".into(),
                webhook_secret: hook.clone(),
                credentials: creds.clone(),
                status_api: api.clone(),
            },
        },
        Op::RemoveRepo(name) => Command::RemoveRepository {
            tenant: "t".into(),
            name: name.clone(),
        },
        Op::FromSource(repo, commit, reference, delivery, rerun_of) => Command::SubmitPipeline {
            tenant: "t".into(),
            idempotency_key: delivery.as_ref().map(|d| format!("hook:{d}")),
            spec: pipeline("from-source", vec![job("a", &[])]),
            source: Some(Box::new(Source {
                repository: repo.clone(),
                commit: commit.clone(),
                reference: reference.clone(),
                event: SourceEvent::Push,
                author: Some("ada".into()),
                pull_request: None,
                delivery: delivery.clone(),
            })),
            rerun_of: rerun_of.map(PipelineId),
        },
        Op::Delivery(repo, id, reason) => Command::RecordDelivery {
            tenant: "t".into(),
            repository: repo.clone(),
            delivery: Delivery {
                id: id.clone(),
                event: "push".into(),
                at_ms: 0,
                outcome: DeliveryOutcome::Failed { reason: reason.clone() },
            },
        },
        Op::StatusReported(p, s) => Command::StatusReported {
            pipeline: PipelineId(*p),
            state: PipelineState::ALL[*s as usize % 4],
        },
        Op::SetSchedule(name, repo, branch, cron, next) => Command::PutSchedule {
            tenant: "t".into(),
            spec: flotilla_state_machine::schedule::ScheduleSpec {
                name: name.clone(),
                repository: repo.clone(),
                branch: branch.clone(),
                cron: cron.clone(),
                missed: Default::default(),
            },
            next_due_ms: *next,
        },
        Op::Fire(name, due, next, kind) => {
            let current = state
                .schedules_of("t")
                .find(|s| &s.spec.name == name)
                .map(|s| s.next_due_ms);
            let run = match kind {
                0 => ScheduledRun::Run {
                    spec: pipeline("scheduled", vec![job("a", &[])]),
                    source: Source {
                        repository: "app".into(),
                        commit: "b".repeat(40),
                        reference: Some("refs/heads/main".into()),
                        event: SourceEvent::Schedule,
                        author: None,
                        pull_request: None,
                        delivery: None,
                    },
                },
                1 => ScheduledRun::Skip {
                    reason: "missed".into(),
                },
                _ => ScheduledRun::Fail {
                    reason: "x".repeat(3000),
                },
            };
            Command::FireSchedule {
                tenant: "t".into(),
                name: name.clone(),
                due_ms: due.or(current).unwrap_or(0),
                next_due_ms: *next,
                run: Box::new(run),
            }
        }
        Op::Notifier(name, url, secret, on) => Command::PutNotifier {
            tenant: "t".into(),
            spec: flotilla_state_machine::notifier::NotifierSpec {
                name: name.clone(),
                url: url.clone(),
                secret: secret.clone(),
                on: on.iter().map(|i| PipelineState::ALL[*i as usize % 4]).collect(),
            },
        },
        Op::Sent(true, _) => Command::NotificationsSent {
            keys: state.notifications().due(3).map(|(k, _)| k.clone()).collect(),
        },
        Op::Sent(false, keys) => Command::NotificationsSent {
            keys: keys
                .iter()
                .map(|(p, s, n)| (PipelineId(*p), PipelineState::ALL[*s as usize % 4], n.clone()))
                .collect(),
        },
        Op::Clock(_) | Op::Resend(_) => return None,
        Op::Stamped(..) => Command::SubmitPipeline {
            tenant: "t".into(),
            idempotency_key: None,
            spec: pipeline("stamped", vec![job("a", &[])]),
            source: None,
            rerun_of: None,
        },
    })
}

fn data_key_id(key: u8) -> String {
    format!("{key:016x}")
}

/// Data key `key` of the generated histories; a malformed one has a short wrapped key.
fn data_key(key: u8, malformed: bool) -> WrappedDataKey {
    WrappedDataKey {
        id: data_key_id(key),
        kek_id: "00000000000000aa".into(),
        nonce: [key; 12],
        wrapped: vec![key; if malformed { 47 } else { 48 }],
    }
}

/// Two pools large enough for the generated jobs, so histories reach placements and reports.
fn start() -> State {
    let mut s = State::default();
    for (i, name) in ["p1", "p2"].into_iter().enumerate() {
        let spec = pool(name, ProviderKind::Process, res(8000, 16_384, 0), 8);
        s.apply(
            ApplyContext {
                log_index: i as u64 + 1,
                term: 1,
            },
            &Proposal::new(0, Command::RegisterPool { spec }),
        );
    }
    s
}

fn run_history(ops: &[Op]) -> Result<(State, MemoryDisk, Log), TestCaseError> {
    let mut state = start();
    let mut output = MemoryDisk::default();
    let mut now_ms = 1_000u64;
    let mut log = Vec::new();
    let mut sequences: BTreeMap<ClientId, u64> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Clock(ms) = op {
            // Mostly small steps, sometimes a jump to the end of time.
            now_ms = if *ms > u64::from(u32::MAX) {
                *ms
            } else {
                now_ms.saturating_add(*ms % 100_000)
            };
        }
        let ctx = ApplyContext {
            log_index: i as u64 + 3,
            term: 1 + i as u64 / 20,
        };
        if let Op::Resend(back) = op {
            if let Some(resent) = resend(&mut state, &mut output, ctx, &log, *back)? {
                log.push(resent);
            }
            continue;
        }
        let Some(command) = command(&state, op) else { continue };
        // Three clients, each sending its requests in order (ids apart from the extreme ones
        // `Stamped` draws: a real client never reuses a stamp for another command).
        let request = match op {
            Op::Stamped(client, seq) => ClientRequest {
                client: ClientId(*client),
                seq: *seq,
            },
            _ => {
                let client = ClientId((7 << 56) | (i as u64 % 3));
                let seq = sequences.entry(client).or_insert(0);
                *seq += 1;
                ClientRequest { client, seq: *seq }
            }
        };
        let proposal = Proposal::new(now_ms, command).from_client(request);
        let out = apply_checked(&mut state, &mut output, ctx, &proposal)
            .map_err(|e| TestCaseError::fail(format!("{e} after {op:?}")))?;
        log.push((ctx, proposal, out));
    }
    Ok((state, output, log))
}

/// Applies again the proposal `back` entries from the end of `log`, as a retried forward
/// would. The retry of a client's last applied request must get the first answer and change
/// nothing; an older one is refused and changes nothing (`apply_checked` checks refusals).
fn resend(
    state: &mut State,
    output: &mut MemoryDisk,
    ctx: ApplyContext,
    log: &Log,
    back: u8,
) -> Result<Option<Applied>, TestCaseError> {
    if log.is_empty() {
        return Ok(None);
    }
    let (_, proposal, _) = &log[log.len() - 1 - usize::from(back) % log.len()];
    let Some(request) = proposal.request else {
        return Ok(None);
    };
    // What the session answers for this stamp: the last answer the stamp got while accepted.
    // (Once a session expired, by time or by eviction, the stamp is applied afresh.)
    let latest = log
        .iter()
        .rev()
        .find(|(_, p, (r, _))| p.request == Some(request) && r.rejection().is_none())
        .map(|(_, _, (r, _))| r);
    let recorded = state.sessions().last_seq(request.client) == Some(request.seq);
    let before = bytes(state);
    let out =
        apply_checked(state, output, ctx, proposal).map_err(|e| TestCaseError::fail(format!("{e} after a resend")))?;
    if let Some(first) = latest.filter(|_| recorded) {
        // The node completes an answer whose pipeline was archived since from its store.
        // (The log may hold an earlier retry's answer, given after the archiving, as `first`.)
        let (mut answer, mut first) = (out.0.clone(), first.clone());
        let Ok(()) = complete_submission(&mut answer, output);
        let Ok(()) = complete_submission(&mut first, output);
        // A pipeline retention removed is answered without jobs: its spec is gone.
        if let Response::Submitted { pipeline, jobs, .. } = &mut first
            && state.pipeline_removed(*pipeline)
        {
            jobs.clear();
        }
        prop_assert_eq!(answer, first, "a retry got another answer than the first");
        prop_assert!(out.1.is_empty(), "a retry emitted events");
        prop_assert!(before == bytes(state), "a retry changed the state");
    }
    Ok(Some((ctx, proposal.clone(), out)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn apply_never_panics_on_extreme_commands(ops in prop::collection::vec(op(), 1..80)) {
        let (first, first_output, log) = run_history(&ops)?;
        replay_agrees(start(), &log, &first, &first_output).map_err(TestCaseError::fail)?;
    }
}

/// The generator reaches placements and accepted reports, so the property above is not only
/// exercising refusals.
#[test]
fn hostile_histories_reach_deep_states() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 60..80);
    let (mut placed, mut started, mut finished, mut retries, mut cached) = (0, 0, 0, 0, 0);
    for _ in 0..48 {
        let ops = strategy.new_tree(&mut runner).expect("tree").current();
        let (_, _, log) = run_history(&ops).expect("history keeps the invariants");
        // Resends answered from a session: an accepted answer equal to an earlier one of the
        // same stamp, with no events.
        for (i, (_, p, (r, e))) in log.iter().enumerate() {
            let earlier = log[..i].iter().any(|(_, q, (s, _))| q.request == p.request && s == r);
            retries += usize::from(p.request.is_some() && r.rejection().is_none() && e.is_empty() && earlier);
        }
        for (_, _, (_, events)) in &log {
            for e in events {
                match e {
                    Event::AssignmentCreated { .. } => placed += 1,
                    Event::JobStarted { .. } => started += 1,
                    Event::WorkerTerminated { .. } => finished += 1,
                    Event::CacheSaved { .. } | Event::CacheRemoved { .. } => cached += 1,
                    _ => {}
                }
            }
        }
    }
    assert!(
        placed > 20 && started > 5 && finished > 5 && retries > 10 && cached > 0,
        "placed {placed}, started {started}, finished {finished}, retries answered {retries}, caches saved or \
         removed {cached}"
    );
}

/// The reproduction from the hostile-input review: two pools and two jobs whose `cpu_millis`
/// are near `u64::MAX`, for a tenant without a quota. Placing both used to overflow the
/// tenant's allocation and panic every replica at the same index, again at every restart. Now
/// the resources are refused by name, and nothing is placed.
#[test]
fn resources_near_u64_max_are_refused_by_name() {
    let mut h = Harness::new();
    let huge = res(u64::MAX - 1, 1024, 0);
    let err = h.rejected(Command::RegisterPool {
        spec: pool("big", ProviderKind::Process, huge, 4),
    });
    assert_eq!(
        err,
        Rejection::Invalid(SpecError::OutOfRange {
            field: "capacity.cpu_millis".into(),
            value: i64::MAX,
            min: 0,
            max: Limits::DEFAULT.max_resources.cpu_millis as i64,
        })
    );
    let max = Limits::DEFAULT.max_resources;
    h.ok(Command::RegisterPool {
        spec: pool("a", ProviderKind::Process, max, 4),
    });
    h.ok(Command::RegisterPool {
        spec: pool("b", ProviderKind::Process, max, 4),
    });
    let mut j = JobSpec::simple("j", "true", res(u64::MAX / 2 + 1, 1, 0));
    let err = refusal(&mut h, pipeline("p", vec![j.clone()]));
    assert_eq!(err.field(), "jobs[j].resources.cpu_millis");
    // At the limit, both jobs are placed, one per pool, and the tenant's sum fits.
    j.resources = max;
    let k = JobSpec {
        name: "k".into(),
        ..j.clone()
    };
    h.submit(pipeline("p", vec![j, k]));
    assert_eq!(h.schedule().len(), 2);
    let tenant = h.state.tenant("default").map(|t| t.allocated);
    assert_eq!(tenant, Some(res(2 * max.cpu_millis, 2 * max.memory_mib, 2 * max.gpus)));
}

/// A matrix that would expand past `max_pipeline_bytes` is refused before anything is cloned.
#[test]
fn matrix_expansion_is_bounded_by_bytes() {
    let mut h = Harness::with_pool();
    let mut j = JobSpec::simple("m", &"x".repeat(60 * 1024), res(100, 64, 0));
    j.matrix = BTreeMap::from([
        ("A".to_string(), (0..30).map(|i| format!("a{i}")).collect()),
        ("B".to_string(), (0..30).map(|i| format!("b{i}")).collect()),
    ]);
    let err = refusal(&mut h, pipeline("p", vec![j.clone()]));
    assert!(
        matches!(&err, SpecError::TooLarge { field, .. } if field == "jobs[m].matrix"),
        "{err:?}"
    );
    // The same matrix over a small script fits.
    j.steps = vec!["true".into()];
    let (_, jobs) = h.submit(pipeline("p", vec![j]));
    assert_eq!(jobs.len(), 900);
}

/// `UpdateLimits` cannot raise a limit past its ceiling: an unbounded `max_jobs_per_pipeline`
/// once let a matrix ask `apply` for a vector of 2^40 jobs.
#[test]
fn limits_past_their_ceilings_are_refused() {
    let mut h = Harness::with_pool();
    let limits = Limits {
        max_jobs_per_pipeline: usize::MAX,
        ..Limits::DEFAULT
    };
    let err = h.rejected(Command::UpdateLimits { limits });
    assert!(
        matches!(&err, Rejection::Invalid(SpecError::OutOfRange { field, .. }) if field == "limits.max_jobs_per_pipeline")
    );
    h.ok(Command::UpdateLimits {
        limits: Limits::CEILING,
    });
}

/// A refused submission prunes nothing: expired idempotency keys are dropped only by an
/// accepted one (a rejection changes nothing, not even that table).
#[test]
fn a_refused_submission_prunes_no_idempotency_key() {
    let mut h = Harness::with_pool();
    let limits = Limits {
        idempotency_ttl_ms: 10,
        ..Limits::DEFAULT
    };
    h.ok(Command::UpdateLimits { limits });
    let submit = |key: &str, spec: PipelineSpec| Command::SubmitPipeline {
        tenant: "t".into(),
        idempotency_key: Some(key.into()),
        spec,
        source: None,
        rerun_of: None,
    };
    h.ok(submit("k1", pipeline("p", vec![job("a", &[])])));
    h.now_ms += 100;
    // `run` asserts the refused command left the state byte-identical.
    h.rejected(submit("k2", pipeline("p", vec![job("a", &["zz"])])));
    // The expired key no longer answers as a duplicate: the same key submits a new pipeline.
    let (r, _) = h.run(submit("k1", pipeline("p", vec![job("a", &[])])));
    assert!(matches!(r, Response::Submitted { duplicate: false, .. }), "{r:?}");
}
