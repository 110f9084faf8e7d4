//! Multi-process clusters: forwarding, failover, restart, catch-up by snapshot, membership,
//! idempotent submission. Every node is a real `flotilla-node` process.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

fn pipeline_id(v: &serde_json::Value) -> u64 {
    v["pipeline"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pipeline id in {v}"))
}

fn follower_of(leader: u64, ids: &[u64]) -> u64 {
    *ids.iter().find(|id| **id != leader).expect("a follower")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_writes_are_forwarded_and_survive_a_leader_kill() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let follower = follower_of(leader, &[1, 2, 3]);

    let (status, body) = c.submit(follower, "first", None).await;
    assert_eq!(status, 201, "{body}");
    let first = pipeline_id(&body);
    for id in 1..=3 {
        c.wait_get(id, &format!("/v1/pipelines/{first}"), "pipeline visible", |s, _| {
            s == 200
        })
        .await;
    }

    c.node_mut(leader).kill9();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = c.wait_leader_among(&rest).await;
    assert_ne!(new_leader, leader);
    // The acknowledged write survived, seen through a linearizable read on both survivors.
    for id in &rest {
        let path = format!("/v1/pipelines/{first}?consistency=linearizable");
        // Polled: right after an election the read waits for the new leader's first commit.
        let v = c.wait_get(*id, &path, "linearizable read", |s, _| s == 200).await;
        assert_eq!(v["name"], "first");
    }
    let (status, body) = c.submit(follower_of(new_leader, &rest), "second", None).await;
    assert_eq!(status, 201, "{body}");
    let second = pipeline_id(&body);

    // The killed node restarts from its data directory and catches up by itself.
    c.node_mut(leader).spawn();
    c.wait_get(
        leader,
        &format!("/v1/pipelines/{second}"),
        "restarted node caught up",
        |s, _| s == 200,
    )
    .await;
    c.wait_get(
        leader,
        &format!("/v1/pipelines/{first}"),
        "restarted node kept old data",
        |s, _| s == 200,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_submission_with_the_same_key_creates_one_pipeline() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let (s1, b1) = c.submit(2, "idem", Some("key-1")).await;
    let (s2, b2) = c.submit(3, "idem", Some("key-1")).await;
    assert_eq!((s1, s2), (201, 200), "{b1} {b2}");
    assert_eq!(pipeline_id(&b1), pipeline_id(&b2));
    assert_eq!(b2["duplicate"], true);
    let (_, list) = c.get(1, "/v1/pipelines?consistency=linearizable").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    // Same key, different pipeline: refused, naming the header.
    let mut other = pipeline("idem");
    other["jobs"][0]["steps"] = json!(["echo different"]);
    let (s3, b3) = c
        .post_with(1, "/v1/pipelines", other, &[("Idempotency-Key", "key-1")])
        .await;
    assert_eq!(s3, 422, "{b3}");
    assert_eq!(b3["error"]["field"], "Idempotency-Key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_node_at_once_loses_nothing_acknowledged() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (s, b) = c.submit(1 + (i % 3), &format!("p{i}"), None).await;
        assert_eq!(s, 201, "{b}");
        ids.push(pipeline_id(&b));
    }
    for id in 1..=3 {
        c.node_mut(id).kill9();
    }
    for id in 1..=3 {
        c.node_mut(id).spawn();
    }
    c.wait_leader_among(&[1, 2, 3]).await;
    for node in 1..=3 {
        let list = c
            .wait_get(
                node,
                "/v1/pipelines?consistency=linearizable&limit=1000",
                "all pipelines back",
                |s, v| s == 200 && v["items"].as_array().is_some_and(|a| a.len() == 20),
            )
            .await;
        let got: Vec<u64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, ids);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_purged_log_catches_up_by_snapshot() {
    let args = [
        "--snapshot-after-entries",
        "10",
        "--log-entries-kept-after-snapshot",
        "2",
    ];
    let mut c = Cluster::start(3, &args).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let lagging = follower_of(leader, &[1, 2, 3]);
    c.node_mut(lagging).kill9();
    let live: Vec<u64> = (1..=3).filter(|id| *id != lagging).collect();
    let mut last = 0;
    for i in 0..40 {
        let (s, b) = c.submit(live[i % 2], &format!("p{i}"), None).await;
        assert_eq!(s, 201, "{b}");
        last = pipeline_id(&b);
    }
    // The leader has purged log entries the lagging node never received.
    c.wait_get(leader, "/v1/cluster", "log purged past the lagging node", |_, v| {
        v["purged_index"].as_u64().unwrap_or(0) > 10
    })
    .await;
    c.node_mut(lagging).spawn();
    c.wait_get(lagging, &format!("/v1/pipelines/{last}"), "caught up", |s, _| s == 200)
        .await;
    let status = c
        .wait_get(lagging, "/v1/cluster", "snapshot installed", |_, v| {
            v["snapshot_index"].as_u64().unwrap_or(0) > 0
        })
        .await;
    assert!(status["snapshot_index"].as_u64().unwrap() > 10, "{status}");
}

/// A follower paused past its election timeout (a GC pause, a stalled VM) wakes with its
/// election timer fired. With Pre-Vote it first asks whether a quorum would elect it; the
/// others still hear from their leader and say no, so its term stays, and the leader keeps
/// leading. (Run with `--pre-vote false` on the nodes, this test fails: the woken follower
/// raises the term and the leader steps down.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_back_from_a_pause_does_not_depose_the_leader() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let before = c.get(leader, "/v1/cluster").await.1;
    let paused = follower_of(leader, &[1, 2, 3]);
    c.node(paused).pause(true);
    // 10 s, five times the election timeout's upper bound (2 s in these tests), with writes
    // meanwhile (a pause of 3 s did not make the woken follower stand without Pre-Vote).
    for i in 0..20 {
        let (s, b) = c.submit(leader, &format!("during-{i}"), None).await;
        assert_eq!(s, 201, "{b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    c.node(paused).pause(false);
    // Two election timeouts for the woken follower to do its worst, writes going on.
    for i in 0..8 {
        let (s, b) = c.submit(leader, &format!("after-{i}"), None).await;
        assert_eq!(s, 201, "{b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for id in 1..=3 {
        let now = c.get(id, "/v1/cluster").await.1;
        assert_eq!(now["term"], before["term"], "node {id}'s term moved: {now}");
        assert_eq!(
            now["leader"].as_u64(),
            Some(leader),
            "node {id} follows another leader: {now}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_tolerate_two_dead() {
    let mut c = Cluster::start(5, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3, 4, 5]).await;
    c.register_pool(leader).await;
    let dead: Vec<u64> = (1..=5).filter(|id| *id != leader).take(1).chain([leader]).collect();
    for id in &dead {
        c.node_mut(*id).kill9();
    }
    let live: Vec<u64> = (1..=5).filter(|id| !dead.contains(id)).collect();
    c.wait_leader_among(&live).await;
    let (s, b) = c.submit(live[0], "still-up", None).await;
    assert_eq!(s, 201, "{b}");
    for id in &live {
        c.wait_get(
            *id,
            &format!("/v1/pipelines/{}", pipeline_id(&b)),
            "replicated",
            |s, _| s == 200,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_nodes_become_voters_and_removed_ones_stop_receiving() {
    let c = Cluster::start(4, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3, 4]).await;
    let status = c.get(leader, "/v1/cluster").await.1;
    let voters: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["voter"] == true)
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(voters, vec![1, 2, 3, 4]);

    let removed = follower_of(leader, &[4, 3, 2, 1]);
    // Sent to a follower: redirected to the leader and done there.
    let via = follower_of(
        leader,
        &[1, 2, 3, 4].into_iter().filter(|i| *i != removed).collect::<Vec<_>>(),
    );
    let path = format!("/v1/cluster/members/{removed}");
    let r = c.new_client().delete(c.node(via).url(&path)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, c.node(leader).url(&path), "the Location is the leader's");
    let (s, body) = c.delete(via, &path).await;
    assert_eq!(s, 200, "{body}");
    c.register_pool(leader).await;
    // Let the removed node apply whatever reached it (the removal entries included) and settle.
    let frozen = stable_applied_index(&c, removed).await;
    for i in 0..5 {
        let (s, b) = c.submit(leader, &format!("after-{i}"), None).await;
        assert_eq!(s, 201, "{b}");
    }
    let leader_applied = c.get(leader, "/v1/cluster").await.1["applied_index"].as_u64().unwrap();
    let removed_applied = c.get(removed, "/v1/cluster").await.1["applied_index"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        removed_applied < leader_applied,
        "removed node applied {removed_applied}, leader {leader_applied}"
    );
    assert_eq!(removed_applied, frozen, "removed node kept receiving entries");
}

/// The node's applied index once it has not moved for a second.
async fn stable_applied_index(c: &Cluster, id: u64) -> u64 {
    let mut last = None;
    for _ in 0..60 {
        let now = c.get(id, "/v1/cluster").await.1["applied_index"].as_u64();
        if let Some(index) = now.filter(|_| now == last) {
            return index;
        }
        last = now;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("node {id} applied index never settled")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_on_request_and_is_handed_over_on_sigterm() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let target = follower_of(leader, &[1, 2, 3]);
    let via = (1..=3).find(|id| *id != leader && *id != target).unwrap();
    // Asked of a follower: redirected to the leader, which hands over.
    let (s, v) = c
        .post(via, "/v1/cluster/transfer-leader", json!({ "to": target }))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(c.wait_leader_among(&[1, 2, 3]).await, target);
    c.register_pool(target).await;
    let (s, v) = c.post(target, "/v1/cluster/transfer-leader", json!({ "to": 99 })).await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("to")), "{v}");

    // SIGTERM on the leader: it hands leadership over, then exits cleanly.
    assert!(
        c.node_mut(target).terminate(),
        "node {target} did not exit cleanly on SIGTERM"
    );
    let log = std::fs::read_to_string(&c.node(target).log_file).unwrap();
    assert!(
        log.contains("leadership handed over"),
        "no hand-over in the log:\n{log}"
    );
    let rest: Vec<u64> = (1..=3).filter(|id| *id != target).collect();
    let successor = c.wait_leader_among(&rest).await;
    let (s, b) = c.submit(successor, "after-handover", None).await;
    assert_eq!(s, 201, "the cluster keeps accepting writes: {b}");
}
