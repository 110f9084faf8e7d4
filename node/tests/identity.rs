//! Cluster identity: a node whose data directory was lost neither founds a second cluster nor
//! comes back as the voter it was (it has forgotten its votes and its log). It is refused, with
//! what to do, until it is removed and added again; then it catches up as a new member.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn identity(view: &Value) -> (Option<String>, String) {
    (
        view["cluster_id"].as_str().map(str::to_string),
        view["incarnation"].as_str().expect("an incarnation").to_string(),
    )
}

fn member_incarnation(view: &Value, id: u64) -> Option<String> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["incarnation"].as_str().map(str::to_string))
}

async fn remove(c: &Cluster, via: u64, id: u64) {
    let (s, body) = c.delete(via, &format!("/v1/cluster/members/{id}")).await;
    assert_eq!(s, 200, "remove {id}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_voter_is_refused_until_it_is_removed_and_added_again() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let (s, b) = c.submit(leader, "before-the-wipe", None).await;
    assert_eq!(s, 201, "{b}");
    let view = c.get(leader, "/v1/cluster").await.1;
    let cluster_id = identity(&view).0.expect("the cluster has an id");
    let wiped = if leader == 3 { 2 } else { 3 };
    let old = member_incarnation(&view, wiped).expect("the member's incarnation");
    assert_eq!(
        identity(&c.get(wiped, "/v1/cluster").await.1),
        (Some(cluster_id.clone()), old.clone())
    );

    let mut args = c.node(wiped).extra_args.clone();
    args.extend(["--join".to_string(), format!("https://{}", c.node(leader).api_addr)]);
    c.wipe_and_restart(wiped, args);
    c.wait_http(wiped).await;
    let (fresh_cluster, fresh) = identity(&c.get(wiped, "/v1/cluster").await.1);
    assert_ne!(fresh, old, "a new data directory is a new incarnation");
    assert_eq!(fresh_cluster, None, "the wiped node took its old cluster's messages");

    // Asked to add it again, the leader refuses and says what to do.
    let (raft, api) = (c.node(wiped).raft_addr.clone(), c.node(wiped).api_addr.clone());
    let (s, b) = c
        .post(
            leader,
            "/v1/cluster/members",
            json!({ "id": wiped, "raft_addr": raft, "api_addr": api }),
        )
        .await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("data_lost")), "{b}");
    let message = b["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("flotilla cluster remove {wiped}")), "{b}");

    // The cluster commits with the two others, and the wiped node takes no part: the leader's
    // messages are addressed to the directory that is gone.
    for i in 0..3 {
        let (s, b) = c.submit(leader, &format!("while-refused-{i}"), None).await;
        assert_eq!(s, 201, "{b}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let view = c.get(wiped, "/v1/cluster").await.1;
    assert_eq!(view["cluster_id"], Value::Null, "the wiped node was taken back: {view}");
    assert_eq!(
        view["applied_index"],
        Value::Null,
        "the wiped node applied entries: {view}"
    );
    assert!(
        c.logs().contains("is not the one its cluster added"),
        "no node logged why it refused"
    );

    // Removed, the node's own join request adds it as the member it now is; it catches up.
    remove(&c, leader, wiped).await;
    c.wait_get(leader, "/v1/cluster", "the wiped node added again", |_, v| {
        v["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == wiped && m["voter"] == true))
            && member_incarnation(v, wiped).as_deref() == Some(fresh.as_str())
    })
    .await;
    c.wait_get(wiped, "/v1/pipelines", "the old history on the new member", |s, v| {
        s == 200
            && v["items"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "before-the-wipe"))
    })
    .await;
    assert_eq!(identity(&c.get(wiped, "/v1/cluster").await.1).0, Some(cluster_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_founder_that_lost_its_disk_joins_instead_of_founding_a_second_cluster() {
    let mut c = Cluster::spawn(3, &[]).await;
    let base = c.node(1).extra_args.clone();
    let peers = format!("{},{}", c.node(2).api_addr, c.node(3).api_addr);
    let founder_args: Vec<String> = base
        .iter()
        .cloned()
        .chain(["--bootstrap".into(), "--bootstrap-peers".into(), peers])
        .collect();
    let joiner_args: Vec<String> = base
        .iter()
        .cloned()
        .chain(["--join".into(), format!("https://{}", c.node(1).api_addr)])
        .collect();
    // Configured as a deployment configures them: the founder with the flag on every start.
    c.wipe_and_restart(1, founder_args.clone());
    for id in [2, 3] {
        c.wipe_and_restart(id, joiner_args.clone());
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
    let cluster_id = identity(&c.get(1, "/v1/cluster").await.1).0.expect("founded");
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let (s, b) = c.submit(leader, "first", None).await;
    assert_eq!(s, 201, "{b}");

    // A joining node is not a founder, whatever it is asked.
    let (s, b) = c.post(2, "/v1/cluster/init", json!({})).await;
    assert_eq!(s, 409, "{b}");

    // The founder loses its volume and starts again with the same flags.
    c.wipe_and_restart(1, founder_args);
    c.wait_http(1).await;
    let survivors = c.wait_leader_among(&[2, 3]).await;
    let (s, b) = c.post(1, "/v1/cluster/init", json!({})).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("peer_in_cluster")), "{b}");
    // It asks to join instead, and is told its old self must be removed first.
    let deadline = std::time::Instant::now() + WAIT;
    while !c.logs().contains("data_lost") {
        assert!(std::time::Instant::now() < deadline, "no refusal logged\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let view = c.get(1, "/v1/cluster").await.1;
    assert_eq!(
        view["cluster_id"],
        Value::Null,
        "the wiped founder founded or joined: {view}"
    );
    let (s, b) = c.submit(survivors, "after-the-wipe", None).await;
    assert_eq!(s, 201, "{b}");

    remove(&c, survivors, 1).await;
    c.wait_get(
        1,
        "/v1/pipelines",
        "the cluster's history on the re-added founder",
        |s, v| {
            s == 200
                && v["items"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["name"] == "after-the-wipe"))
        },
    )
    .await;
    assert_eq!(identity(&c.get(1, "/v1/cluster").await.1).0, Some(cluster_id));
}
