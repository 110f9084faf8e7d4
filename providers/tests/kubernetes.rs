//! The `kubernetes` provider against the fake API server (`fake-kube/`), whose kubelet runs
//! each pod's command as a local process: create and 409 adoption, watch-driven state,
//! followed logs, deadlines, cancel, eviction, node loss, 410 Gone and re-list, adoption by a
//! new provider instance (a new leader), and capacity from nodes.

mod common;
use common::*;
use flotilla_fake_kube::{FakeKube, FakeKubeConfig, NodeSpec};
use flotilla_providers::{
    KubernetesConfig, KubernetesProvider, ListedWorker, Observation, ProviderError, WorkerProvider, WorkerSpec,
};
use flotilla_state_machine::{PoolSpec, ProviderKind, Resources};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NS: &str = "workers";

async fn fake() -> FakeKube {
    let kube = FakeKube::start(FakeKubeConfig {
        bookmark_interval_ms: 200,
        ..FakeKubeConfig::default()
    })
    .await
    .unwrap();
    kube.cluster().add_node(NodeSpec {
        name: "node-a".into(),
        labels: BTreeMap::from([("pool".to_string(), "ci".to_string())]),
        allocatable: BTreeMap::from([
            ("cpu".to_string(), "4".to_string()),
            ("memory".to_string(), "8Gi".to_string()),
        ]),
    });
    kube
}

fn provider(kube: &FakeKube) -> KubernetesProvider {
    let mut config = KubernetesConfig::new(NS, "ci");
    config.api_url = Some(kube.url());
    config.stop_grace_ms = 1_000;
    config.capacity_refresh_ms = 0;
    KubernetesProvider::new(config).unwrap()
}

fn kspec(job: u64, steps: &[&str]) -> WorkerSpec {
    let mut s = spec(job, steps);
    s.image = Some("busybox".into());
    s.pool_settings = BTreeMap::from([("node_selector".to_string(), "pool=ci".to_string())]);
    s
}

async fn observe_until(
    p: &KubernetesProvider,
    name: &str,
    what: &str,
    done: impl Fn(&Observation) -> bool,
) -> Observation {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match p.observe(name).await {
            Ok(o) if done(&o) => return o,
            Ok(o) => assert!(Instant::now() < deadline, "{what} never happened: {o:?}"),
            Err(e) => assert!(Instant::now() < deadline, "{what} never happened: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_output(p: &KubernetesProvider, name: &str, o: &Observation) -> String {
    let mut out = Vec::new();
    while (out.len() as u64) < o.output_bytes {
        let chunk = p.read_output(name, out.len() as u64, 1 << 20).await.unwrap();
        assert!(
            !chunk.is_empty(),
            "output stopped at {} of {}",
            out.len(),
            o.output_bytes
        );
        out.extend(chunk);
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_its_steps_and_its_state_comes_from_the_watch() {
    let kube = fake().await;
    let p = provider(&kube);
    let s = kspec(
        1,
        &["echo $GREETING from $FLOTILLA_JOB_ID", "echo second >&2", "exit 3"],
    );
    p.create(&s).await.unwrap();
    let pod = kube.cluster().pod(NS, "ci-j1-a1").expect("pod created");
    assert_eq!(pod.metadata.labels.unwrap()["flotilla.worker"], "j1-a1");
    let o = observe_until(&p, "j1-a1", "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.steps_finished, vec![(0, 0), (1, 0), (2, 3)]);
    let out = all_output(&p, "j1-a1", &o).await;
    assert_eq!(
        out,
        "$ echo $GREETING from $FLOTILLA_JOB_ID\nhi from 1\n$ echo second >&2\nsecond\n$ exit 3\n"
    );
    // Dozens of observations, a handful of single-pod GETs (before the watch saw the pod).
    let c = kube.cluster();
    assert!(c.watch_requests() >= 1, "no watch was opened");
    assert!(
        c.get_requests() <= 5,
        "observations polled the API server: {} GETs",
        c.get_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_create_is_adopted_not_run_again() {
    let kube = fake().await;
    let (first, second) = (provider(&kube), provider(&kube));
    let s = kspec(2, &["sleep 1", "echo done"]);
    let uid = first.create(&s).await.unwrap();
    // A new leader creating the same attempt gets 409 and adopts the pod.
    assert_eq!(second.create(&s).await.unwrap(), uid);
    assert_eq!(
        second.list().await.unwrap(),
        vec![ListedWorker {
            name: "j2-a1".into(),
            cluster_id: Some(CLUSTER_ID.into())
        }]
    );
    // A leader of another cluster under the same name is refused the pod.
    let mut theirs = s.clone();
    theirs.cluster_id = Some("0123456789abcdef0123456789abcdef".into());
    let e = second.create(&theirs).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Rejected(m) if m.contains(CLUSTER_ID)),
        "{e:?}"
    );
    let o = observe_until(&second, "j2-a1", "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    assert!(all_output(&second, "j2-a1", &o).await.ends_with("$ echo done\ndone\n"));
    assert_eq!(kube.cluster().pods_created(), 1, "the attempt ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_followed_while_the_pod_runs() {
    let kube = fake().await;
    let p = provider(&kube);
    p.create(&kspec(3, &["echo first; sleep 2; echo second"]))
        .await
        .unwrap();
    let early = observe_until(&p, "j3-a1", "first line followed", |o| {
        o.output_bytes >= "$ echo first; sleep 2; echo second\nfirst\n".len() as u64
    })
    .await;
    assert_eq!(early.exit_code, None, "still running: {early:?}");
    let text = all_output(&p, "j3-a1", &early).await;
    assert!(text.ends_with("first\n"), "{text:?}");
    let end = observe_until(&p, "j3-a1", "exit", |o| o.exit_code.is_some()).await;
    let rest = p.read_output("j3-a1", early.output_bytes, 1 << 20).await.unwrap();
    assert_eq!(String::from_utf8(rest).unwrap(), "second\n");
    assert_eq!(end.output_bytes, early.output_bytes + "second\n".len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_deadline_stops_a_job_past_its_timeout() {
    let kube = fake().await;
    let mut config = KubernetesConfig::new(NS, "ci");
    config.api_url = Some(kube.url());
    config.deadline_margin_s = 0;
    let p = KubernetesProvider::new(config).unwrap();
    let mut s = kspec(4, &["sleep 30"]);
    s.timeout_ms = 1_000;
    p.create(&s).await.unwrap();
    assert_eq!(
        kube.cluster()
            .pod(NS, "ci-j4-a1")
            .unwrap()
            .spec
            .unwrap()
            .active_deadline_seconds,
        Some(1)
    );
    let started = Instant::now();
    let o = observe_until(&p, "j4-a1", "deadline", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(137));
    assert!(started.elapsed() < Duration::from_secs(20));
    let status = kube.cluster().pod(NS, "ci-j4-a1").unwrap().status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_the_pod_and_the_attempt_cannot_come_back() {
    let kube = fake().await;
    let p = provider(&kube);
    let s = kspec(
        5,
        &["trap 'echo got TERM; exit 143' TERM; while true; do sleep 0.1; done"],
    );
    p.create(&s).await.unwrap();
    observe_until(&p, "j5-a1", "running", |o| o.started && o.step_started == Some(0)).await;
    assert!(
        !p.terminate("j5-a1").await.unwrap(),
        "a running pod is not gone at once"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.terminate("j5-a1").await.unwrap() {
        assert!(Instant::now() < deadline, "the pod never stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.remove("j5-a1").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while kube.cluster().pod(NS, "ci-j5-a1").is_some() {
        assert!(Instant::now() < deadline, "the pod was never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        kube.cluster()
            .config_map_names(NS)
            .contains(&"ci-removed-j5-a1".to_string()),
        "no tombstone"
    );
    // A deposed leader asking for the same attempt again is refused, by this or another node.
    assert!(matches!(
        provider(&kube).create(&s).await,
        Err(ProviderError::Rejected(_))
    ));
    assert_eq!(kube.cluster().pods_created(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_and_node_loss_read_as_lost_workers() {
    let kube = fake().await;
    let p = provider(&kube);
    p.create(&kspec(6, &["sleep 30"])).await.unwrap();
    p.create(&kspec(7, &["sleep 30"])).await.unwrap();
    observe_until(&p, "j6-a1", "running", |o| o.started).await;
    observe_until(&p, "j7-a1", "running", |o| o.started).await;
    assert!(kube.cluster().evict(NS, "ci-j6-a1"));
    let o = observe_until(&p, "j6-a1", "evicted", |o| o.lost).await;
    assert_eq!(o.exit_code, None);
    assert!(p.terminate("j6-a1").await.unwrap(), "an evicted pod no longer runs");
    kube.cluster().lose_node("node-a");
    let o = observe_until(&p, "j7-a1", "gone with its node", |o| !o.exists).await;
    assert!(!o.started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_answered_410_gone_is_replaced_by_a_fresh_list() {
    let kube = fake().await;
    let p = provider(&kube);
    p.create(&kspec(8, &["sleep 1", "echo late"])).await.unwrap();
    observe_until(&p, "j8-a1", "running", |o| o.started).await;
    let (lists, gets) = {
        let c = kube.cluster();
        (c.list_requests(), c.get_requests())
    };
    kube.cluster().compact();
    let deadline = Instant::now() + Duration::from_secs(20);
    while kube.cluster().list_requests() == lists {
        assert!(Instant::now() < deadline, "the watcher never listed again after 410");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The re-listed store keeps serving: the exit is seen without single-pod GETs.
    let o = observe_until(&p, "j8-a1", "exit after re-list", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(
        kube.cluster().get_requests(),
        gets,
        "the store stopped serving after the re-list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_provider_adopts_running_pods_by_label() {
    let kube = fake().await;
    let old = provider(&kube);
    old.create(&kspec(9, &["echo before", "sleep 1", "echo after"]))
        .await
        .unwrap();
    observe_until(&old, "j9-a1", "running", |o| o.step_started.is_some()).await;
    drop(old);
    let new = provider(&kube);
    assert_eq!(names(new.list().await.unwrap()), vec!["j9-a1".to_string()]);
    let o = observe_until(&new, "j9-a1", "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    let out = all_output(&new, "j9-a1", &o).await;
    assert_eq!(out, "$ echo before\nbefore\n$ sleep 1\n$ echo after\nafter\n");
    assert_eq!(kube.cluster().pods_created(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_the_nodes_allocatable_minus_other_pods() {
    let kube = fake().await;
    kube.cluster().add_node(NodeSpec {
        name: "node-b".into(),
        labels: BTreeMap::from([("pool".to_string(), "other".to_string())]),
        allocatable: BTreeMap::from([
            ("cpu".to_string(), "64".to_string()),
            ("memory".to_string(), "64Gi".to_string()),
        ]),
    });
    let p = provider(&kube);
    let pool = PoolSpec {
        name: "k".into(),
        provider: ProviderKind::Kubernetes,
        capacity: Resources::new(1, 1, 0),
        max_workers: 10,
        labels: BTreeMap::new(),
        settings: BTreeMap::from([("node_selector".to_string(), "pool=ci".to_string())]),
    };
    assert_eq!(p.capacity(&pool).await.unwrap(), Some(Resources::new(4000, 8192, 0)));
    let requests = BTreeMap::from([
        ("cpu".to_string(), "1500m".to_string()),
        ("memory".to_string(), "1Gi".to_string()),
    ]);
    kube.cluster().add_foreign_pod("default", "web", "node-a", requests);
    assert_eq!(p.capacity(&pool).await.unwrap(), Some(Resources::new(2500, 7168, 0)));
    // Flotilla's own pods are counted by the replicated state, not here.
    p.create(&kspec(10, &["sleep 5"])).await.unwrap();
    observe_until(&p, "j10-a1", "running", |o| o.started).await;
    assert_eq!(p.capacity(&pool).await.unwrap(), Some(Resources::new(2500, 7168, 0)));
    kube.cluster().remove_foreign_pod("default", "web");
    assert_eq!(p.capacity(&pool).await.unwrap(), Some(Resources::new(4000, 8192, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_pod_through_its_own_secret_which_goes_with_it() {
    let kube = fake().await;
    let p = provider(&kube);
    let mut s = kspec(
        21,
        &["test \"$DB_PASSWORD\" = \"kube-secret-$(echo 5e2d)\" && echo matched"],
    );
    s.secret_env.insert(
        "DB_PASSWORD".into(),
        flotilla_providers::SecretValue::new("kube-secret-5e2d".into()),
    );
    p.create(&s).await.unwrap();
    assert_eq!(kube.cluster().secret_names(NS), vec!["ci-j21-a1".to_string()]);
    let pod = kube.cluster().pod(NS, "ci-j21-a1").expect("pod created");
    let text = serde_json::to_string(&pod).unwrap();
    assert!(
        !text.contains("kube-secret-5e2d"),
        "the pod spec holds no value: {text}"
    );
    let o = observe_until(&p, "j21-a1", "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    assert!(all_output(&p, "j21-a1", &o).await.ends_with("matched\n"));
    // A new leader creating the same attempt again adopts the pod and keeps the one Secret.
    provider(&kube).create(&s).await.unwrap();
    assert_eq!(kube.cluster().secret_names(NS).len(), 1);
    p.remove("j21-a1").await.unwrap();
    assert!(
        kube.cluster().secret_names(NS).is_empty(),
        "the Secret went with its pod"
    );
    // An attempt without secrets has none to delete.
    let plain = kspec(22, &["true"]);
    p.create(&plain).await.unwrap();
    assert!(kube.cluster().secret_names(NS).is_empty());
    p.remove("j22-a1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_files_are_mounted_from_the_attempts_secret() {
    let kube = fake().await;
    let p = provider(&kube);
    let mut s = kspec(
        23,
        &["test \"$(cat \"$KUBECONFIG\")\" = \"kube-file-$(echo 77aa)\" && stat -c %a \"$KUBECONFIG\""],
    );
    s.secret_files.insert(
        "KUBECONFIG".into(),
        flotilla_providers::SecretValue::new("kube-file-77aa".into()),
    );
    p.create(&s).await.unwrap();
    let pod = kube.cluster().pod(NS, "ci-j23-a1").expect("pod created");
    let text = serde_json::to_string(&pod).unwrap();
    assert!(!text.contains("kube-file-77aa"), "the pod spec holds no value: {text}");
    let o = observe_until(&p, "j23-a1", "exit", |o| o.exit_code.is_some()).await;
    let out = all_output(&p, "j23-a1", &o).await;
    assert_eq!(o.exit_code, Some(0), "{out}");
    assert!(out.ends_with("\n400\n"), "{out}");
    p.remove("j23-a1").await.unwrap();
    assert!(
        kube.cluster().secret_names(NS).is_empty(),
        "the Secret went with its pod"
    );
}
