//! `--auth tokens`: every route of the route table called with no token, an unknown one, and a
//! token of each role; what each may do is what the table declares. Revocation and expiry
//! take effect on every node; secrets are shown once and never listed.

mod common;
use common::*;
use flotilla_node::auth::Permission;
use flotilla_state_machine::Role;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A request to `path` (its `{id}` a number no object has) with a body that fails validation
/// after the gate, so no call changes the cluster: the status says only what the gate did.
fn request(
    c: &Cluster,
    node: u64,
    method: &axum::http::Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let url = c.node(node).url(&path.replace("{id}", "987654"));
    let builder = match *method {
        axum::http::Method::GET => c.http.get(url),
        axum::http::Method::POST => c.http.post(url).header("content-type", "application/json").body("{}"),
        axum::http::Method::DELETE => c.http.delete(url),
        ref other => panic!("no test request for {other}"),
    };
    let builder = builder.timeout(Duration::from_secs(10));
    match token {
        Some(t) => builder.bearer_auth(t),
        None => builder,
    }
}

async fn status(c: &Cluster, node: u64, method: &axum::http::Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let r = request(c, node, method, path, token)
        .send()
        .await
        .expect("the node answers");
    let status = r.status().as_u16();
    // An event stream answers 200 and goes on: its headers are enough.
    if path == "/v1/events" && status == 200 {
        return (status, Value::Null);
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn create_token(c: &Cluster, role: Role, ttl_ms: Option<u64>) -> String {
    let mut body = json!({ "name": format!("test-{role}"), "role": role.name() });
    if let Some(ttl) = ttl_ms {
        body["ttl_ms"] = json!(ttl);
    }
    let (s, v) = c.post(1, "/v1/tokens", body).await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().expect("the secret, once").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_admits_the_roles_its_table_entry_names_and_no_others() {
    let c = Cluster::start(3, &["--auth", "tokens"]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let routes = flotilla_node::api::route_permissions();
    let fake = "flt_0000000000000000000000000000000000000000000000000000000000000000";
    for (path, method, permission) in &routes {
        let (none, body) = status(&c, leader, method, path, None).await;
        let (unknown, _) = status(&c, leader, method, path, Some(fake)).await;
        if *permission == Permission::Public {
            assert!(
                ![401, 403].contains(&none),
                "{method} {path} is public but answered {none}: {body}"
            );
        } else {
            assert_eq!(none, 401, "{method} {path} without a token: {body}");
            assert_eq!(body["error"]["code"], "unauthenticated", "{method} {path}: {body}");
            assert_eq!(unknown, 401, "{method} {path} with an unknown token");
        }
    }
    for role in Role::ALL {
        let token = create_token(&c, role, None).await;
        for (path, method, permission) in &routes {
            let (s, body) = status(&c, leader, method, path, Some(&token)).await;
            if permission.admits(role) {
                assert!(![401, 403].contains(&s), "{role} on {method} {path}: {s} {body}");
            } else {
                assert_eq!(s, 403, "{role} on {method} {path}: {body}");
                assert_eq!(body["error"]["code"], "forbidden", "{body}");
            }
        }
    }
    // The document says the same as the table.
    let (_, doc) = c.get(leader, "/v1/openapi.json").await;
    for (path, method, permission) in &routes {
        let op = &doc["paths"][path][method.as_str().to_lowercase()];
        assert_eq!(
            op["security"].is_array(),
            *permission != Permission::Public,
            "{method} {path}: {op}"
        );
    }
}

/// The status of GET /v1/pools on `node` with `token`, asked until it is `wanted` (10 s at most):
/// a node applies a token's creation or revocation a moment after the leader.
async fn pools_status_until(c: &Cluster, node: u64, token: &str, wanted: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = status(c, node, &axum::http::Method::GET, "/v1/pools", Some(token))
            .await
            .0;
        if seen == wanted || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_expired_token_is_refused_on_every_node_and_no_secret_is_listed() {
    let c = Cluster::start(3, &["--auth", "tokens"]).await;
    c.wait_leader_among(&[1, 2, 3]).await;
    let viewer = create_token(&c, Role::Viewer, None).await;
    let brief = create_token(&c, Role::Viewer, Some(1_500)).await;
    for node in 1..=3 {
        assert_eq!(
            pools_status_until(&c, node, &viewer, 200).await,
            200,
            "node {node} never accepted the new token"
        );
    }
    let (_, listed) = c.get(1, "/v1/tokens").await;
    let text = listed.to_string();
    assert!(
        !text.contains(&viewer[4..]) && !text.contains(&brief[4..]) && !text.contains(&c.token.get().unwrap()[4..])
    );
    let id = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "test-viewer" && t["expires_at_ms"].is_null())
        .and_then(|t| t["id"].as_str())
        .expect("the viewer token is listed")
        .to_string();
    let r = c
        .authorized(c.http.delete(c.node(1).url(&format!("/v1/tokens/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for node in 1..=3 {
        assert_eq!(
            pools_status_until(&c, node, &viewer, 401).await,
            401,
            "node {node} still accepts the revoked token"
        );
    }
    // The brief token lapses by the cluster's clock.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (s, body) = status(&c, 2, &axum::http::Method::GET, "/v1/pools", Some(&brief)).await;
    assert_eq!(s, 401, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap_or("").contains("expired"),
        "{body}"
    );
    // Bootstrap was done by init: never again.
    let (s, body) = c.post(1, "/v1/tokens/bootstrap", json!({})).await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "already_bootstrapped");
}
