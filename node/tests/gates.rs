//! Manual gates and `if` conditions over the API: a manual job waits in AWAITING_APPROVAL
//! until a caller of the right role approves it (refused before its needs succeeded, and for
//! a viewer, a lesser role than its `approval_role`, or another tenant's token); a job whose
//! condition is false, and what needs it, are SKIPPED with the reason.

mod common;
use common::*;
use serde_json::{Value, json};

async fn token(c: &Cluster, name: &str, role: &str, tenants: &[&str]) -> String {
    let (s, v) = c
        .post(
            1,
            "/v1/tokens",
            json!({ "name": name, "role": role, "tenants": tenants }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

async fn approve(c: &Cluster, job: u64, token: &str) -> (u16, Value) {
    let r = c
        .anonymous
        .post(c.node(1).url(&format!("/v1/jobs/{job}/approve")))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn job_in(c: &Cluster, job: u64, state: &str) -> Value {
    c.wait_get(1, &format!("/v1/jobs/{job}"), state, |s, v| {
        s == 200 && v["state"] == state
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_job_runs_once_approved_and_false_conditions_skip() {
    let c = Cluster::start(1, &[]).await;
    c.register_pool(1).await;
    let go = c.dir().join("go");
    let wait_for_go = format!(
        "for i in $(seq 300); do [ -f {} ] && exit 0; sleep 0.1; done; exit 1",
        go.display()
    );
    let spec = json!({ "name": "release", "jobs": [
        job_spec("build", json!({ "steps": [wait_for_go] })),
        job_spec("deploy", json!({ "needs": ["build"], "manual": true, "env": { "TARGET": "prod" },
            "if": "$TARGET == \"prod\" && $FLOTILLA_TAG == null", "steps": ["echo deployed to $TARGET"] })),
        job_spec("prod", json!({ "needs": ["deploy"], "manual": true, "approval_role": "operator" })),
        job_spec("docs", json!({ "needs": ["build"], "if": "$FLOTILLA_BRANCH =~ \"main\"" })),
        job_spec("announce", json!({ "needs": ["docs"] })),
    ]});
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let pipeline = v["pipeline"].as_u64().unwrap();
    let id = |name: &str| {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == name)
            .and_then(|j| j["id"].as_u64())
            .unwrap()
    };
    let (build, deploy, prod, docs, announce) = (id("build"), id("deploy"), id("prod"), id("docs"), id("announce"));

    // Skipped at once, each with its reason.
    let d = job_in(&c, docs, "SKIPPED").await;
    assert_eq!(
        d["gate"]["skipped"]["reason"], "if: $FLOTILLA_BRANCH =~ \"main\" is false",
        "{d}"
    );
    let a = job_in(&c, announce, "SKIPPED").await;
    assert_eq!(a["gate"]["skipped"]["reason"], "needs docs, which was skipped", "{a}");
    job_in(&c, deploy, "AWAITING_APPROVAL").await;
    let (_, why) = c.get(1, &format!("/v1/jobs/{deploy}/why-pending")).await;
    assert!(why["summary"].as_str().unwrap().contains("approve"), "{why}");

    let submitter = token(&c, "release-manager", "submitter", &["default"]).await;
    let viewer = token(&c, "auditor", "viewer", &[]).await;
    let stranger = token(&c, "other-team", "submitter", &["other"]).await;
    let operator = token(&c, "on-call", "operator", &[]).await;

    // Not before its needs succeeded.
    let (s, v) = approve(&c, deploy, &submitter).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("needs build"), "{v}");
    std::fs::write(&go, "").unwrap();
    job_in(&c, build, "SUCCEEDED").await;

    let (s, v) = approve(&c, deploy, &viewer).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = approve(&c, deploy, &stranger).await;
    assert_eq!(s, 404, "another tenant's job answers as none: {v}");
    let (s, v) = approve(&c, deploy, &submitter).await;
    assert_eq!((s, &v), (200, &json!({ "approved": deploy, "by": "release-manager" })));
    let (s, v) = approve(&c, deploy, &operator).await;
    assert_eq!(
        v["by"], "release-manager",
        "a repeated approval answers as the first: {s} {v}"
    );

    let d = job_in(&c, deploy, "SUCCEEDED").await;
    assert_eq!(d["gate"]["approved"]["by"], "release-manager", "{d}");
    let text = c.get_text(1, &format!("/v1/jobs/{deploy}/logs")).await;
    assert!(text.contains("deployed to prod"), "{text}");

    // `approval_role: operator` asks for more than a submitter.
    job_in(&c, prod, "AWAITING_APPROVAL").await;
    let (s, v) = approve(&c, prod, &submitter).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("operator"), "{v}");
    let (s, v) = approve(&c, prod, &operator).await;
    assert_eq!(s, 200, "{v}");
    job_in(&c, prod, "SUCCEEDED").await;
    let p = c
        .wait_get(1, &format!("/v1/pipelines/{pipeline}"), "settled", |s, v| {
            s == 200 && v["state"] != "RUNNING"
        })
        .await;
    assert_eq!(p["state"], "SUCCEEDED", "skipped jobs do not fail a pipeline: {p}");

    // A job that is not manual is not approved; an unknown one is not found.
    let (s, v) = approve(&c, build, &operator).await;
    assert_eq!(s, 409, "{v}");
    let (s, _) = approve(&c, 999_999, &operator).await;
    assert_eq!(s, 404);

    // A malformed condition is refused naming the field.
    let bad = json!({ "name": "bad", "jobs": [job_spec("a", json!({ "if": "$A == main" }))] });
    let (s, v) = c.post(1, "/v1/pipelines", bad).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("jobs[a].if")), "{v}");
}
