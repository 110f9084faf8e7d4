//! Clock skew: a leader whose clock runs an hour ahead (libfaketime, for its process only)
//! stamps the voters' median time, so the state's clock and every time derived from it stay
//! with the cluster's clocks.

mod common;
use common::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOUR_MS: u64 = 3_600_000;
/// How far a stamped time may be from the test's clock: round trips, ticks, a loaded machine.
const SLACK_MS: u64 = 60_000;

/// Debian's `faketime` package; the test fails loudly without it (`.ci/run` installs it).
fn libfaketime() -> String {
    let path = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: apt-get install -y faketime"
    );
    path.to_string()
}

fn real_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_an_hour_ahead_stamps_the_voters_time() {
    let lib = libfaketime();
    let mut c = Cluster::start(3, &[]).await;
    c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(1).await;

    // Node 1 comes back with its wall clock an hour ahead (timers, on the monotonic clock, as
    // they were).
    let node = c.node_mut(1);
    assert!(node.terminate(), "node 1 did not stop cleanly");
    node.env = vec![
        ("LD_PRELOAD".into(), lib),
        ("FAKETIME".into(), "+1h".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    node.spawn();
    c.wait_http(1).await;
    let (_, view) = c.get(1, "/v1/cluster").await;
    let skew = view["now_ms"].as_u64().expect("now_ms").saturating_sub(real_now_ms());
    assert!(skew > HOUR_MS - SLACK_MS, "node 1's clock is not ahead: {view}");
    c.lead(1).await;

    // Once it has sampled its peers it says how far off it is; what it stamps is theirs.
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&c.node(1).log_file)
        .unwrap_or_default()
        .contains("this node's clock is off the voters' median")
    {
        assert!(
            Instant::now() < deadline,
            "node 1 never noticed its clock\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = real_now_ms();
    let (s, v) = c.submit(2, "stamped", None).await;
    assert_eq!(s, 201, "{v}");
    let id = v["pipeline"].as_u64().expect("a pipeline id");
    let (_, pipeline) = c.get(1, &format!("/v1/pipelines/{id}")).await;
    let created = pipeline["created_at_ms"].as_u64().expect("created_at_ms");
    assert!(
        created + SLACK_MS >= before && created <= real_now_ms() + SLACK_MS,
        "created at {created}, the test's clock said {before}: the leader stamped its own clock ({} ms ahead)",
        created.saturating_sub(before)
    );
}
