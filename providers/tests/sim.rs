//! The `sim` provider: instant start, finish after the set duration with the set code, no
//! output, idempotent create, no second life after removal.

mod common;
use common::*;
use flotilla_providers::{ProviderError, SimConfig, SimProvider, WorkerProvider};

#[tokio::test]
async fn sim_workers_finish_after_their_duration_and_never_come_back() {
    let p = SimProvider::new(SimConfig { default_duration_ms: 0 });
    let mut s = spec(1, &["ignored"]);
    s.env.insert("SIM_DURATION_MS".into(), "150".into());
    s.env.insert("SIM_EXIT_CODE".into(), "4".into());
    p.create(&s).await.unwrap();
    p.create(&s).await.unwrap();
    let o = p.observe("j1-a1").await.unwrap();
    assert!(o.exists && o.started && o.exit_code.is_none(), "{o:?}");
    let o = wait_until(&p, "j1-a1", "finish", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(4));
    assert_eq!(o.steps_finished, vec![(0, 4)]);
    assert_eq!(names(p.list().await.unwrap()), vec!["j1-a1".to_string()]);
    p.remove("j1-a1").await.unwrap();
    assert!(!p.observe("j1-a1").await.unwrap().exists);
    assert!(matches!(p.create(&s).await, Err(ProviderError::Rejected(_))));

    let mut bad = spec(2, &["x"]);
    bad.env.insert("SIM_DURATION_MS".into(), "soon".into());
    assert!(matches!(p.create(&bad).await, Err(ProviderError::Rejected(_))));
}

#[tokio::test]
async fn a_sim_worker_longer_than_time_runs_until_terminated_and_keeps_its_cluster_id() {
    let p = SimProvider::new(SimConfig { default_duration_ms: 0 });
    let mut s = spec(7, &["ignored"]);
    s.env.insert("SIM_DURATION_MS".into(), u64::MAX.to_string());
    s.cluster_id = Some("cluster-a".into());
    p.create(&s).await.unwrap();
    let o = p.observe("j7-a1").await.unwrap();
    assert!(o.exists && o.exit_code.is_none(), "{o:?}");
    let listed = p.list().await.unwrap();
    assert_eq!(names(listed.clone()), vec!["j7-a1".to_string()]);
    assert_eq!(listed[0].cluster_id.as_deref(), Some("cluster-a"));
    // Names no attempt has are nobody's: nothing to observe, terminate or remove.
    for other in ["j07-a1", "worker", ""] {
        assert!(!p.observe(other).await.unwrap().exists, "{other:?}");
        assert!(p.terminate(other).await.unwrap());
        p.remove(other).await.unwrap();
    }
    assert!(p.terminate("j7-a1").await.unwrap());
    let o = p.observe("j7-a1").await.unwrap();
    assert_eq!(o.exit_code, Some(0), "terminated: {o:?}");
}
