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
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("jobs[0].resources.cpu_millis")), "{v}");

    let mut negative = pipeline("x");
    negative["jobs"][0]["resources"]["memory_mib"] = json!(-5);
    let (s, v) = send(negative.to_string(), "application/json").await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("jobs[0].resources.memory_mib")), "{v}");

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
    let r = reqwest::Client::new().post(&url).header("content-type", "application/json").body(oversize).send().await.unwrap();
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

    let unknown = "name: y\njobs:\n  - name: a\n    stepz: [echo hi]\n    resources: { cpu_millis: 10, memory_mib: 10 }\n";
    let (s, v) = send(unknown).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("jobs[0].stepz")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("line 4"), "{v}");

    let wrong = "name: y\njobs:\n  - name: a\n    steps: [echo hi]\n    resources: { cpu_millis: lots, memory_mib: 10 }\n";
    let (s, v) = send(wrong).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("jobs[0].resources.cpu_millis")), "{v}");

    let (s, v) = send("name: y\njobs: [\n").await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("malformed_yaml")), "{v}");
}
