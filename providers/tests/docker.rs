//! The Docker provider against the machine's real Docker Engine, with the busybox image that
//! `scripts/test-image` builds (FROM scratch, no registry), through its socket and through a
//! TCP address (a loopback proxy to the socket, as a remote engine every node reaches). Each
//! test uses its own cluster name and checks that no container of it is left.

mod common;
use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use common::wait_until;
use flotilla_providers::{
    DockerConfig, DockerEndpoint, DockerProvider, LABEL_CLUSTER, ListedWorker, ProviderError, WorkerProvider,
    WorkerSpec,
};
use flotilla_state_machine::Resources;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

const SOCKET: &str = "/var/run/docker.sock";
const IMAGE: &str = "flotilla-test/busybox:1";

/// A job in the test image, with limits the tests check on the container.
fn spec(job: u64, steps: &[&str]) -> WorkerSpec {
    WorkerSpec {
        image: Some(IMAGE.into()),
        resources: Resources::new(500, 64, 0),
        ..common::spec(job, steps)
    }
}

/// Removes the containers of a test's cluster when the test ends, passed or not (the tests
/// themselves check that none is left where that is the point).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={LABEL_CLUSTER}={}", self.0);
        for (list, remove) in [(["ps", "-aq"], ["rm", "-f"]), (["volume", "ls"], ["volume", "rm"])] {
            let Ok(out) = std::process::Command::new("docker")
                .args(list)
                .args(["-q", "--filter", &filter])
                .output()
            else {
                continue;
            };
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker").args(remove).arg(id).output();
            }
        }
    }
}

fn cleanup(test: &str) -> Cleanup {
    Cleanup(format!("ft-{test}-{}", std::process::id()))
}

/// A provider for a cluster name of this test alone; fails loudly when the engine or the test
/// image is missing.
async fn provider(test: &str) -> (DockerProvider, Docker) {
    provider_at(test, DockerEndpoint::Unix(SOCKET.into())).await
}

async fn provider_at(test: &str, endpoint: DockerEndpoint) -> (DockerProvider, Docker) {
    let docker = Docker::connect_with_unix(SOCKET, 30, bollard::API_DEFAULT_VERSION)
        .unwrap_or_else(|e| panic!("the Docker Engine at {SOCKET} is required: {e}"));
    docker
        .inspect_image(IMAGE)
        .await
        .unwrap_or_else(|e| panic!("image {IMAGE} is missing ({e}); build it with scripts/test-image"));
    let cluster = format!("ft-{test}-{}", std::process::id());
    let config = DockerConfig::new(endpoint, cluster);
    (DockerProvider::new(config), docker)
}

/// A TCP address on loopback that forwards every connection to the engine's socket: the
/// engine as nodes on other hosts would reach it. Served until the test's runtime ends.
async fn tcp_proxy() -> DockerEndpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect(SOCKET).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    DockerEndpoint::parse(&format!("tcp://{addr}"), None).unwrap()
}

async fn volumes_of(docker: &Docker, p: &DockerProvider) -> usize {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_CLUSTER}={}", p.config().cluster)],
    )]);
    docker
        .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
            filters: Some(filters),
        }))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .len()
}

async fn containers_of(docker: &Docker, p: &DockerProvider) -> usize {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_CLUSTER}={}", p.config().cluster)],
    )]);
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap()
        .len()
}

async fn read_all(p: &DockerProvider, name: &str, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let data = p.read_output(name, out.len() as u64, chunk).await.unwrap();
        if data.is_empty() {
            let o = p.observe(name).await.unwrap();
            if o.exit_code.is_some() && o.output_bytes == out.len() as u64 {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        out.extend_from_slice(&data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_steps_with_labels_and_limits_and_reports_output_and_exit() {
    let _cleanup = cleanup("steps");
    let (p, docker) = provider("steps").await;
    let s = spec(
        1,
        &[
            "echo $GREETING from $FLOTILLA_JOB_ID in $(pwd)",
            "echo second >&2",
            "exit 3",
            "echo never",
        ],
    );
    let id = p.create(&s).await.unwrap();
    let name = s.name();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(o.steps_finished, vec![(0, 0), (1, 0), (2, 3)]);
    let out = String::from_utf8(read_all(&p, &name, 7).await).unwrap();
    assert_eq!(
        out,
        "$ echo $GREETING from $FLOTILLA_JOB_ID in $(pwd)\nhi from 1 in /workspace\n$ echo second >&2\nsecond\n$ exit 3\n"
    );
    assert_eq!(o.output_bytes, out.len() as u64);

    let info = docker
        .inspect_container(&p.container_name(&name), None::<InspectContainerOptions>)
        .await
        .unwrap();
    assert_eq!(info.id.as_deref(), Some(id.as_str()));
    let labels = info.config.unwrap().labels.unwrap();
    assert_eq!(labels.get("flotilla.job").map(String::as_str), Some("1"));
    assert_eq!(labels.get("flotilla.attempt").map(String::as_str), Some("1"));
    assert_eq!(labels.get("flotilla.worker").map(String::as_str), Some("j1-a1"));
    let host = info.host_config.unwrap();
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(64 * 1024 * 1024));
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges:true".to_string()]));
    assert_eq!(host.pids_limit, Some(1024));

    assert_eq!(
        labels.get("flotilla.cluster-id").map(String::as_str),
        Some(common::CLUSTER_ID)
    );
    assert_eq!(
        p.list().await.unwrap(),
        vec![ListedWorker {
            name: name.clone(),
            cluster_id: Some(common::CLUSTER_ID.into())
        }]
    );
    p.remove(&name).await.unwrap();
    assert!(!p.observe(&name).await.unwrap().exists);
    p.remove(&name).await.unwrap();
    assert_eq!(containers_of(&docker, &p).await, 0);

    // A late create of the removed attempt (a deposed leader's) is refused: it never runs twice.
    let e = p.create(&s).await.unwrap_err();
    assert!(matches!(e, ProviderError::Rejected(_)), "{e:?}");
    assert_eq!(containers_of(&docker, &p).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_twice_runs_once_and_a_new_leader_adopts_the_container() {
    let _cleanup = cleanup("adopt");
    let (p, docker) = provider("adopt").await;
    let s = spec(2, &["echo started", "sleep 2", "echo done"]);
    let (a, b) = tokio::join!(p.create(&s), p.create(&s));
    assert_eq!(a.unwrap(), b.unwrap(), "both calls name the same container");
    let name = s.name();
    wait_until(&p, &name, "start", |o| o.started).await;

    // A second provider instance, as on a new leader: it finds the worker by label, does not
    // start it again, and reads its output and exit.
    let (adopter, _) = provider("adopt").await;
    assert_eq!(common::names(adopter.list().await.unwrap()), vec![name.clone()]);
    // A leader of another cluster under the same name is refused the container.
    let mut theirs = s.clone();
    theirs.cluster_id = Some("0123456789abcdef0123456789abcdef".into());
    let e = adopter.create(&theirs).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Rejected(m) if m.contains(common::CLUSTER_ID)),
        "{e:?}"
    );
    adopter.create(&s).await.unwrap();
    let o = wait_until(&adopter, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    let out = String::from_utf8(read_all(&adopter, &name, 1 << 20).await).unwrap();
    assert_eq!(out.lines().filter(|l| *l == "started").count(), 1, "ran once: {out}");
    assert!(out.ends_with("done\n"), "{out}");
    adopter.remove(&name).await.unwrap();
    assert_eq!(containers_of(&docker, &p).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_stops_a_running_container() {
    let _cleanup = cleanup("stop");
    let (p, docker) = provider("stop").await;
    let s = spec(3, &["sleep 300"]);
    p.create(&s).await.unwrap();
    let name = s.name();
    wait_until(&p, &name, "start", |o| o.started).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.terminate(&name).await.unwrap() {
        assert!(Instant::now() < deadline, "the container never stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = p.observe(&name).await.unwrap();
    assert!(o.exists && o.exit_code.is_none_or(|c| c != 0), "{o:?}");
    assert!(p.terminate(&name).await.unwrap(), "terminating again is a no-op");
    p.remove(&name).await.unwrap();
    assert_eq!(containers_of(&docker, &p).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_larger_than_the_window_streams_through_in_order() {
    let _cleanup = cleanup("window");
    let (mut p, docker) = provider("window").await;
    let mut config = p.config().clone();
    config.max_buffered_output_bytes = 64 * 1024;
    p = DockerProvider::new(config);
    // 1,000,000 bytes of numbered lines, far more than the 64 KiB window.
    let s = spec(4, &["seq 1 200000 | head -c 1000000"]);
    p.create(&s).await.unwrap();
    let name = s.name();
    let out = read_all(&p, &name, 48 * 1024).await;
    let header = "$ seq 1 200000 | head -c 1000000\n";
    assert_eq!(out.len(), header.len() + 1_000_000);
    let text = String::from_utf8(out).unwrap();
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect::<String>()[..1_000_000].to_string();
    assert!(text[header.len()..] == expected, "output came through altered");
    p.remove(&name).await.unwrap();
    assert_eq!(containers_of(&docker, &p).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_a_permanent_refusal_and_a_dead_engine_a_transient_one() {
    let _cleanup = cleanup("refuse");
    let (p, docker) = provider("refuse").await;
    let mut s = spec(5, &["true"]);
    s.image = Some("flotilla-test/no-such-image:0".into());
    let e = p.create(&s).await.unwrap_err();
    assert!(matches!(e, ProviderError::Rejected(_)) && !e.is_transient(), "{e:?}");
    assert_eq!(containers_of(&docker, &p).await, 0);

    let down = DockerProvider::new(DockerConfig::new(
        DockerEndpoint::Unix("/nonexistent/docker.sock".into()),
        "ft-down",
    ));
    let e = down.create(&spec(6, &["true"])).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable(_)) && e.is_transient(), "{e:?}");
}

/// The engine reached by TCP, as a leader on another host reaches a shared one: it adopts the
/// container the socket's leader created, removes it, and the tombstone it leaves in the
/// engine refuses the attempt to the socket's leader too (a deposed leader anywhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_reaching_the_engine_by_tcp_adopts_and_its_tombstones_bind_every_leader() {
    let _cleanup = cleanup("tcp");
    let (local, docker) = provider("tcp").await;
    let (remote, _) = provider_at("tcp", tcp_proxy().await).await;
    let s = spec(7, &["echo once", "sleep 1"]);
    local.create(&s).await.unwrap();
    let name = s.name();
    assert_eq!(common::names(remote.list().await.unwrap()), vec![name.clone()]);
    remote.create(&s).await.unwrap();
    let o = wait_until(&remote, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    let out = String::from_utf8(read_all(&remote, &name, 1 << 20).await).unwrap();
    assert_eq!(out.lines().filter(|l| *l == "once").count(), 1, "ran once: {out}");

    remote.remove(&name).await.unwrap();
    assert_eq!(containers_of(&docker, &local).await, 0);
    assert!(remote.tombstones().is_buried(&docker, &name).await.unwrap());
    let e = local.create(&s).await.unwrap_err();
    assert!(matches!(e, ProviderError::Rejected(_)), "{e:?}");
    assert_eq!(containers_of(&docker, &local).await, 0);

    // Tombstones older than their keep time are pruned; younger ones stay.
    local.tombstones().prune(&docker).await;
    assert_eq!(volumes_of(&docker, &local).await, 1);
    let eager = flotilla_providers::EngineTombstones::new(local.config().cluster.clone(), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    eager.prune(&docker).await;
    assert_eq!(volumes_of(&docker, &local).await, 0);
}

/// A job runs with no capabilities, no way to gain privileges and no network; its pool may
/// open a network, lower the process limit and choose the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_sandboxed_and_their_pool_opens_what_it_chooses() {
    let _cleanup = cleanup("sandbox");
    let (p, docker) = provider("sandbox").await;
    let s = spec(
        8,
        &[
            "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
            "if chown 1 /workspace; then echo chowned; else echo chown refused; fi",
            "ls /sys/class/net",
        ],
    );
    let name = s.name();
    p.create(&s).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    let out = String::from_utf8(read_all(&p, &name, 1 << 20).await).unwrap();
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(
        out.lines().any(|l| l == "chown refused") && !out.lines().any(|l| l == "chowned"),
        "{out}"
    );
    // Only the loopback interface: no network.
    let interfaces: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("$ ls")).skip(1).collect();
    assert_eq!(interfaces, vec!["lo"], "{out}");
    p.remove(&name).await.unwrap();

    let mut opened = spec(9, &["id -u"]);
    opened.pool_settings = BTreeMap::from([
        ("network".to_string(), "bridge".to_string()),
        ("pids_limit".to_string(), "64".to_string()),
        ("user".to_string(), "65534".to_string()),
    ]);
    let name = opened.name();
    p.create(&opened).await.unwrap();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    let out = String::from_utf8(read_all(&p, &name, 1 << 20).await).unwrap();
    assert!(out.ends_with("65534\n"), "{out}");
    let info = docker
        .inspect_container(&p.container_name(&name), None::<InspectContainerOptions>)
        .await
        .unwrap();
    let host = info.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("bridge"));
    assert_eq!(host.pids_limit, Some(64));
    p.remove(&name).await.unwrap();
    assert_eq!(containers_of(&docker, &p).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_containers_environment() {
    let _cleanup = cleanup("secret");
    let (p, docker) = provider("secret").await;
    let mut s = spec(
        31,
        &["test \"$DB_PASSWORD\" = \"dock-secret-$(echo 0b9e)\" && echo matched"],
    );
    s.secret_env.insert(
        "DB_PASSWORD".into(),
        flotilla_providers::SecretValue::new("dock-secret-0b9e".into()),
    );
    p.create(&s).await.unwrap();
    let name = s.name();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    assert_eq!(o.exit_code, Some(0));
    let out = String::from_utf8(read_all(&p, &name, 1 << 16).await).unwrap();
    assert!(out.ends_with("matched\n"), "{out}");
    p.remove(&name).await.unwrap();
    assert_eq!(
        containers_of(&docker, &p).await,
        0,
        "the container, and its environment, are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_file_is_on_the_containers_tmpfs_and_out_of_the_steps_environment() {
    let _cleanup = cleanup("secretfile");
    let (p, docker) = provider("secretfile").await;
    let mut s = spec(
        32,
        &[
            "test \"$(cat \"$SIGNING_KEY\")\" = \"dock-file-$(echo 3c3c)\" && echo matched",
            "stat -c %a \"$SIGNING_KEY\"",
            "grep -c ' /run/flotilla/secrets tmpfs ' /proc/mounts",
            "env | grep -c dock-file- || true",
        ],
    );
    s.secret_files.insert(
        "SIGNING_KEY".into(),
        flotilla_providers::SecretValue::new("dock-file-3c3c".into()),
    );
    p.create(&s).await.unwrap();
    let name = s.name();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    let out = String::from_utf8(read_all(&p, &name, 1 << 16).await).unwrap();
    assert_eq!(o.exit_code, Some(0), "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.starts_with("$ ")).collect();
    assert_eq!(lines, ["matched", "600", "1", "0"], "{out}");
    p.remove(&name).await.unwrap();
    assert_eq!(containers_of(&docker, &p).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_is_in_the_work_directory_before_the_first_step() {
    let _cleanup = cleanup("checkout");
    let (p, _docker) = provider("checkout").await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("source.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        for (path, data) in [
            ("greeting.txt", &b"hello from the commit\n"[..]),
            ("src/lib.rs", b"// code\n"),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, data).unwrap();
        }
        tar.finish().unwrap();
    }
    let mut s = spec(31, &["cat greeting.txt", "ls src"]);
    s.checkout = Some(archive);
    p.create(&s).await.unwrap();
    let name = s.name();
    let o = wait_until(&p, &name, "exit", |o| o.exit_code.is_some()).await;
    let out = String::from_utf8(read_all(&p, &name, 4096).await).unwrap();
    assert_eq!(o.exit_code, Some(0), "{out}");
    assert!(out.contains("hello from the commit") && out.contains("lib.rs"), "{out}");
    p.remove(&name).await.unwrap();

    // An archive the leader pruned meanwhile: worth another try, nothing started.
    let mut gone = spec(32, &["true"]);
    gone.checkout = Some(dir.path().join("pruned.tar"));
    let e = p.create(&gone).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    p.remove(&gone.name()).await.unwrap();
}
