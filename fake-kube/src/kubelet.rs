//! The simulated kubelet: binds a pod to a node, runs its init containers in order, each to
//! its end, then its containers side by side (the first is the one whose output is the pod's
//! log; the others are sidecars, their termination messages read from their files), each as a
//! local process group, collects stdout and stderr into one log, and records the phases a
//! real kubelet reports (`Pending` → `Running` → `Succeeded`/`Failed`), including deadline
//! expiry, eviction and graceful deletion.

use crate::cluster::{Cluster, LogBuffer};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, PodCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

type Key = (String, String);

/// Sends `signal` (`TERM`, `KILL`) to a process group.
pub(crate) fn signal(pgid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .status();
}

pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Starts the kubelet's work for a newly created pod.
pub(crate) fn admit(cluster: Arc<Mutex<Cluster>>, key: Key) {
    tokio::spawn(async move { run(cluster, key).await });
}

fn lock(cluster: &Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    cluster.lock().expect("fake cluster lock")
}

async fn bind(cluster: &Mutex<Cluster>, key: &Key) -> bool {
    loop {
        {
            let mut c = lock(cluster);
            let Some(r) = c.pods.get(key) else { return false };
            if r.pod.metadata.deletion_timestamp.is_some() {
                return false;
            }
            let wanted: BTreeMap<String, String> = r
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default();
            let node = c.nodes.iter().find(|n| {
                let labels = n.metadata.labels.clone().unwrap_or_default();
                wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
            });
            if let Some(node) = node.and_then(|n| n.metadata.name.clone()) {
                let r = c.pods.get_mut(key).expect("pod present");
                r.pod.spec.get_or_insert_default().node_name = Some(node);
                let status = r.pod.status.get_or_insert_default();
                status.conditions = Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    ..Default::default()
                }]);
                c.record_pod(key, "MODIFIED");
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What starting one container takes, read from the pod under the cluster's lock.
struct Prepared {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: std::path::PathBuf,
    name: String,
    image: String,
}

/// Reads `container` of the pod at `key`: its volumes made under `root`, its variables with
/// `secretKeyRef`s read, every mount path it names pointed at its directory, and `PATH`
/// starting with what its image holds (`FakeKubeConfig::image_paths`).
fn prepare(c: &Cluster, key: &Key, container: &Container, root: &Path) -> Result<Prepared, String> {
    let spec = c.pods.get(key).and_then(|r| r.pod.spec.clone()).unwrap_or_default();
    let mut mounts =
        crate::volumes::materialize(c, &key.0, &spec, container, root).map_err(|e| format!("volume: {e}"))?;
    // The termination message file is the container's own, as a kubelet mounts it.
    let termination = termination_file(root, &container.name);
    if let Some(dir) = termination.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("termination message: {e}"))?;
    }
    mounts.push((termination_path(container), termination));
    let translate = |v: String| crate::volumes::translate(v, &mounts);
    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    argv.extend(container.args.clone().unwrap_or_default());
    let argv = argv.into_iter().map(translate).collect();
    // A `secretKeyRef` reads the pod's namespace's secret, as a kubelet does; one that is
    // missing leaves the variable empty here (a real kubelet would hold the pod back).
    let mut env: Vec<(String, String)> = container
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let from_secret = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .and_then(|r| c.secret_value(&key.0, &r.name, &r.key))
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            let value = from_secret.or(e.value).unwrap_or_default();
            (e.name, translate(value))
        })
        .collect();
    let image = container.image.clone().unwrap_or_default();
    if let Some(dir) = c.config.image_paths.get(&image)
        && !env.iter().any(|(k, _)| k == "PATH")
    {
        let host = std::env::var("PATH").unwrap_or_default();
        env.push(("PATH".into(), format!("{}:{host}", dir.display())));
    }
    let cwd = container
        .working_dir
        .clone()
        .map(translate)
        .map(std::path::PathBuf::from)
        .filter(|d| d.starts_with(root))
        .unwrap_or_else(|| root.to_path_buf());
    Ok(Prepared {
        argv,
        env,
        cwd,
        name: container.name.clone(),
        image,
    })
}

/// Where `container` writes its termination message (Kubernetes' default path unless set).
fn termination_path(container: &Container) -> String {
    container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into())
}

/// The host file standing for container `name`'s termination message file.
fn termination_file(root: &Path, name: &str) -> std::path::PathBuf {
    root.join("termination").join(name)
}

/// The termination message of a container that ended with `code`: what it wrote to its
/// termination message file (at most 4,096 bytes, as Kubernetes keeps), else, under
/// `FallbackToLogsOnError` and a failure, the end of its output.
fn termination_message(root: &Path, container: &Container, code: i32, output: &LogBuffer) -> Option<String> {
    let written = std::fs::read(termination_file(root, &container.name)).unwrap_or_default();
    if !written.is_empty() {
        let end = written.len().min(4096);
        return Some(String::from_utf8_lossy(&written[..end]).into_owned());
    }
    if code != 0 && container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") {
        let data = output.data.lock().expect("log lock");
        let from = data.0.len().saturating_sub(TERMINATION_MESSAGE_BYTES);
        return Some(String::from_utf8_lossy(&data.0[from..]).into_owned());
    }
    None
}

/// `Prepared` as a process in its own group, stdout and stderr piped.
fn spawn(p: &Prepared) -> std::io::Result<tokio::process::Child> {
    let Some(program) = p.argv.first() else {
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no command"));
    };
    tokio::process::Command::new(program)
        .args(&p.argv[1..])
        .envs(p.env.iter().cloned())
        .current_dir(&p.cwd)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
}

/// How much of an init container's output becomes its termination message
/// (`FallbackToLogsOnError` keeps the last 2,048 bytes).
const TERMINATION_MESSAGE_BYTES: usize = 2048;

/// Runs the pod's init containers in order, each to its end, as a kubelet does before the
/// first container starts; `Err` with the pod's end when one fails (the pod is `Failed`, its
/// status recorded).
async fn run_init_containers(
    cluster: &Arc<Mutex<Cluster>>,
    key: &Key,
    root: &Path,
    deadline: tokio::time::Instant,
) -> Result<(), ()> {
    let init: Vec<Container> = {
        let c = lock(cluster);
        let Some(r) = c.pods.get(key) else { return Err(()) };
        r.pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.clone())
            .unwrap_or_default()
    };
    for (i, container) in init.iter().enumerate() {
        let prepared = {
            let c = lock(cluster);
            if c.pods
                .get(key)
                .is_none_or(|r| r.pod.metadata.deletion_timestamp.is_some())
            {
                return Err(());
            }
            prepare(&c, key, container, root)
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                log_start_failure(cluster, key, &e);
                return Err(());
            }
        };
        let mut child = match spawn(&prepared) {
            Ok(child) => child,
            Err(e) => {
                let message = format!("exec {:?}: {e}", prepared.argv.first());
                init_ended(cluster, key, i, &init, 127, message);
                return Err(());
            }
        };
        {
            let mut c = lock(cluster);
            let Some(r) = c.pods.get_mut(key) else {
                signal(child.id().unwrap_or(0), "KILL");
                return Err(());
            };
            r.pgid = child.id();
            set_init_status_locked(&mut c, key, i, &init, None);
        }
        let output = Arc::new(LogBuffer::default());
        if let Some(r) = lock(cluster).pods.get_mut(key) {
            r.init_logs.push(output.clone());
        }
        let code = match wait_ended(&mut child, &output, deadline).await {
            Some(code) => code,
            None => {
                if let Some(r) = lock(cluster).pods.get_mut(key) {
                    r.pgid = None;
                }
                finish(cluster, key, Outcome::DeadlineExceeded, false);
                return Err(());
            }
        };
        let text = {
            let data = output.data.lock().expect("log lock");
            let from = data.0.len().saturating_sub(TERMINATION_MESSAGE_BYTES);
            String::from_utf8_lossy(&data.0[from..]).into_owned()
        };
        if let Some(r) = lock(cluster).pods.get_mut(key) {
            r.pgid = None;
        }
        if init_ended(cluster, key, i, &init, code, text) {
            return Err(());
        }
    }
    Ok(())
}

/// Records init container `at` as ended with `code` (and `message`, its last output, when it
/// failed); a failure ends the pod `Failed`, as with `restartPolicy: Never`. Whether it failed.
fn init_ended(cluster: &Mutex<Cluster>, key: &Key, at: usize, init: &[Container], code: i32, message: String) -> bool {
    let mut c = lock(cluster);
    set_init_status_locked(&mut c, key, at, init, Some((code, message)));
    if code == 0 {
        return false;
    }
    if let Some(r) = c.pods.get_mut(key) {
        r.exited = true;
        r.pod.status.get_or_insert_default().phase = Some("Failed".into());
        c.record_pod(key, "MODIFIED");
    }
    true
}

/// Records init container `at` as running (`ended: None`) or terminated, the ones before it
/// as completed and the ones after as waiting.
fn set_init_status_locked(c: &mut Cluster, key: &Key, at: usize, init: &[Container], ended: Option<(i32, String)>) {
    let Some(r) = c.pods.get_mut(key) else { return };
    let state = |i: usize| -> ContainerState {
        let terminated = |exit_code: i32, message: Option<String>| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
                message,
                finished_at: Some(now()),
                ..Default::default()
            }),
            ..Default::default()
        };
        match i.cmp(&at) {
            std::cmp::Ordering::Less => terminated(0, None),
            std::cmp::Ordering::Equal => match &ended {
                Some((code, text)) => terminated(*code, (*code != 0).then(|| text.clone())),
                None => ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(now()),
                    }),
                    ..Default::default()
                },
            },
            std::cmp::Ordering::Greater => ContainerState {
                waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
                    reason: Some("PodInitializing".into()),
                    message: None,
                }),
                ..Default::default()
            },
        }
    };
    let statuses = init
        .iter()
        .enumerate()
        .map(|(i, container)| ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            state: Some(state(i)),
            ..Default::default()
        })
        .collect();
    let status = r.pod.status.get_or_insert_default();
    status.phase = Some("Pending".into());
    status.init_container_statuses = Some(statuses);
    c.record_pod(key, "MODIFIED");
}

async fn run(cluster: Arc<Mutex<Cluster>>, key: Key) {
    if !bind(&cluster, &key).await {
        return;
    }
    let delay_ms = lock(&cluster).config.start_delay_ms;
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    let workdir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "fake kubelet: no work directory");
            return;
        }
    };
    let deadline_s = {
        let mut c = lock(&cluster);
        let Some(r) = c.pods.get_mut(&key) else { return };
        r.root = Some(workdir.path().to_path_buf());
        r.pod.spec.as_ref().and_then(|s| s.active_deadline_seconds)
    };
    let deadline = tokio::time::Instant::now()
        + deadline_s.map_or(Duration::from_secs(365 * 24 * 3600), |s| {
            Duration::from_secs(s.max(0) as u64)
        });
    if run_init_containers(&cluster, &key, workdir.path(), deadline)
        .await
        .is_err()
    {
        if let Some(r) = lock(&cluster).pods.get_mut(&key) {
            r._workdir = Some(workdir);
        }
        return;
    }
    let (prepared, log) = {
        let c = lock(&cluster);
        let Some(r) = c.pods.get(&key) else { return };
        if r.pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let Some(container) = r.pod.spec.as_ref().and_then(|s| s.containers.first()).cloned() else {
            return;
        };
        let log = r.log.clone();
        match prepare(&c, &key, &container, workdir.path()) {
            Ok(p) => (p, log),
            Err(e) => {
                drop(c);
                log_start_failure(&cluster, &key, &e);
                return;
            }
        }
    };
    if prepared.argv.is_empty() {
        finish(&cluster, &key, Outcome::Exited(127), false);
        return;
    }
    let root = workdir.path().to_path_buf();
    let mut child = match spawn(&prepared) {
        Ok(c) => c,
        Err(e) => {
            log.push(format!("exec {}: {e}\n", prepared.argv[0]).as_bytes());
            log.close();
            finish(&cluster, &key, Outcome::Exited(127), false);
            return;
        }
    };
    {
        let mut c = lock(&cluster);
        let Some(r) = c.pods.get_mut(&key) else {
            signal(child.id().unwrap_or(0), "KILL");
            return;
        };
        r.pgid = child.id();
        r.started = true;
        r._workdir = Some(workdir);
        let status = r.pod.status.get_or_insert_default();
        status.phase = Some("Running".into());
        status.start_time = Some(now());
        status.container_statuses = Some(vec![ContainerStatus {
            name: prepared.name.clone(),
            image: prepared.image.clone(),
            image_id: String::new(),
            ready: true,
            started: Some(true),
            restart_count: 0,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(now()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        c.record_pod(&key, "MODIFIED");
    }
    let sidecars = start_sidecars(&cluster, &key, &root, deadline);
    let outcome = match wait_ended(&mut child, &log, deadline).await {
        Some(code) => Outcome::Exited(code),
        None => Outcome::DeadlineExceeded,
    };
    log.close();
    if let Outcome::Exited(code) = outcome {
        // The pod runs on while a sidecar does; its first container's end shows at once.
        container_ended(&cluster, &key, &prepared.name, code, None);
    }
    let mut sidecar_failed = false;
    for sidecar in sidecars {
        sidecar_failed |= sidecar.await.map_or(true, |code| code != 0);
    }
    finish(&cluster, &key, outcome, sidecar_failed);
}

/// Starts the pod's containers after the first, each beside it in its own process group, as
/// a kubelet runs every container of a pod at once; each task ends with its exit code, its
/// status recorded (its termination message read) as it ends.
fn start_sidecars(
    cluster: &Arc<Mutex<Cluster>>,
    key: &Key,
    root: &Path,
    deadline: tokio::time::Instant,
) -> Vec<tokio::task::JoinHandle<i32>> {
    let containers: Vec<Container> = {
        let c = lock(cluster);
        c.pods
            .get(key)
            .and_then(|r| r.pod.spec.as_ref())
            .map(|s| s.containers.iter().skip(1).cloned().collect())
            .unwrap_or_default()
    };
    containers
        .into_iter()
        .map(|container| {
            let (cluster, key, root) = (cluster.clone(), key.clone(), root.to_path_buf());
            tokio::spawn(async move { run_sidecar(&cluster, &key, &root, &container, deadline).await })
        })
        .collect()
}

async fn run_sidecar(
    cluster: &Arc<Mutex<Cluster>>,
    key: &Key,
    root: &Path,
    container: &Container,
    deadline: tokio::time::Instant,
) -> i32 {
    let prepared = {
        let c = lock(cluster);
        prepare(&c, key, container, root)
    };
    let output = Arc::new(LogBuffer::default());
    let mut child = match prepared.and_then(|p| spawn(&p).map_err(|e| format!("exec {:?}: {e}", p.argv.first()))) {
        Ok(child) => child,
        Err(e) => {
            container_ended(cluster, key, &container.name, 127, Some(e));
            return 127;
        }
    };
    let pgid = child.id();
    {
        let mut c = lock(cluster);
        let Some(r) = c.pods.get_mut(key) else {
            signal(pgid.unwrap_or(0), "KILL");
            return 137;
        };
        r.sidecars.extend(pgid);
        let status = r.pod.status.get_or_insert_default();
        status.container_statuses.get_or_insert_default().push(ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            ready: true,
            started: Some(true),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(now()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c.record_pod(key, "MODIFIED");
    }
    let code = wait_ended(&mut child, &output, deadline).await.unwrap_or(137);
    if let Some(r) = lock(cluster).pods.get_mut(key) {
        r.sidecars.retain(|p| Some(*p) != pgid);
    }
    let message = termination_message(root, container, code, &output);
    container_ended(cluster, key, &container.name, code, message);
    code
}

/// Records container `name` of the pod as terminated with `code` and `message`.
fn container_ended(cluster: &Mutex<Cluster>, key: &Key, name: &str, code: i32, message: Option<String>) {
    let mut c = lock(cluster);
    let Some(r) = c.pods.get_mut(key) else { return };
    let statuses = r
        .pod
        .status
        .get_or_insert_default()
        .container_statuses
        .get_or_insert_default();
    let terminated = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
            message,
            finished_at: Some(now()),
            ..Default::default()
        }),
        ..Default::default()
    };
    match statuses.iter_mut().find(|s| s.name == name) {
        Some(s) => {
            s.ready = false;
            s.started = Some(false);
            s.state = Some(terminated);
        }
        None => statuses.push(ContainerStatus {
            name: name.into(),
            state: Some(terminated),
            ..Default::default()
        }),
    }
    c.record_pod(key, "MODIFIED");
}

/// Follows `child`'s output into `output` and waits for it to end, or until `deadline`, when
/// its group is killed (its pipes close only when it ends); its exit code, or `None` past the
/// deadline.
async fn wait_ended(
    child: &mut tokio::process::Child,
    output: &Arc<LogBuffer>,
    deadline: tokio::time::Instant,
) -> Option<i32> {
    let readers = [
        child.stdout.take().map(|s| tokio::spawn(copy_into(s, output.clone()))),
        child.stderr.take().map(|s| tokio::spawn(copy_into(s, output.clone()))),
    ];
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        () = tokio::time::sleep_until(deadline) => None,
    };
    if status.is_none() {
        if let Some(pgid) = child.id() {
            signal(pgid, "KILL");
        }
        let _ = child.wait().await;
    }
    for reader in readers.into_iter().flatten() {
        let _ = reader.await;
    }
    status.map(|s| {
        use std::os::unix::process::ExitStatusExt;
        s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
    })
}

async fn copy_into(mut from: impl tokio::io::AsyncRead + Unpin, log: Arc<LogBuffer>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => log.push(&buf[..n]),
        }
    }
}

enum Outcome {
    Exited(i32),
    DeadlineExceeded,
}

/// A container that cannot be configured (a Secret it mounts is missing) waits for ever with
/// `CreateContainerConfigError`, as a kubelet reports it.
fn log_start_failure(cluster: &Mutex<Cluster>, key: &Key, message: &str) {
    let mut c = lock(cluster);
    let Some(r) = c.pods.get_mut(key) else { return };
    let name = r
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let status = r.pod.status.get_or_insert_default();
    status.phase = Some("Pending".into());
    status.container_statuses = Some(vec![ContainerStatus {
        name,
        state: Some(ContainerState {
            waiting: Some(k8s_openapi::api::core::v1::ContainerStateWaiting {
                reason: Some("CreateContainerConfigError".into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    c.record_pod(key, "MODIFIED");
}

/// Ends the pod: `outcome` is its first container's, `sidecar_failed` whether another
/// container ended with an error (the pod is then `Failed` too, as in Kubernetes).
fn finish(cluster: &Mutex<Cluster>, key: &Key, outcome: Outcome, sidecar_failed: bool) {
    let mut c = lock(cluster);
    let Some(r) = c.pods.get_mut(key) else { return };
    r.exited = true;
    let evicted = r.evicted;
    let status = r.pod.status.get_or_insert_default();
    let (phase, reason, message, exit_code) = match outcome {
        _ if evicted => (
            "Failed",
            Some("Evicted"),
            Some("The node was low on resource: memory."),
            137,
        ),
        Outcome::DeadlineExceeded => (
            "Failed",
            Some("DeadlineExceeded"),
            Some("Pod was active on the node longer than the specified deadline"),
            137,
        ),
        Outcome::Exited(0) if sidecar_failed => ("Failed", None, None, 0),
        Outcome::Exited(0) => ("Succeeded", None, None, 0),
        Outcome::Exited(code) => ("Failed", None, None, code),
    };
    status.phase = Some(phase.into());
    status.reason = reason.map(str::to_string);
    status.message = message.map(str::to_string);
    if let Some(cs) = status.container_statuses.as_mut().and_then(|v| v.first_mut()) {
        cs.ready = false;
        cs.started = Some(false);
        cs.state = Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code,
                reason: Some(if exit_code == 0 { "Completed" } else { "Error" }.into()),
                finished_at: Some(now()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    c.record_pod(key, "MODIFIED");
}

/// Graceful deletion: SIGTERM, SIGKILL after `grace_s`, then the object goes.
pub(crate) fn delete(cluster: Arc<Mutex<Cluster>>, key: Key, grace_s: u64) {
    tokio::spawn(async move {
        let pgids: Vec<u32> = {
            let c = lock(&cluster);
            c.pods
                .get(&key)
                .filter(|r| !r.exited)
                .map(|r| r.pgid.iter().chain(&r.sidecars).copied().collect())
                .unwrap_or_default()
        };
        if !pgids.is_empty() {
            for pgid in &pgids {
                signal(*pgid, "TERM");
            }
            let until = tokio::time::Instant::now() + Duration::from_secs(grace_s);
            loop {
                let exited = lock(&cluster).pods.get(&key).is_none_or(|r| r.exited);
                if exited {
                    break;
                }
                if tokio::time::Instant::now() >= until {
                    for pgid in &pgids {
                        signal(*pgid, "KILL");
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let mut c = lock(&cluster);
        c.record_pod(&key, "DELETED");
        c.pods.remove(&key);
    });
}

/// Whether the pod's first container is still waiting to start (its log cannot be read yet).
pub(crate) fn waiting(cluster: &Cluster, key: &Key) -> bool {
    cluster.pods.get(key).is_some_and(|r| !r.started)
}
