//! `Command::Batch`: commands applied in order in one entry, each accepted or refused on its
//! own, with the same outcome as applying them one entry each.

mod common;
use common::*;
use flotilla_state_machine::*;

/// Two placed jobs `a` and `b` with their fencing tokens.
fn two_placed() -> (Harness, [(JobId, FencingToken); 2]) {
    let mut h = Harness::with_pool();
    let (_, jobs) = h.submit(pipeline("two", vec![job("a", &[]), job("b", &[])]));
    h.schedule();
    let (a, b) = (jobs[0], jobs[1]);
    let (fa, fb) = (h.fencing(a), h.fencing(b));
    (h, [(a, fa), (b, fb)])
}

fn reports([(a, fa), (b, fb)]: [(JobId, FencingToken); 2]) -> Vec<Command> {
    vec![
        Command::WorkerCreated {
            job: a,
            fencing: fa,
            worker_id: "wa".into(),
        },
        Command::WorkerCreated {
            job: b,
            fencing: fb,
            worker_id: "wb".into(),
        },
        // Stale token: refused on its own.
        Command::WorkerStarted {
            job: a,
            fencing: FencingToken { term: 0, log_index: 1 },
        },
        Command::WorkerStarted { job: a, fencing: fa },
        Command::WorkerExited {
            job: b,
            fencing: fb,
            exit_code: 0,
            jitter_permille: 0,
        },
    ]
}

#[test]
fn each_command_is_answered_in_order_and_a_refused_one_does_not_stop_the_rest() {
    let (mut h, placed) = two_placed();
    let (r, events) = h.run(Command::Batch {
        commands: reports(placed),
    });
    let Response::Batch { responses } = r else {
        panic!("not a batch response: {r:?}")
    };
    assert_eq!(responses.len(), 5);
    assert!(
        matches!(responses[2], Response::Rejected(Rejection::StaleFencing { .. })),
        "{:?}",
        responses[2]
    );
    assert!(
        responses
            .iter()
            .enumerate()
            .all(|(i, r)| i == 2 || r.rejection().is_none()),
        "{responses:?}"
    );
    assert_eq!(h.job_state(placed[0].0), JobState::Running);
    assert_eq!(h.job_state(placed[1].0), JobState::Succeeded);
    let kinds = Harness::kinds(&events);
    assert_eq!(kinds.first(), Some(&"WorkerCreated"));
    assert!(
        kinds.contains(&"JobStarted") && kinds.contains(&"JobCompleted"),
        "{kinds:?}"
    );
}

#[test]
fn a_batch_ends_in_the_state_its_commands_reach_one_entry_each() {
    let (mut batched, placed) = two_placed();
    let (mut single, _) = two_placed();
    batched.ok(Command::Batch {
        commands: reports(placed),
    });
    for command in reports(placed) {
        single.run(command);
    }
    assert_eq!(
        batched.state.jobs().collect::<Vec<_>>(),
        single.state.jobs().collect::<Vec<_>>()
    );
    assert_eq!(
        batched.state.assignments().collect::<Vec<_>>(),
        single.state.assignments().collect::<Vec<_>>()
    );
    assert_eq!(batched.state.pool("main"), single.state.pool("main"));
}

#[test]
fn plans_nested_batches_and_oversized_batches_are_refused_whole() {
    let (mut h, placed) = two_placed();
    let mut commands = reports(placed);
    commands.push(Command::ApplyPlan { placements: vec![] });
    assert!(
        matches!(h.rejected(Command::Batch { commands }), Rejection::NotBatchable { kind } if kind == "apply_plan")
    );
    let nested = vec![Command::Batch {
        commands: reports(placed),
    }];
    assert!(
        matches!(h.rejected(Command::Batch { commands: nested }), Rejection::NotBatchable { kind } if kind == "batch")
    );
    let many = vec![
        Command::WorkerStarted {
            job: placed[0].0,
            fencing: placed[0].1
        };
        MAX_BATCH_COMMANDS + 1
    ];
    assert!(matches!(
        h.rejected(Command::Batch { commands: many }),
        Rejection::BatchTooLarge { .. }
    ));
    assert_eq!(
        h.job_state(placed[0].0),
        JobState::Scheduled,
        "nothing of the refused batches applied"
    );
}

#[test]
fn a_batch_of_refused_commands_changes_nothing() {
    let (mut h, [(a, _), _]) = two_placed();
    let before = bytes(&h.state);
    h.now_ms += 60_000;
    let stale = FencingToken { term: 0, log_index: 1 };
    let (r, events) = h.run(Command::Batch {
        commands: vec![Command::WorkerStarted { job: a, fencing: stale }],
    });
    assert!(
        matches!(r, Response::Batch { ref responses } if responses[0].rejection().is_some()),
        "{r:?}"
    );
    assert!(events.is_empty());
    assert_eq!(bytes(&h.state), before, "not even the clock moved");
}
