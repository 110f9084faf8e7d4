//! `matrix` expansion and the pipeline file's shorthand fields (`script`, `labels`, `timeout`,
//! `retry: {max, backoff}`).

mod common;
use common::*;
use flotilla_state_machine::*;
use std::collections::BTreeMap;

fn matrix(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

#[test]
fn a_matrix_job_runs_once_per_combination_and_its_dependants_wait_for_all() {
    let mut h = Harness::with_pool();
    let test = JobSpec {
        matrix: matrix(&[("os", &["linux", "bsd"]), ("rust", &["1.80", "beta/x"])]),
        ..job("test", &["build"])
    };
    let spec = pipeline("p", vec![job("build", &[]), test, job("deploy", &["test", "build"])]);
    let (pid, jobs) = h.submit(spec);
    let names: Vec<String> = jobs
        .iter()
        .map(|id| h.job(*id).unwrap().spec.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "build",
            "test-linux-1.80",
            "test-linux-beta_x",
            "test-bsd-1.80",
            "test-bsd-beta_x",
            "deploy"
        ]
    );

    let test_bsd_beta = &h.job(jobs[4]).unwrap().spec;
    assert_eq!(test_bsd_beta.env.get("os"), Some("bsd"));
    assert_eq!(
        test_bsd_beta.env.get("rust"),
        Some("beta/x"),
        "the value is kept as written in env"
    );
    assert_eq!(test_bsd_beta.needs, ["build"]);
    assert!(test_bsd_beta.matrix.is_empty());

    let deploy = &h.job(jobs[5]).unwrap().spec;
    assert_eq!(
        deploy.needs,
        [
            "test-linux-1.80",
            "test-linux-beta_x",
            "test-bsd-1.80",
            "test-bsd-beta_x",
            "build"
        ]
    );
    assert_eq!(h.pipeline(pid).unwrap().jobs.len(), 6);
}

#[test]
fn resubmitting_a_matrix_pipeline_with_its_key_returns_the_first_one() {
    let mut h = Harness::with_pool();
    let spec = pipeline(
        "p",
        vec![JobSpec {
            matrix: matrix(&[("v", &["1", "2"])]),
            ..job("t", &[])
        }],
    );
    let submit = |h: &mut Harness| {
        h.run(Command::SubmitPipeline {
            tenant: "default".into(),
            idempotency_key: Some("k".into()),
            spec: spec.clone(),
            source: None,
            rerun_of: None,
        })
        .0
    };
    let first = submit(&mut h);
    let second = submit(&mut h);
    match (first, second) {
        (
            Response::Submitted {
                pipeline: a,
                duplicate: false,
                ..
            },
            Response::Submitted {
                pipeline: b,
                duplicate: true,
                ..
            },
        ) => assert_eq!(a, b),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.state.pipelines().count(), 1);
}

#[test]
fn bad_matrices_are_refused_with_the_field() {
    let mut h = Harness::with_pool();
    let with = |m: BTreeMap<String, Vec<String>>| {
        pipeline(
            "p",
            vec![JobSpec {
                matrix: m,
                ..job("t", &[])
            }],
        )
    };
    let mut env_clash = JobSpec {
        matrix: matrix(&[("os", &["a"])]),
        ..job("t", &[])
    };
    env_clash.env.insert("os".into(), "b".into());
    let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let cases: Vec<(PipelineSpec, &str)> = vec![
        (with(matrix(&[("os", &[])])), "jobs[t].matrix.os"),
        (with(matrix(&[("os", &["linux", ""])])), "jobs[t].matrix.os[1]"),
        (with(matrix(&[("1os", &["a"])])), "jobs[t].matrix.1os"),
        (with(matrix(&[("a", &many), ("b", &many)])), "jobs[t].matrix"),
        (pipeline("p", vec![env_clash]), "jobs[t].matrix.os"),
        // Two values that name the same job once made safe for names.
        (with(matrix(&[("v", &["a/b", "a:b"])])), "jobs[1].name"),
    ];
    for (spec, field) in cases {
        let e = refusal(&mut h, spec);
        assert_eq!(e.field(), field, "{e}");
    }
    assert_eq!(h.state.pipelines().count(), 0, "nothing was applied");
}

#[test]
fn pipeline_files_take_script_labels_durations_and_retry_shorthand() {
    let file = serde_json::json!({
        "name": "p",
        "jobs": [{
            "name": "t",
            "script": ["make test"],
            "labels": { "arch": "amd64" },
            "timeout": "10m",
            "retry": { "max": 2, "backoff": "5s", "max_backoff": "1m" },
            "resources": { "cpu_millis": 100, "memory_mib": 64 },
            "matrix": { "v": ["1"] }
        }]
    });
    let spec: PipelineSpec = serde_json::from_value(file).unwrap();
    let j = &spec.jobs[0];
    assert_eq!(j.steps, ["make test"]);
    assert_eq!(j.constraints.get("arch"), Some("amd64"));
    assert_eq!(j.timeout_ms, 600_000);
    assert_eq!(
        j.retry,
        RetryPolicy {
            max_retries: 2,
            backoff_base_ms: 5_000,
            backoff_max_ms: 60_000
        }
    );

    let plain: JobSpec = serde_json::from_value(serde_json::json!({
        "name": "t", "steps": ["x"], "timeout_ms": 1500, "resources": { "cpu_millis": 1, "memory_mib": 1 }
    }))
    .unwrap();
    assert_eq!(plain.timeout_ms, 1500, "plain milliseconds still work");

    let bad = serde_json::from_value::<JobSpec>(serde_json::json!({
        "name": "t", "steps": ["x"], "timeout": "10 parsecs", "resources": { "cpu_millis": 1, "memory_mib": 1 }
    }));
    assert!(bad.unwrap_err().to_string().contains("unknown duration unit"));

    // The binary encoding of the log round-trips the same spec.
    let cfg = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&spec, cfg).unwrap();
    let (back, _): (PipelineSpec, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
    assert_eq!(back, spec);
}
