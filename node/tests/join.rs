//! Join tokens: a node given only a seed, a join token and the CA's hash fetches the cluster
//! CA and is added; a used, expired or unknown token, or a seed that is not of the pinned CA,
//! is refused with a clear error and the node does not start.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

/// A join token from the cluster's admin: (token, ca_sha256).
async fn join_token(c: &Cluster, ttl_s: u64) -> (String, String) {
    let (s, v) = c.post(1, "/v1/cluster/join-tokens", json!({ "ttl_s": ttl_s })).await;
    assert_eq!(s, 201, "{v}");
    (
        v["join_token"].as_str().expect("the secret, once").to_string(),
        v["ca_sha256"].as_str().expect("the CA's hash").to_string(),
    )
}

/// A node that joins the cluster through node 1 with `token` and `pin`, and nothing else.
fn joiner(c: &Cluster, id: u64, token: &str, pin: &str) -> NodeProc {
    let seed = format!("https://{}", c.node(1).api_addr);
    let args = vec![
        "--join".into(),
        seed,
        "--join-token".into(),
        token.into(),
        "--join-ca-sha256".into(),
        pin.into(),
        "--process-work-dir".into(),
        c.dir().join("workers").to_string_lossy().into_owned(),
    ];
    let mut node = NodeProc::new(id, c.dir(), args);
    node.spawn();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_join_token_and_the_pinned_ca_alone() {
    let mut c = Cluster::start(1, &[]).await;
    c.wait_leader_among(&[1]).await;
    let (token, pin) = join_token(&c, 600).await;
    assert_eq!(pin, test_ca().ca.signing_sha256());
    let (s, tokens) = c.get(1, "/v1/tokens").await;
    assert!(s == 200 && !tokens.to_string().contains(&token[4..]), "{tokens}");

    c.nodes.push(joiner(&c, 2, &token, &pin));
    c.wait_get(1, "/v1/cluster", "node 2 to be a voter", |_, v| {
        v["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == 2 && m["voter"] == true))
    })
    .await;
    // It serves HTTPS from the cluster CA it fetched, whose key only its user may read.
    c.wait_http(2).await;
    let key = c.node(2).data_dir.join("tls").join("ca.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    c.register_pool(1).await;
    let (s, v) = c.submit(2, "through-the-joined-node", None).await;
    assert_eq!(s, 201, "{v}");

    // Restarted, it uses what it fetched: the used token is not asked for again.
    let node = c.node_mut(2);
    assert!(node.terminate());
    node.spawn();
    c.wait_http(2).await;
    c.wait_get(2, "/v1/health/ready", "node 2 ready after its restart", |s, _| s == 200)
        .await;

    // The same token for another node: used.
    let mut again = joiner(&c, 3, &token, &pin);
    let status = again.exit_within(WAIT).expect("the node stops");
    assert!(!status.success());
    assert!(
        again.log().contains("the join token was used already"),
        "{}",
        again.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_unknown_or_mispinned_join_is_refused_and_the_node_stops() {
    let c = Cluster::start(1, &[]).await;
    c.wait_leader_among(&[1]).await;
    for ttl_s in [0, 86_401, u64::MAX] {
        let (s, v) = c.post(1, "/v1/cluster/join-tokens", json!({ "ttl_s": ttl_s })).await;
        assert_eq!(
            (s, v["error"]["field"].as_str()),
            (422, Some("ttl_s")),
            "ttl_s {ttl_s}: {v}"
        );
    }
    let (short, pin) = join_token(&c, 1).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut expired = joiner(&c, 2, &short, &pin);
    assert!(!expired.exit_within(WAIT).expect("the node stops").success());
    assert!(expired.log().contains("the join token expired"), "{}", expired.log());

    let unknown_secret = format!("fjt_{}", "ab".repeat(32));
    let mut unknown = joiner(&c, 3, &unknown_secret, &pin);
    assert!(!unknown.exit_within(WAIT).expect("the node stops").success());
    assert!(unknown.log().contains("no such join token"), "{}", unknown.log());

    // A pin of another CA: the seed is not trusted, and nothing is sent to it.
    let (token, _) = join_token(&c, 600).await;
    let (other_cert, _) = new_ca("another cluster");
    let other = flotilla_pki::parse_certificates(&other_cert, "another CA").unwrap();
    let mut mispinned = joiner(&c, 4, &token, &flotilla_pki::certificate_sha256(&other[0]));
    assert!(!mispinned.exit_within(WAIT).expect("the node stops").success());
    assert!(mispinned.log().contains("--join-ca-sha256"), "{}", mispinned.log());
    // The token was not spent: a correctly pinned node still joins with it.
    let (s, v) = c.post(1, "/v1/cluster/ca", json!({})).await;
    assert_eq!(
        s, 403,
        "the CA is handed to a join token's bearer only, not an admin's: {v}"
    );
    let anonymous = c.anonymous.post(c.node(1).url("/v1/cluster/ca")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let reply = c
        .anonymous
        .post(c.node(1).url("/v1/cluster/ca"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "the unspent token still fetches the CA");
}
