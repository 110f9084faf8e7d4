//! `--auth tokens`: every route of the route table called with no token, an unknown one, and a
//! token of each role; what each may do is what the table declares. Revocation and expiry
//! take effect on every node; secrets are shown once and never listed.

mod common;
#[path = "common/sse.rs"]
mod sse;

use common::*;
use flotilla_node::auth::Permission;
use flotilla_state_machine::Role;
use serde_json::{Value, json};
use sse::SseReader;
use std::time::{Duration, Instant};

/// A request to `path` (its `{id}` a number no object has, its `{name}` a name none has) with a body that fails validation
/// after the gate, so no call changes the cluster: the status says only what the gate did.
fn request(
    c: &Cluster,
    node: u64,
    method: &axum::http::Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let url = c
        .node(node)
        .url(&path.replace("{id}", "987654").replace("{name}", "no-such-name"));
    let builder = match *method {
        axum::http::Method::GET => c.anonymous.get(url),
        axum::http::Method::POST => c
            .anonymous
            .post(url)
            .header("content-type", "application/json")
            .body("{}"),
        axum::http::Method::DELETE => c.anonymous.delete(url),
        axum::http::Method::PUT => c
            .anonymous
            .put(url)
            .header("content-type", "application/json")
            .body("{}"),
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
    // The document says the same as the table: a token for every route that is not public
    // (a public route may name a credential of its own, such as an attempt's grant).
    let (_, doc) = c.get(leader, "/v1/openapi.json").await;
    for (path, method, permission) in &routes {
        let op = &doc["paths"][path][method.as_str().to_lowercase()];
        let names_token = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("token").is_some()));
        assert_eq!(names_token, *permission != Permission::Public, "{method} {path}: {op}");
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
        .post(c.node(1).url("/v1/cluster/members"))
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
    let seed = format!("https://{}", c.node(1).api_addr);
    for id in 1..=3 {
        let mut args = base.clone();
        if id == 1 {
            args.extend(["--bootstrap".into(), "--bootstrap-peers".into(), peers.clone()]);
        } else {
            args.extend(["--join".into(), seed.clone()]);
        }
        c.wipe_and_restart(id, args);
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

/// A request as the holder of `token`, answered by node 1.
async fn as_token(
    c: &Cluster,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    tenant: Option<&str>,
) -> (u16, Value) {
    let mut req = c.anonymous.request(method, c.node(1).url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = tenant {
        req = req.header("X-Flotilla-Tenant", t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A token scoped to tenants submits into them only, and sees and touches nothing of another
/// tenant: those pipelines, jobs, logs and events answer as what does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_scoped_token_sees_and_touches_its_tenants_only() {
    let c = Cluster::start(1, &[]).await;
    c.register_pool(1).await;
    let scoped = |name: &str, tenant: &str| json!({ "name": name, "role": "submitter", "tenants": [tenant] });
    let (_, web) = c.post(1, "/v1/tokens", scoped("web-ci", "web")).await;
    let (_, ops) = c.post(1, "/v1/tokens", scoped("ops-ci", "ops")).await;
    let (web, ops) = (
        web["token"].as_str().unwrap().to_string(),
        ops["token"].as_str().unwrap().to_string(),
    );

    // Submissions: a scoped token's only tenant by default; another tenant is refused.
    let post = reqwest::Method::POST;
    let (s, mine) = as_token(&c, &web, post.clone(), "/v1/pipelines", Some(pipeline("mine")), None).await;
    assert_eq!(s, 201, "{mine}");
    let (s, body) = as_token(
        &c,
        &web,
        post.clone(),
        "/v1/pipelines",
        Some(pipeline("theirs")),
        Some("ops"),
    )
    .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (403, Some("X-Flotilla-Tenant")),
        "{body}"
    );
    let (s, theirs) = as_token(&c, &ops, post.clone(), "/v1/pipelines", Some(pipeline("theirs")), None).await;
    assert_eq!(s, 201, "{theirs}");
    let (mine_id, theirs_id) = (mine["pipeline"].as_u64().unwrap(), theirs["pipeline"].as_u64().unwrap());
    let theirs_job = theirs["jobs"][0]["id"].as_u64().unwrap();

    // The admin sees both, each in its tenant.
    let (_, all) = c.get(1, "/v1/pipelines").await;
    let tenants: Vec<(u64, &str)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_u64().unwrap(), p["tenant"].as_str().unwrap()))
        .collect();
    assert_eq!(tenants, [(mine_id, "web"), (theirs_id, "ops")]);

    // Lists filter by tenant, read from the tenant index; a name no state could hold is refused.
    let ids_of = |v: &Value| -> Vec<u64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["id"].as_u64())
            .collect()
    };
    let (_, only_ops) = c.get(1, "/v1/pipelines?tenant=ops").await;
    assert_eq!(ids_of(&only_ops), [theirs_id], "{only_ops}");
    let (_, ops_jobs) = c.get(1, "/v1/jobs?tenant=ops&state=PENDING").await;
    assert!(ids_of(&ops_jobs).iter().all(|j| *j == theirs_job), "{ops_jobs}");
    let (_, nobody) = c.get(1, "/v1/pipelines?tenant=nobody").await;
    assert_eq!(ids_of(&nobody), Vec::<u64>::new(), "{nobody}");
    let (s, body) = c.get(1, &format!("/v1/pipelines?tenant={}", "t".repeat(1025))).await;
    assert_eq!((s, body["error"]["field"].as_str()), (400, Some("tenant")), "{body}");

    // The web token: its own pipeline and jobs only.
    let get = reqwest::Method::GET;
    let (_, listed) = as_token(&c, &web, get.clone(), "/v1/pipelines", None, None).await;
    let ids: Vec<u64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    assert_eq!(ids, [mine_id], "{listed}");
    // Another tenant named in the filter lists as a tenant with nothing in it.
    let (s, listed) = as_token(&c, &web, get.clone(), "/v1/pipelines?tenant=ops", None, None).await;
    assert_eq!((s, ids_of(&listed)), (200, vec![]), "{listed}");
    let (_, listed) = as_token(&c, &web, get.clone(), "/v1/jobs?tenant=ops", None, None).await;
    assert_eq!(ids_of(&listed), Vec::<u64>::new(), "{listed}");
    let (_, jobs) = as_token(&c, &web, get.clone(), "/v1/jobs", None, None).await;
    assert!(
        jobs["items"].as_array().unwrap().iter().all(|j| j["tenant"] == "web"),
        "{jobs}"
    );
    for path in [
        format!("/v1/pipelines/{theirs_id}"),
        format!("/v1/jobs/{theirs_job}"),
        format!("/v1/jobs/{theirs_job}/logs"),
    ] {
        let (s, body) = as_token(&c, &web, get.clone(), &path, None, None).await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    for path in [
        format!("/v1/pipelines/{theirs_id}/cancel"),
        format!("/v1/jobs/{theirs_job}/cancel"),
    ] {
        let (s, body) = as_token(&c, &web, post.clone(), &path, Some(json!({})), None).await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    let (_, still) = c.get(1, &format!("/v1/pipelines/{theirs_id}")).await;
    assert_ne!(still["state"], "CANCELLED", "{still}");
    // Its own it may cancel.
    let (s, body) = as_token(
        &c,
        &web,
        post,
        &format!("/v1/pipelines/{mine_id}/cancel"),
        Some(json!({})),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");

    // Events: nothing of the other tenant's pipeline or jobs.
    let mut reader = SseReader::open(&c.node(1).url("/v1/events?after=0&follow=false"), None, Some(&web))
        .await
        .expect("the stream opens");
    let mut seen = Vec::new();
    while let Some(e) = reader.next(WAIT).await {
        seen.push(e);
    }
    assert!(
        seen.iter().any(|e| e.data["pipeline"] == mine_id),
        "{:?}",
        seen.iter().map(|e| &e.event).collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .all(|e| e.data["pipeline"] != theirs_id && e.data["job"] != theirs_job),
        "another tenant's event reached the web token"
    );
    // The token audit trail is the admins' alone, and carries no secret.
    assert!(
        !seen.iter().any(|e| e.event.starts_with("Auth")),
        "a submitter read the audit trail"
    );
    let mut reader = SseReader::open(
        &c.node(1).url("/v1/events?after=0&follow=false&type=AuthGranted"),
        None,
        c.token.get().map(String::as_str),
    )
    .await
    .expect("the stream opens");
    let mut granted = Vec::new();
    while let Some(e) = reader.next(WAIT).await {
        granted.push(e);
    }
    let names: Vec<&str> = granted.iter().filter_map(|e| e.data["name"].as_str()).collect();
    assert_eq!(names, ["bootstrap-admin", "web-ci", "ops-ci"], "{granted:?}");
    assert_eq!(granted[1].data["tenants"], json!(["web"]));
    let text = format!("{granted:?}");
    assert!(
        !text.contains(&web[4..]) && !text.contains(&ops[4..]),
        "a secret in an event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_admin_token_is_recovered_by_a_restart_with_the_flag_and_a_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::start_with(1, &["--auth", "tokens"], AdminToken::FromInit).await;
    c.wait_leader_among(&[1]).await;
    let first = c.token.get().expect("init handed out the first admin token").clone();
    // The last admin token is revoked: nobody may change the cluster any more.
    let (s, v) = as_token(&c, &first, reqwest::Method::DELETE, "/v1/tokens/t1", None, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(pools_status_until(&c, 1, &first, 401).await, 401);

    // The operator, who holds the node's host, writes a new secret and restarts it with it.
    let secret = flotilla_node::auth::TokenSecret::generate().reveal().to_string();
    let file = c.dir().join("recovered-token");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let node = c.node_mut(1);
    node.extra_args.extend([
        "--admin-token-file".to_string(),
        file.to_string_lossy().into_owned(),
        "--recover-admin-token".to_string(),
    ]);
    assert!(node.terminate(), "node 1 stops");
    node.spawn();
    c.wait_http(1).await;
    assert_eq!(pools_status_until(&c, 1, &secret, 200).await, 200, "{}", c.logs());
    let (s, listed) = as_token(&c, &secret, reqwest::Method::GET, "/v1/tokens", None, None).await;
    assert_eq!(s, 200, "{listed}");
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "recovered-admin" && t["role"] == "admin"),
        "{listed}"
    );
    assert!(c.logs().contains("--recover-admin-token"), "the recovery is logged");
}
