//! The served OpenAPI document matches the router, and its body schemas match the domain types.

mod common;
use common::*;
use flotilla_state_machine::{JobSpec, PipelineSpec, PoolSpec, ProviderKind, Resources, RetryPolicy};
use serde_json::Value;
use std::collections::BTreeSet;

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_matches_routes_and_domain_types() {
    let c = Cluster::start(1, &[]).await;
    let (status, doc) = c.get(1, "/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.to_uppercase()))
        })
        .filter(|(_, m)| ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&m.as_str()))
        .collect();
    let routed: BTreeSet<(String, String)> = flotilla_node::api::route_table()
        .into_iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(documented, routed, "documented vs routed (path, method)");

    // The pipeline body is documented in both formats the server takes.
    let submit_types = keys(&doc["paths"]["/v1/pipelines"]["post"]["requestBody"]["content"]);
    assert_eq!(
        submit_types,
        BTreeSet::from(["application/json".to_string(), "application/yaml".to_string()])
    );

    // Every documented GET without parameters answers from the router, not the fallback.
    for (path, method) in &documented {
        if method == "GET" && !path.contains('{') {
            let (s, v) = c.get(1, path).await;
            assert!(s == 200 || s == 503, "{path}: {s} {v}");
        }
    }

    // Body schemas have exactly the fields the domain serializes.
    let schemas = &doc["components"]["schemas"];
    let mut job = JobSpec::simple("a", "true", Resources::new(1, 1, 0));
    job.image = Some("x".into());
    job.retry = RetryPolicy {
        max_retries: 1,
        backoff_base_ms: 1,
        backoff_max_ms: 1,
    };
    let pipeline = PipelineSpec {
        name: "p".into(),
        jobs: vec![job.clone()],
    };
    let pool = PoolSpec {
        name: "p".into(),
        provider: ProviderKind::Process,
        capacity: Resources::new(1, 1, 0),
        max_workers: 1,
        labels: Default::default(),
        settings: Default::default(),
    };
    for (name, value) in [
        ("PipelineSpec", serde_json::to_value(&pipeline).unwrap()),
        ("JobSpec", serde_json::to_value(&job).unwrap()),
        ("Resources", serde_json::to_value(Resources::new(1, 1, 1)).unwrap()),
        ("RetryPolicy", serde_json::to_value(job.retry).unwrap()),
        ("PoolSpec", serde_json::to_value(&pool).unwrap()),
        (
            "RetentionPolicy",
            serde_json::to_value(flotilla_state_machine::retention::RetentionPolicy::default()).unwrap(),
        ),
    ] {
        let props = &schemas[name]["properties"];
        assert!(props.is_object(), "schema {name} missing: {schemas}");
        assert_eq!(keys(props), keys(&value), "schema {name} drifted from the domain type");
    }
}
