//! Re-runs over the API and the CLI: a failed pipeline run again whole or only its failed
//! part, linked to the first run; refused while it runs and when nothing failed.

mod common;
use common::*;
use serde_json::{Value, json};

async fn settled(c: &Cluster, pipeline: u64) -> Value {
    c.wait_get(
        1,
        &format!("/v1/pipelines/{pipeline}"),
        "the pipeline settled",
        |s, v| s == 200 && v["state"] != "RUNNING",
    )
    .await
}

fn job_names(v: &Value) -> Vec<String> {
    v["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_pipeline_reruns_whole_or_only_its_failed_part() {
    let c = Cluster::start(1, &[]).await;
    c.register_pool(1).await;
    let spec = json!({ "name": "ci", "jobs": [
        job_spec("build", json!({})),
        job_spec("test", json!({ "needs": ["build"], "steps": ["exit 3"] })),
        job_spec("deploy", json!({ "needs": ["test"] })),
        job_spec("lint", json!({ "steps": ["sleep 2"] })),
    ]});
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let first = v["pipeline"].as_u64().unwrap();

    // Still running (lint sleeps): nothing to re-run yet.
    let (s, v) = c.post(1, &format!("/v1/pipelines/{first}/rerun"), json!({})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("not_rerunnable")), "{v}");
    assert_eq!(settled(&c, first).await["state"], "FAILED");

    let (s, v) = c
        .post(
            1,
            &format!("/v1/pipelines/{first}/rerun"),
            json!({ "failed_only": true }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(job_names(&v), ["test", "deploy"]);
    let part = v["pipeline"].as_u64().unwrap();
    let (_, p) = c.get(1, &format!("/v1/pipelines/{part}")).await;
    assert_eq!(p["rerun_of"].as_u64(), Some(first), "{p}");

    let (s, v) = c.post(1, &format!("/v1/pipelines/{first}/rerun"), json!({})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(job_names(&v), ["build", "test", "deploy", "lint"]);

    // Unknown ids and bad bodies get clear errors.
    let (s, _) = c.post(1, "/v1/pipelines/999/rerun", json!({})).await;
    assert_eq!(s, 404);
    let (s, v) = c
        .post(1, &format!("/v1/pipelines/{first}/rerun"), json!({ "failed": true }))
        .await;
    assert!(s == 422 || s == 400, "{s} {v}");

    // A pipeline whose jobs all succeeded has no failed part.
    let (_, v) = c.submit(1, "fine", None).await;
    let fine = v["pipeline"].as_u64().unwrap();
    assert_eq!(settled(&c, fine).await["state"], "SUCCEEDED");
    let (s, v) = c
        .post(
            1,
            &format!("/v1/pipelines/{fine}/rerun"),
            json!({ "failed_only": true }),
        )
        .await;
    assert_eq!(s, 409, "{v}");
}
