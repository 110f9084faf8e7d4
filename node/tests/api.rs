//! Bad input over REST: every case gets a 4xx with a JSON error naming the problem, nothing is
//! applied, and nothing answers 500.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_that_name_the_problem() {
    let c = Cluster::start(1, &[]).await;
    c.wait_leader_among(&[1]).await;
    c.register_pool(1).await;
    let http = &c.http;
    let url = c.node(1).url("/v1/pipelines");

    let send = |body: String, ct: &'static str| {
        let req = http.post(&url).header("content-type", ct).body(body);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.expect("error bodies are JSON");
            (status, v)
        }
    };
    let (s, v) = send("{\"name\": ".into(), "application/json").await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("malformed_json")), "{v}");

    let mut unknown = pipeline("x");
    unknown["jobs"][0]["bogus"] = json!(1);
    let (s, v) = send(unknown.to_string(), "application/json").await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["field"], "jobs[0].bogus", "{v}");

    let mut wrong_type = pipeline("x");
    wrong_type["jobs"][0]["resources"]["cpu_millis"] = json!("lots");
    let (s, v) = send(wrong_type.to_string(), "application/json").await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("jobs[0].resources.cpu_millis")),
        "{v}"
    );

    let mut negative = pipeline("x");
    negative["jobs"][0]["resources"]["memory_mib"] = json!(-5);
    let (s, v) = send(negative.to_string(), "application/json").await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("jobs[0].resources.memory_mib")),
        "{v}"
    );

    let mut cycle = pipeline("x");
    cycle["jobs"] = json!([
        { "name": "a", "steps": ["true"], "needs": ["b"], "resources": { "cpu_millis": 1, "memory_mib": 1 } },
        { "name": "b", "steps": ["true"], "needs": ["a"], "resources": { "cpu_millis": 1, "memory_mib": 1 } }
    ]);
    let (s, v) = send(cycle.to_string(), "application/json").await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("jobs")), "{v}");

    let mut huge = pipeline("x");
    huge["jobs"][0]["resources"]["cpu_millis"] = json!(1_000_000);
    let (s, v) = send(huge.to_string(), "application/json").await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("jobs[build]")), "{v}");

    let (s, v) = send("name: x".into(), "text/plain").await;
    assert_eq!((s, v["error"]["field"].as_str()), (415, Some("Content-Type")), "{v}");

    // Its own client: the server answers 413 without reading the body and closes that
    // connection, which a pooled client could otherwise pick for the next request.
    let oversize = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = c
        .new_client()
        .post(&url)
        .header("content-type", "application/json")
        .body(oversize)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let v: serde_json::Value = r.json().await.expect("error bodies are JSON");
    assert_eq!(s, 413, "{v}");

    for (path, status) in [
        ("/v1/pipelines/999", 404),
        ("/v1/jobs/999", 404),
        ("/v1/jobs/abc", 400),
        ("/v1/pipelines?limit=0", 400),
        ("/v1/pipelines?consistency=eventual", 400),
        ("/v1/pipelines?nonsense=1", 400),
        ("/v1/jobs?state=SLEEPING", 400),
        ("/v1/nope", 404),
    ] {
        let (s, v) = c.get(1, path).await;
        assert_eq!(s, status, "{path}: {v}");
        assert!(v["error"]["message"].is_string(), "{path}: {v}");
    }
    let (s, v) = c.post(1, "/v1/jobs/999/cancel", json!({})).await;
    assert_eq!(s, 404, "{v}");

    // None of the above was applied.
    let (_, list) = c.get(1, "/v1/pipelines").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_pipelines_are_accepted_and_their_errors_name_field_and_line() {
    let c = Cluster::start(1, &[]).await;
    c.wait_leader_among(&[1]).await;
    c.register_pool(1).await;
    let url = c.node(1).url("/v1/pipelines");
    let send = |body: &'static str| {
        let req = c.http.post(&url).header("content-type", "application/yaml").body(body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let ok = "name: y\njobs:\n  - name: a\n    steps: [echo hi]\n    resources: { cpu_millis: 10, memory_mib: 10 }\n";
    let (s, v) = send(ok).await;
    assert_eq!(s, 201, "{v}");
    // `if: false` is a bare boolean in YAML: taken as the condition, the job skipped.
    let off = "name: off\njobs:\n  - name: a\n    if: false\n    steps: [echo hi]\n    resources: { cpu_millis: 10, memory_mib: 10 }\n";
    let (s, v) = send(off).await;
    assert_eq!(s, 201, "{v}");
    let job = v["jobs"][0]["id"].as_u64().unwrap();
    let (_, j) = c.get(1, &format!("/v1/jobs/{job}")).await;
    assert_eq!(
        (j["state"].as_str(), j["spec"]["if"].as_str()),
        (Some("SKIPPED"), Some("false")),
        "{j}"
    );

    let unknown =
        "name: y\njobs:\n  - name: a\n    stepz: [echo hi]\n    resources: { cpu_millis: 10, memory_mib: 10 }\n";
    let (s, v) = send(unknown).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("jobs[0].stepz")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("line 4"), "{v}");

    let wrong =
        "name: y\njobs:\n  - name: a\n    steps: [echo hi]\n    resources: { cpu_millis: lots, memory_mib: 10 }\n";
    let (s, v) = send(wrong).await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("jobs[0].resources.cpu_millis")),
        "{v}"
    );

    let (s, v) = send("name: y\njobs: [\n").await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("malformed_yaml")), "{v}");

    // Errors found by validation (not by parsing) also point at the line, through aliases
    // and matrix expansion.
    let zero_cpu = "name: y\njobs:\n  - name: a\n    script: [echo hi]\n    resources:\n      cpu_millis: 0\n      memory_mib: 10\n";
    let (s, v) = send(zero_cpu).await;
    assert_eq!(
        (s, v["error"]["field"].as_str(), v["error"]["line"].as_u64()),
        (422, Some("jobs[a].resources.cpu_millis"), Some(6)),
        "{v}"
    );
    let bad_need = "name: y\njobs:\n  - name: t\n    matrix: { os: [linux, bsd] }\n    script: [echo $os]\n    resources: { cpu_millis: 10, memory_mib: 10 }\n    needs: [nope]\n";
    let (s, v) = send(bad_need).await;
    assert_eq!(
        (s, v["error"]["field"].as_str(), v["error"]["line"].as_u64()),
        (422, Some("jobs[t-linux].needs"), Some(7)),
        "{v}"
    );
    assert!(v["error"]["message"].as_str().unwrap().ends_with("(line 7)"), "{v}");
    let empty_axis = "name: y\njobs:\n  - name: t\n    matrix:\n      os: []\n    script: [echo $os]\n    resources: { cpu_millis: 10, memory_mib: 10 }\n";
    let (s, v) = send(empty_axis).await;
    assert_eq!(
        (s, v["error"]["field"].as_str(), v["error"]["line"].as_u64()),
        (422, Some("jobs[t].matrix.os"), Some(5)),
        "{v}"
    );

    let matrix = "name: m\njobs:\n  - name: t\n    matrix: { os: [linux, bsd] }\n    script: [echo $os]\n    timeout: 5m\n    resources: { cpu_millis: 10, memory_mib: 10 }\n";
    let (s, v) = send(matrix).await;
    assert_eq!(s, 201, "{v}");
    let names: Vec<&str> = v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t-linux", "t-bsd"]);
}

/// With `--max-concurrent-requests 1`, a request that waits (a write with no leader to take it)
/// holds the only slot: every other request is shed at once with 429, a JSON error and
/// `Retry-After`, and the node serves again as soon as the slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_429_and_retry_after() {
    // No cluster is formed, so no token exists: the gate would refuse the write at once
    // instead of letting it wait for a leader. Overload shedding is the same either way.
    let c = Cluster::spawn(1, &["--max-concurrent-requests", "1", "--auth", "none"]).await;
    let url = c.node(1).url("/v1/pipelines");
    let live = c.node(1).url("/v1/health/live");
    let mut shed = None;
    let mut slow = None;
    // The write and the probes race for the one slot: a write that lost (shed itself) is sent
    // again, a bounded number of times.
    for _ in 0..20 {
        let write = tokio::spawn(c.http.post(&url).json(&pipeline("waits")).send());
        while !write.is_finished() {
            let r = c.http.get(&live).send().await.unwrap();
            if r.status().as_u16() == 429 {
                let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                let body: serde_json::Value = r.json().await.expect("429 bodies are JSON");
                shed = Some((retry_after, body));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if shed.is_some() {
            slow = Some(write);
            break;
        }
    }
    let slow = slow.expect("the write never held the only slot");
    let (retry_after, body) = shed.expect("no request was shed while the only slot was taken");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], "overloaded", "{body}");

    let waited = slow.await.unwrap().unwrap();
    let status = waited.status().as_u16();
    assert!(
        status == 503 || status == 504,
        "a write with no cluster is refused as unavailable, got {status}"
    );
    let r = c.http.get(&live).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the node serves again once the slot is free");
}
