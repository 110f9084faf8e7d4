//! A pool whose provider the leader does not have: registering it warns, `GET /v1/pools` says
//! why its jobs do not run, and those jobs still fail at their timeouts instead of waiting
//! forever with their capacity held.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_the_leader_cannot_drive_is_shown_and_its_jobs_time_out() {
    // No node has a Docker socket.
    let c = Cluster::start(1, &[]).await;
    c.wait_leader_among(&[1]).await;
    let pool = json!({ "name": "containers", "provider": "docker", "capacity": { "cpu_millis": 1000, "memory_mib": 1024 }, "max_workers": 2 });
    let (s, v) = c.post(1, "/v1/pools", pool).await;
    assert_eq!(s, 201, "{v}");
    let warning = v["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("no docker provider"), "{v}");

    let pools = c
        .wait_get(1, "/v1/pools", "the pool's problem recorded", |s, v| {
            s == 200
                && v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["problem"].is_string())
        })
        .await;
    let problem = pools["items"][0]["problem"].as_str().unwrap_or_default().to_string();
    assert!(
        problem.contains("the leader (node 1) has no docker provider"),
        "{pools}"
    );

    let spec = json!({ "name": "img", "jobs": [{ "name": "a", "image": "flotilla-test/busybox:1", "steps": ["true"], "timeout": "2s",
        "resources": { "cpu_millis": 100, "memory_mib": 64 } }] });
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let job = v["jobs"][0]["id"].as_u64().unwrap();
    let j = c
        .wait_get(
            1,
            &format!("/v1/jobs/{job}"),
            "the job to fail at its timeout",
            |_, v| v["state"] == "FAILED",
        )
        .await;
    assert_eq!(j["failure"], "timeout", "{j}");
}

/// The operators' and admins' changes, each sent to a follower and redirected to the leader:
/// a pool drained and removed, a tenant's quota set and lifted, the limits changed (and a
/// change past a ceiling refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_are_drained_and_removed_quotas_and_limits_are_set_through_any_node() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.register_pool(leader).await;

    let (s, v) = c.post(follower, "/v1/pools/main/drain", json!({})).await;
    assert_eq!((s, v["draining"].as_bool()), (200, Some(true)), "{v}");
    let (_, pools) = c.get(leader, "/v1/pools").await;
    assert_eq!(pools["items"][0]["draining"], true, "{pools}");
    let (s, v) = c
        .post(follower, "/v1/pools/main/drain", json!({ "draining": false }))
        .await;
    assert_eq!((s, v["changed"].as_bool()), (200, Some(true)), "{v}");
    let (s, v) = c.post(follower, "/v1/pools/nope/drain", json!({})).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = c.delete(follower, "/v1/pools/main").await;
    assert_eq!(s, 200, "{v}");
    let (_, pools) = c.get(leader, "/v1/pools").await;
    assert_eq!(pools["items"].as_array().map(Vec::len), Some(0), "{pools}");
    let (s, _) = c.delete(follower, "/v1/pools/main").await;
    assert_eq!(s, 404);

    let quota = json!({ "cpu_millis": 2000, "memory_mib": 1024, "max_running_jobs": 3 });
    let (s, v) = c.put(follower, "/v1/tenants/web/quota", quota).await;
    assert_eq!(s, 200, "{v}");
    let (_, tenants) = c.get(leader, "/v1/tenants?consistency=linearizable").await;
    let web = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "web")
        .cloned()
        .unwrap_or_else(|| panic!("{tenants}"));
    assert_eq!(web["quota"]["max_running_jobs"], 3, "{web}");
    let (s, v) = c
        .put(follower, "/v1/tenants/web/quota", json!({ "cpu_millis": 1 }))
        .await;
    assert_eq!(s, 422, "a quota names every dimension: {v}");
    // A priority ceiling: a submission into the tenant asking more is refused, naming the
    // job's priority; one at the ceiling goes through.
    let ceiling = json!({ "cpu_millis": 2000, "memory_mib": 1024, "max_running_jobs": 3, "max_priority": 5 });
    let (s, v) = c.put(follower, "/v1/tenants/web/quota", ceiling).await;
    assert_eq!(s, 200, "{v}");
    c.register_pool(leader).await;
    let with_priority =
        |priority: i32| json!({ "name": "urgent", "jobs": [job_spec("rush", json!({ "priority": priority }))] });
    let (s, v) = c
        .post_with(
            follower,
            "/v1/pipelines",
            with_priority(6),
            &[("X-Flotilla-Tenant", "web")],
        )
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (422, Some("jobs[rush].priority")),
        "{v}"
    );
    let (s, v) = c
        .post_with(
            follower,
            "/v1/pipelines",
            with_priority(5),
            &[("X-Flotilla-Tenant", "web")],
        )
        .await;
    assert_eq!(s, 201, "at the ceiling: {v}");
    let (s, v) = c
        .put(
            follower,
            "/v1/tenants/web/quota",
            json!({ "cpu_millis": 1, "memory_mib": 1, "max_running_jobs": 1, "max_priority": 2_000_000 }),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("max_priority")), "{v}");
    let (s, v) = c.delete(follower, "/v1/tenants/web/quota").await;
    assert_eq!((s, v["quota"].is_null()), (200, true), "{v}");

    let (s, got) = c.get(follower, "/v1/limits").await;
    assert_eq!(s, 200, "{got}");
    let mut limits = got["limits"].clone();
    limits["max_jobs_per_pipeline"] = json!(2);
    let (s, v) = c.put(follower, "/v1/limits", limits.clone()).await;
    assert_eq!(s, 200, "{v}");
    let three = json!({ "name": "three", "jobs": [
        job_spec("a", json!({})), job_spec("b", json!({})), job_spec("c", json!({})) ] });
    let (s, v) = c.post(leader, "/v1/pipelines", three).await;
    assert_eq!(s, 422, "past the new limit: {v}");
    limits["max_jobs_per_pipeline"] = json!(u64::MAX);
    let (s, v) = c.put(follower, "/v1/limits", limits).await;
    assert_eq!(s, 422, "past the ceiling: {v}");
}
