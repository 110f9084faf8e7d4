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
        axum::http::Method::GET => c.anonymous.get(url),
        axum::http::Method::POST => c
            .anonymous
            .post(url)
            .header("content-type", "application/json")
            .body("{}"),
        axum::http::Method::DELETE => c.anonymous.delete(url),
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
    // Formed by hand: the first admin token is the one init hands out.
    let c = Cluster::start_with(3, &["--auth", "tokens"], AdminToken::FromInit).await;
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

/// As the deployments form a cluster: node 1 founds it at start, nodes 2 and 3 join through
/// it, all given the same pre-shared admin token. The token is the cluster's first, works on
/// every node, and is what joining and founding by hand ask for; bootstrap is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preshared_admin_token_founds_joins_and_is_the_only_way_in() {
    let c = Cluster::spawn(3, &["--auth", "tokens"]).await;
    let first_api = c.node(1).api_addr.clone();
    // A node that knows no token yet says so, rather than call the token unknown.
    let (s, body) = c.get(1, "/v1/pools").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (503, Some("no_tokens_yet")),
        "{body}"
    );
    // Node 1 has no cluster yet: founding by hand asks for the token.
    let (s, body) = status(&c, 1, &axum::http::Method::POST, "/v1/cluster/init", None).await;
    assert_eq!(s, 401, "init without the pre-shared token: {body}");
    let (s, body) = c.post(1, "/v1/cluster/init", json!({})).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["admin_token_preshared"], true, "{body}");
    assert!(
        body["admin_token"].is_null(),
        "the caller holds it; it is not shown again: {body}"
    );
    // Joining nodes present the token (`--join`); an anonymous add is refused.
    let add = json!({ "id": 2, "raft_addr": c.node(2).raft_addr, "api_addr": c.node(2).api_addr });
    let anonymous = c
        .anonymous
        .post(format!("http://{first_api}/v1/cluster/members"))
        .json(&add)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    for id in 2..=3 {
        let (s, body) = c
            .post(
                1,
                "/v1/cluster/members",
                json!({ "id": id, "raft_addr": c.node(id).raft_addr, "api_addr": c.node(id).api_addr }),
            )
            .await;
        assert!(s == 201 || s == 200, "add {id}: {s} {body}");
    }
    // The first token is the pre-shared one: an admin on every node.
    for node in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, listed) = c.get(node, "/v1/tokens").await;
            if s == 200 {
                let names: Vec<&str> = listed["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|t| t["name"].as_str())
                    .collect();
                assert_eq!(names, ["bootstrap-admin"], "{listed}");
                break;
            }
            assert!(Instant::now() < deadline, "node {node}: {s} {listed}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (s, body) = c.post(2, "/v1/tokens/bootstrap", json!({})).await;
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "preshared", "{body}");
}

/// A cluster founded at start (`--bootstrap`) has no init answer: its leader makes the
/// pre-shared token the first one, and the nodes given `--join` present it to be added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_founded_at_start_join_with_the_preshared_token() {
    let mut c = Cluster::spawn(3, &["--auth", "tokens"]).await;
    let base = c.node(1).extra_args.clone();
    let peers = format!("{},{}", c.node(2).api_addr, c.node(3).api_addr);
    let seed = format!("http://{}", c.node(1).api_addr);
    for id in 1..=3 {
        let node = c.node_mut(id);
        node.kill9();
        let _ = std::fs::remove_dir_all(&node.data_dir);
        node.extra_args = base.clone();
        if id == 1 {
            node.extra_args
                .extend(["--bootstrap".into(), "--bootstrap-peers".into(), peers.clone()]);
        } else {
            node.extra_args.extend(["--join".into(), seed.clone()]);
        }
        node.spawn();
    }
    for id in 1..=3 {
        c.wait_http(id).await;
    }
    c.wait_get(1, "/v1/cluster", "three voters", |_, v| {
        v["members"]
            .as_array()
            .is_some_and(|m| m.iter().filter(|m| m["voter"] == true).count() == 3)
    })
    .await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.wait_get(leader, "/v1/tokens", "the pre-shared token committed", |s, v| {
        s == 200 && v["items"][0]["name"] == "bootstrap-admin"
    })
    .await;
    let (s, _) = status(&c, leader, &axum::http::Method::GET, "/v1/pools", None).await;
    assert_eq!(s, 401);
}
