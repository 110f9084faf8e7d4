//! Pipelines run for real on the process provider, through real node processes: DAG order,
//! retries, allow_failure, logs from every node, cancel, timeout, and a leader killed mid-run
//! with every job still run exactly once and no worker left behind.

mod common;
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn job(name: &str, steps: &[&str], needs: &[&str]) -> Value {
    job_spec(name, json!({ "steps": steps, "needs": needs }))
}

async fn start(dir: &Path) -> Cluster {
    let work = dir.join("workers").to_string_lossy().into_owned();
    let c = Cluster::start(3, &["--process-work-dir", work.as_str(), "--leader-tick-ms", "100"]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    c
}

async fn submit(c: &Cluster, spec: Value) -> (u64, Vec<(String, u64)>) {
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let jobs = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap().to_string(), j["id"].as_u64().unwrap()))
        .collect();
    (v["pipeline"].as_u64().unwrap(), jobs)
}

fn id_of(jobs: &[(String, u64)], name: &str) -> u64 {
    jobs.iter().find(|(n, _)| n == name).unwrap().1
}

async fn wait_pipeline(c: &Cluster, node: u64, id: u64, state: &str) -> Value {
    c.wait_get(
        node,
        &format!("/v1/pipelines/{id}"),
        &format!("pipeline {state}"),
        |s, v| s == 200 && v["state"] == state,
    )
    .await
}

fn worker_dirs(dir: &Path) -> Vec<String> {
    // Worker directories are `j<job>-a<attempt>`; `.removed/` holds the names of removed ones.
    std::fs::read_dir(dir.join("workers")).map_or(vec![], |d| {
        d.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('j'))
            .collect()
    })
}

async fn wait_no_workers(dir: &Path) {
    let deadline = Instant::now() + WAIT;
    while !worker_dirs(dir).is_empty() {
        assert!(Instant::now() < deadline, "workers left behind: {:?}", worker_dirs(dir));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Worker wrappers run `<root>/j<job>-a<attempt>/run.sh`; the nodes' own command lines
    // name only `<root>`.
    let pattern = format!("{}/j", dir.join("workers").display());
    let procs = std::process::Command::new("pgrep")
        .args(["-f", &pattern])
        .output()
        .unwrap();
    assert!(
        procs.stdout.is_empty(),
        "worker processes left: {}",
        String::from_utf8_lossy(&procs.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_runs_with_retry_and_allow_failure_and_logs_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let flag = dir.path().join("flaky-once");
    let flaky = format!(
        "if [ -f {f} ]; then echo second try; else touch {f}; echo first try fails; exit 1; fi",
        f = flag.display()
    );
    let mut flaky_job = job("test2", &[&flaky], &["build"]);
    flaky_job["retry"] = json!({ "max_retries": 2, "backoff_base_ms": 100, "backoff_max_ms": 200 });
    let mut lint = job("lint", &["echo lint problems", "exit 3"], &[]);
    lint["allow_failure"] = json!(true);
    let spec = json!({ "name": "dag", "jobs": [
        job("build", &["echo building", "echo built"], &[]),
        job("test1", &["echo test one"], &["build"]),
        flaky_job,
        lint,
        job("deploy", &["echo deploying"], &["test1", "test2", "lint"]),
    ]});
    let (p, jobs) = submit(&c, spec).await;
    let done = wait_pipeline(&c, 2, p, "SUCCEEDED").await;
    let states: Vec<(String, String)> = done["job_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap().into(), j["state"].as_str().unwrap().into()))
        .collect();
    let expect = [
        ("build", "SUCCEEDED"),
        ("test1", "SUCCEEDED"),
        ("test2", "SUCCEEDED"),
        ("lint", "FAILED"),
        ("deploy", "SUCCEEDED"),
    ];
    assert_eq!(states, expect.map(|(a, b)| (a.to_string(), b.to_string())).to_vec());

    let (_, flaky_view) = c
        .get(
            1,
            &format!("/v1/jobs/{}?consistency=linearizable", id_of(&jobs, "test2")),
        )
        .await;
    assert_eq!(flaky_view["attempt"], 2, "{flaky_view}");
    let (_, lint_view) = c
        .get(
            1,
            &format!("/v1/jobs/{}?consistency=linearizable", id_of(&jobs, "lint")),
        )
        .await;
    assert_eq!(lint_view["failure"], json!({ "exit_code": { "code": 3 } }));
    // DAG order: deploy started after every job it needs had finished.
    let finished = |v: &Value| {
        v["attempts"].as_array().unwrap().last().unwrap()["finished_at_ms"]
            .as_u64()
            .unwrap()
    };
    let (_, deploy) = c
        .get(
            1,
            &format!("/v1/jobs/{}?consistency=linearizable", id_of(&jobs, "deploy")),
        )
        .await;
    let deploy_start = deploy["attempts"][0]["scheduled_at_ms"].as_u64().unwrap();
    assert!(deploy_start >= finished(&flaky_view) && deploy_start >= finished(&lint_view));

    for node in 1..=3 {
        let http = &c.http;
        let log = |name: &str| {
            let url = c.node(node).url(&format!(
                "/v1/jobs/{}/logs?consistency=linearizable",
                id_of(&jobs, name)
            ));
            async move { http.get(url).send().await.unwrap().text().await.unwrap() }
        };
        assert_eq!(log("build").await, "$ echo building\nbuilding\n$ echo built\nbuilt\n");
        let flaky_log = log("test2").await;
        assert!(
            flaky_log.contains("first try fails")
                && flaky_log.contains("[flotilla] attempt 2")
                && flaky_log.contains("second try"),
            "{flaky_log}"
        );
        assert!(log("deploy").await.contains("deploying"));
    }
    wait_no_workers(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_timeout_stop_running_workers() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let mut slow = job("slow", &["sleep 300"], &[]);
    slow["timeout_ms"] = json!(1500);
    let (p1, jobs1) = submit(&c, json!({ "name": "t", "jobs": [slow] })).await;
    let (_, jobs2) = submit(
        &c,
        json!({ "name": "c", "jobs": [job("stuck", &["echo started", "sleep 300"], &[])] }),
    )
    .await;
    let stuck = jobs2[0].1;
    c.wait_get(1, &format!("/v1/jobs/{stuck}"), "stuck running", |_, v| {
        v["state"] == "RUNNING"
    })
    .await;
    let (s, v) = c.post(3, &format!("/v1/jobs/{stuck}/cancel"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    c.wait_get(1, &format!("/v1/jobs/{stuck}"), "cancelled", |_, v| {
        v["state"] == "CANCELLED"
    })
    .await;
    let timed_out = wait_pipeline(&c, 1, p1, "FAILED").await;
    assert_eq!(timed_out["job_states"][0]["state"], "FAILED");
    let (_, slow_view) = c
        .get(1, &format!("/v1/jobs/{}?consistency=linearizable", jobs1[0].1))
        .await;
    assert_eq!(slow_view["failure"], "timeout", "{slow_view}");
    wait_no_workers(dir.path()).await;
    let (_, pools) = c.get(1, "/v1/pools?consistency=linearizable").await;
    assert_eq!(pools["items"][0]["workers"], 0, "capacity released: {pools}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_run_runs_every_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path()).await;
    let markers = dir.path().join("markers");
    let step = format!("sleep 3; echo $FLOTILLA_JOB_ID >> {}; echo finished", markers.display());
    let jobs: Vec<Value> = (0..6)
        .map(|i| job(&format!("j{i}"), &["echo starting", &step], &[]))
        .collect();
    let (p, ids) = submit(&c, json!({ "name": "failover", "jobs": jobs })).await;
    // Every job running, then the leader dies.
    c.wait_get(1, &format!("/v1/pipelines/{p}"), "all running", |_, v| {
        v["job_states"]
            .as_array()
            .is_some_and(|a| a.iter().all(|j| j["state"] == "RUNNING"))
    })
    .await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.node_mut(leader).kill9();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    c.wait_leader_among(&rest).await;
    wait_pipeline(&c, rest[0], p, "SUCCEEDED").await;

    let text = std::fs::read_to_string(&markers).unwrap();
    let mut ran: Vec<u64> = text.lines().map(|l| l.parse().unwrap()).collect();
    ran.sort();
    let mut expected: Vec<u64> = ids.iter().map(|(_, id)| *id).collect();
    expected.sort();
    assert_eq!(ran, expected, "each job ran exactly once");
    for (_, id) in &ids {
        let (_, job) = c.get(rest[1], &format!("/v1/jobs/{id}?consistency=linearizable")).await;
        assert_eq!(job["attempt"], 1, "no retry was needed: {job}");
        let url = c
            .node(rest[1])
            .url(&format!("/v1/jobs/{id}/logs?consistency=linearizable"));
        let log = c.http.get(url).send().await.unwrap().text().await.unwrap();
        assert!(
            log.starts_with("$ echo starting\nstarting\n") && log.ends_with("finished\n"),
            "incomplete log: {log:?}"
        );
    }
    wait_no_workers(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_log_streams_it_until_the_job_ends() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let (_, jobs) = submit(
        &c,
        json!({ "name": "f", "jobs": [job("ticker", &["for i in 1 2 3; do echo line $i; sleep 1; done"], &[])] }),
    )
    .await;
    let id = jobs[0].1;
    // Followed from a follower, from before the job has produced anything. The read is
    // linearizable: a local read on a follower that has not applied the submission yet is a
    // correct 404 (seen in CI).
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let follower = if leader == 2 { 3 } else { 2 };
    let url = c
        .node(follower)
        .url(&format!("/v1/jobs/{id}/logs?follow=true&consistency=linearizable"));
    let resp = c.new_client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap(); // returns only when the stream ends
    assert_eq!(
        text,
        "$ for i in 1 2 3; do echo line $i; sleep 1; done\nline 1\nline 2\nline 3\n"
    );
    let (_, j) = c.get(follower, &format!("/v1/jobs/{id}")).await;
    assert_eq!(j["state"], "SUCCEEDED", "the stream ended with the job: {j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_cannot_disturb_its_successor() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path()).await;
    let markers = dir.path().join("markers");
    let step = format!("sleep 4; echo $FLOTILLA_JOB_ID >> {}; echo finished", markers.display());
    let jobs: Vec<Value> = (0..4).map(|i| job(&format!("j{i}"), &[&step], &[])).collect();
    let (p, ids) = submit(&c, json!({ "name": "paused", "jobs": jobs })).await;
    c.wait_get(1, &format!("/v1/pipelines/{p}"), "all running", |_, v| {
        v["job_states"]
            .as_array()
            .is_some_and(|a| a.iter().all(|j| j["state"] == "RUNNING"))
    })
    .await;
    let old = c.wait_leader_among(&[1, 2, 3]).await;
    // Frozen longer than the election timeout: the others elect a new leader and finish the jobs.
    c.node_mut(old).pause(true);
    let rest: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let new = c.wait_leader_among(&rest).await;
    wait_pipeline(&c, new, p, "SUCCEEDED").await;
    // Resumed, the old leader learns of the new term and follows; its stale work is refused.
    c.node_mut(old).pause(false);
    c.wait_get(old, "/v1/cluster", "old leader follows", |_, v| {
        v["leader"].as_u64() == Some(new)
    })
    .await;
    c.wait_get(old, &format!("/v1/pipelines/{p}"), "old leader caught up", |_, v| {
        v["state"] == "SUCCEEDED"
    })
    .await;

    let mut ran: Vec<u64> = std::fs::read_to_string(&markers)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort();
    let mut expected: Vec<u64> = ids.iter().map(|(_, id)| *id).collect();
    expected.sort();
    assert_eq!(ran, expected, "each job ran exactly once");
    for (_, id) in &ids {
        let (_, j) = c.get(new, &format!("/v1/jobs/{id}?consistency=linearizable")).await;
        assert_eq!(
            (j["state"].as_str(), j["attempt"].as_u64()),
            (Some("SUCCEEDED"), Some(1)),
            "{j}"
        );
    }
    wait_no_workers(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_past_the_log_cap_is_not_sent_through_raft() {
    let dir = tempfile::tempdir().unwrap();
    let c = start(dir.path()).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let (s, got) = c.get(leader, "/v1/limits").await;
    assert_eq!(s, 200, "{got}");
    let mut limits = got["limits"].clone();
    limits["max_log_bytes_per_job"] = json!(65_536);
    let (s, v) = c.put(leader, "/v1/limits", limits).await;
    assert_eq!(s, 200, "{v}");
    let applied = |v: &Value| v["applied_index"].as_u64().unwrap();
    let before = applied(&c.get(leader, "/v1/cluster").await.1);
    // 8 MB of output: 122 chunks of 64 KiB, were they all proposed.
    let (pipeline, jobs) = submit(
        &c,
        json!({ "name": "loud", "jobs": [job("loud", &["head -c 8000000 /dev/zero | tr '\\0' x", "echo done"], &[])] }),
    )
    .await;
    wait_pipeline(&c, leader, pipeline, "SUCCEEDED").await;
    let after = applied(&c.get(leader, "/v1/cluster").await.1);
    let r = c
        .authorized(c.http.get(c.node(leader).url(&format!("/v1/jobs/{}/logs", jobs[0].1))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("log truncated at 65536 bytes"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    // The submission, placement, the worker's reports, the chunks that fill the log and a
    // few skips: dozens of entries at most, not one per chunk.
    eprintln!("{} entries for the job with 8 MB of output", after - before);
    assert!(after - before < 40, "{} entries for one job", after - before);
}

/// The whole log of `job` as `node` serves it (linearizable read).
async fn job_log(c: &Cluster, node: u64, job: u64) -> String {
    let url = c
        .node(node)
        .url(&format!("/v1/jobs/{job}/logs?consistency=linearizable"));
    let r = c.authorized(c.http.get(url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// Output lives on disk: megabytes kept under a tenant's cap (above the cluster's limit) are
/// served whole, from every node, in pages, and again by a node killed and restarted from a
/// snapshot that holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_of_output_under_a_tenants_cap_are_served_whole_by_every_node_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("workers").to_string_lossy().into_owned();
    let mut c = Cluster::start(
        3,
        &[
            "--process-work-dir",
            work.as_str(),
            "--leader-tick-ms",
            "100",
            "--snapshot-after-entries",
            "20",
        ],
    )
    .await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let (_, got) = c.get(leader, "/v1/limits").await;
    let mut limits = got["limits"].clone();
    limits["max_log_bytes_per_job"] = json!(65_536);
    let (s, v) = c.put(leader, "/v1/limits", limits).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .put(
            leader,
            "/v1/retention/default",
            json!({ "output_max_bytes_per_job": 3 << 20 }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // 1,988,895 bytes: past the 64 KiB limit, under the tenant's 3 MiB, two pages and more.
    let (pipeline, jobs) = submit(
        &c,
        json!({ "name": "loud", "jobs": [job("loud", &["seq 1 300000"], &[])] }),
    )
    .await;
    wait_pipeline(&c, leader, pipeline, "SUCCEEDED").await;
    let expected: String = (1..=300_000).map(|n| format!("{n}\n")).collect();
    let job = jobs[0].1;
    let first = job_log(&c, leader, job).await;
    assert!(
        first.contains(&expected),
        "{} bytes of log, truncated: {}",
        first.len(),
        first.contains("truncated")
    );
    assert!(!first.contains("log truncated"), "kept whole under the tenant's cap");
    for node in 1..=3 {
        assert!(job_log(&c, node, job).await == first, "node {node} serves another log");
    }
    c.wait_digests_agree(3, "after megabytes of output").await;
    // A follower killed and restarted: restored from a snapshot that holds the output.
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let finished_at = c.get(leader, "/v1/cluster").await.1["applied_index"].as_u64().unwrap();
    // Entries enough for the next snapshot (one every 20) to come after the output.
    for t in 0..25 {
        let quota = json!({ "cpu_millis": 1000, "memory_mib": 1024, "max_running_jobs": 1 });
        let (s, v) = c.put(leader, &format!("/v1/tenants/t{t}/quota"), quota).await;
        assert_eq!(s, 200, "{v}");
    }
    let snapshot = c
        .wait_get(follower, "/v1/cluster", "a snapshot after the job's output", |s, v| {
            s == 200 && v["snapshot_index"].as_u64() >= Some(finished_at)
        })
        .await;
    assert!(snapshot["snapshot_index"].as_u64().unwrap() >= finished_at);
    eprintln!(
        "{} bytes of output; the follower's snapshot at {}, the job finished by {finished_at}",
        first.len(),
        snapshot["snapshot_index"]
    );
    c.node_mut(follower).kill9();
    c.node_mut(follower).spawn();
    c.wait_http(follower).await;
    let again = c
        .wait_get(follower, "/v1/cluster", "the restarted follower caught up", |s, v| {
            s == 200 && v["applied_index"].as_u64() > Some(0)
        })
        .await;
    assert!(again["applied_index"].as_u64().unwrap() > 0);
    assert!(
        job_log(&c, follower, job).await == first,
        "the restarted follower serves another log"
    );
    c.wait_digests_agree(3, "after a follower restarted").await;
    wait_no_workers(dir.path()).await;
}

/// A follower down while tens of MiB of output are committed, and the log purged past it,
/// catches up from a snapshot that carries the output: the same digest, the same log. The
/// output's size is `FLOTILLA_CATCHUP_OUTPUT_MIB` (default 32; the measure, about
/// 1 GiB, is 1023 run by hand: a job keeps at most 1 GiB, its command line included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_while_output_was_committed_catches_up_from_a_snapshot_holding_it() {
    let mib: u64 = std::env::var("FLOTILLA_CATCHUP_OUTPUT_MIB").ok().map_or(32, |v| {
        v.parse().expect("FLOTILLA_CATCHUP_OUTPUT_MIB is a number of MiB")
    });
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("workers").to_string_lossy().into_owned();
    let args = [
        "--process-work-dir",
        work.as_str(),
        "--leader-tick-ms",
        "100",
        "--snapshot-after-entries",
        "50",
        "--log-entries-kept-after-snapshot",
        "5",
    ];
    let mut c = Cluster::start(3, &args).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let (s, v) = c
        .put(
            leader,
            "/v1/retention/default",
            json!({ "output_max_bytes_per_job": ((mib + 1) << 20).min(1 << 30) }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let lagging = (1..=3).find(|n| *n != leader).unwrap();
    c.node_mut(lagging).kill9();
    let started = Instant::now();
    let script = format!("head -c {} /dev/zero | tr '\\0' x", mib << 20);
    let (pipeline, jobs) = submit(
        &c,
        json!({ "name": "loud", "jobs": [job("loud", &[script.as_str()], &[])] }),
    )
    .await;
    // A second per MiB at least: the output goes through Raft in 256 KiB chunks.
    let deadline = started + Duration::from_secs(60.max(mib));
    loop {
        let (_, p) = c.get(leader, &format!("/v1/pipelines/{pipeline}")).await;
        if p["state"] == "SUCCEEDED" {
            break;
        }
        assert!(Instant::now() < deadline, "the loud pipeline did not succeed: {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let committed_s = started.elapsed().as_secs_f64();
    let log = job_log(&c, leader, jobs[0].1).await;
    assert!(
        log.len() as u64 > mib << 20 && !log.contains("truncated"),
        "{} bytes",
        log.len()
    );
    // Entries past the next snapshot, so the leader purges what the lagging node lacks.
    for t in 0..60 {
        let quota = json!({ "cpu_millis": 1000, "memory_mib": 1024, "max_running_jobs": 1 });
        let (s, v) = c.put(leader, &format!("/v1/tenants/t{t}/quota"), quota).await;
        assert_eq!(s, 200, "{v}");
    }
    let finished_at = c.get(leader, "/v1/cluster").await.1["applied_index"].as_u64().unwrap();
    c.wait_get(leader, "/v1/cluster", "log purged past the output", |_, v| {
        v["purged_index"].as_u64().unwrap_or(0) > finished_at.saturating_sub(60)
    })
    .await;
    let restarted = Instant::now();
    c.node_mut(lagging).spawn();
    c.wait_http(lagging).await;
    let status = c
        .wait_get(
            lagging,
            "/v1/cluster",
            "the lagging node installed a snapshot",
            |s, v| s == 200 && v["snapshot_index"].as_u64() >= Some(finished_at.saturating_sub(60)),
        )
        .await;
    c.wait_digests_agree(3, "after the lagging node caught up").await;
    let caught_up_s = restarted.elapsed().as_secs_f64();
    assert!(
        job_log(&c, lagging, jobs[0].1).await == log,
        "the caught-up node serves another log"
    );
    eprintln!(
        "{mib} MiB of output committed in {committed_s:.1} s; the lagging node caught up in {caught_up_s:.1} s \
         (snapshot at {})",
        status["snapshot_index"]
    );
    wait_no_workers(dir.path()).await;
}
