//! The `docker` provider: one container per job attempt on a Docker Engine, the node's local
//! socket or a TCP address every node reaches (`endpoint.rs`).
//!
//! Containers are named `<cluster>-j<job>-a<attempt>` and labelled with the cluster, job,
//! attempt and worker name, so a new leader finds (`list`) and adopts them. Creating is
//! idempotent: a name conflict (409) means an earlier leader created it, and the container is
//! started only if it never was, so an attempt never runs twice.
//!
//! The container runs a small `sh` wrapper (under Docker's init, so SIGTERM reaches it) that
//! runs each step in `/workspace`: the steps' stdout and stderr go to the container's stdout,
//! and the wrapper writes `start <n>` / `end <n> <code>` markers on stderr. `output.rs`
//! follows that log stream. The exit code is reported only once the stream has ended, that
//! is once every byte of output has been read.
//!
//! Removed workers leave a tombstone in the engine (`engine_tombstones.rs`), checked before
//! and after every create, so a deposed leader on any host never starts a removed attempt.

mod artifacts;
mod endpoint;
mod engine_tombstones;
mod output;

pub use endpoint::DockerEndpoint;
pub use engine_tombstones::EngineTombstones;

use crate::output_window::OutputWindow;
use crate::provider::{
    CONTAINER_SECRETS_DIR, LABEL_CLUSTER, LABEL_CLUSTER_ID, ListedWorker, Observation, ProviderError, WorkerProvider,
    WorkerSpec,
};
use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The working directory of every container worker, where its checkout is unpacked.
const WORK_DIR: &str = "/workspace";
const WRAPPER: &str = r#"for var in $FLOTILLA_SECRET_FILES; do
  eval "value=\${FLOTILLA_SECRET_FILE_$var}"
  (umask 077 && printf '%s' "$value" > "$FLOTILLA_SECRETS_DIR/$var") || exit 112
  unset "FLOTILLA_SECRET_FILE_$var"
  export "$var=$FLOTILLA_SECRETS_DIR/$var"
done
unset value var FLOTILLA_SECRET_FILES FLOTILLA_SECRETS_DIR
n=0
code=0
for step in "$@"; do
  echo "start $n" >&2
  printf '$ %s\n' "$(printf '%s\n' "$step" | head -n 1)"
  sh -ec "$step" 2>&1
  code=$?
  echo "end $n $code" >&2
  [ "$code" -ne 0 ] && break
  n=$((n + 1))
done
exit "$code"
"#;

/// Pool settings of Docker pools (checked at registration, `ProviderKind::check_setting`).
pub const SETTING_NETWORK: &str = "network";
pub const SETTING_PIDS_LIMIT: &str = "pids_limit";
pub const SETTING_USER: &str = "user";
/// Processes a job container may run unless its pool says otherwise (a fork bomb stops here).
pub const DEFAULT_PIDS_LIMIT: u32 = 1024;

#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// Where the engine is: its socket on this host, or a TCP address.
    pub endpoint: DockerEndpoint,
    /// Cluster name: prefix of container names and value of the `flotilla.cluster` label. Two
    /// clusters sharing one engine must use different names.
    pub cluster: String,
    /// Network of job containers on pools that name none (pool setting `network`): `none`
    /// by default, which cuts jobs off every network, the control plane's ports included.
    pub network_mode: String,
    /// Most processes a job container may run, on pools that set no `pids_limit`.
    pub pids_limit: u32,
    /// Image for jobs that name none.
    pub default_image: Option<String>,
    /// Time between SIGTERM and SIGKILL when a worker is stopped.
    pub stop_grace_ms: u64,
    /// Output held per worker before the log stream is paused until the leader commits some.
    pub max_buffered_output_bytes: usize,
    /// Timeout of one Engine API request, in seconds (log streams are not cut by it).
    pub request_timeout_s: u64,
    /// How long a removed worker's tombstone is kept in the engine.
    pub tombstone_keep_ms: u64,
}

impl DockerConfig {
    pub fn new(endpoint: DockerEndpoint, cluster: impl Into<String>) -> Self {
        DockerConfig {
            endpoint,
            cluster: cluster.into(),
            network_mode: "none".into(),
            pids_limit: DEFAULT_PIDS_LIMIT,
            default_image: None,
            stop_grace_ms: 3_000,
            max_buffered_output_bytes: 8 * 1024 * 1024,
            request_timeout_s: 30,
            tombstone_keep_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

pub struct DockerProvider {
    config: DockerConfig,
    tombstones: EngineTombstones,
    /// Connected on first use, so a node starts even while its engine is down.
    docker: Mutex<Option<Docker>>,
    outputs: Mutex<HashMap<String, Arc<OutputWindow>>>,
    /// When SIGTERM was sent to a worker being stopped.
    stopping: Mutex<HashMap<String, Instant>>,
}

fn unavailable(e: BollardError) -> ProviderError {
    ProviderError::Unavailable(format!("docker: {e}"))
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

impl DockerProvider {
    pub fn new(config: DockerConfig) -> Self {
        let tombstones = EngineTombstones::new(config.cluster.clone(), config.tombstone_keep_ms);
        DockerProvider {
            config,
            tombstones,
            docker: Mutex::new(None),
            outputs: Mutex::new(HashMap::new()),
            stopping: Mutex::new(HashMap::new()),
        }
    }

    /// The tombstones this provider keeps in its engine.
    pub fn tombstones(&self) -> &EngineTombstones {
        &self.tombstones
    }

    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The container name of worker `name`.
    pub fn container_name(&self, name: &str) -> String {
        format!("{}-{name}", self.config.cluster)
    }

    fn docker(&self) -> Result<Docker, ProviderError> {
        let mut slot = self.docker.lock().expect("docker lock");
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let d = self.config.endpoint.connect(self.config.request_timeout_s)?;
        *slot = Some(d.clone());
        // Old tombstones go once per connection, in the background.
        let (pruned, tombstones) = (d.clone(), self.tombstones.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { tombstones.prune(&pruned).await });
        }
        Ok(d)
    }

    async fn inspect(
        &self,
        container: &str,
    ) -> Result<Option<bollard::models::ContainerInspectResponse>, ProviderError> {
        match self
            .docker()?
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Inspects a container whose name a create just found taken. The engine reserves the
    /// name before the container can be inspected, so a concurrent create may briefly see 404.
    async fn inspect_created(
        &self,
        container: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, ProviderError> {
        for _ in 0..50 {
            if let Some(info) = self.inspect(container).await? {
                return Ok(info);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ProviderError::Unavailable(format!(
            "{container}: name taken but no such container"
        )))
    }

    fn output(&self, name: &str, docker: &Docker) -> Arc<OutputWindow> {
        let mut outputs = self.outputs.lock().expect("outputs lock");
        outputs
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(output::follow(
                    docker.clone(),
                    self.container_name(name),
                    self.config.max_buffered_output_bytes,
                ))
            })
            .clone()
    }

    fn forget(&self, name: &str) {
        self.outputs.lock().expect("outputs lock").remove(name);
        self.stopping.lock().expect("stopping lock").remove(name);
    }

    fn create_body(&self, spec: &WorkerSpec) -> Result<ContainerCreateBody, ProviderError> {
        let image = spec
            .image
            .clone()
            .or_else(|| self.config.default_image.clone())
            .ok_or_else(|| {
                ProviderError::Rejected("the job names no image and the docker provider has no default image".into())
            })?;
        let mut cmd = vec![
            "sh".to_string(),
            "-c".to_string(),
            WRAPPER.to_string(),
            "flotilla-worker".to_string(),
        ];
        cmd.extend(spec.steps.iter().cloned());
        let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // Secrets go into the container's environment at create: the engine keeps them with
        // the container, which is removed with the attempt.
        env.extend(spec.secret_env.iter().map(|(k, v)| format!("{k}={}", v.expose())));
        // Secret files travel the same way, under a name of their own; the wrapper writes each
        // to the container's tmpfs (`CONTAINER_SECRETS_DIR`, memory only) and unsets it before
        // any step runs, so the job's processes see the path alone.
        if !spec.secret_files.is_empty() {
            let vars: Vec<&str> = spec.secret_files.keys().map(String::as_str).collect();
            env.push(format!("FLOTILLA_SECRET_FILES={}", vars.join(" ")));
            env.push(format!("FLOTILLA_SECRETS_DIR={CONTAINER_SECRETS_DIR}"));
            env.extend(
                spec.secret_files
                    .iter()
                    .map(|(k, v)| format!("FLOTILLA_SECRET_FILE_{k}={}", v.expose())),
            );
        }
        env.push(format!("FLOTILLA_JOB_ID={}", spec.job.0));
        env.push(format!("FLOTILLA_ATTEMPT={}", spec.attempt));
        let labels: HashMap<String, String> = spec.worker_labels(&self.config.cluster).into_iter().collect();
        let memory_bytes = i64::try_from(spec.resources.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
        let setting = |key: &str| spec.pool_settings.get(key).cloned();
        let pids_limit = match setting(SETTING_PIDS_LIMIT) {
            None => self.config.pids_limit,
            Some(v) => v
                .parse()
                .map_err(|_| ProviderError::Rejected(format!("pool setting pids_limit={v:?} is not a number")))?,
        };
        // The sandbox: no capabilities (root in the container cannot chown, bind low ports,
        // load modules, trace processes...), no gaining privileges through setuid binaries, a
        // process limit, and no network unless the pool or the node opens one.
        let host_config = HostConfig {
            nano_cpus: Some(i64::try_from(spec.resources.cpu_millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
            memory: Some(memory_bytes),
            // No swap beyond the memory limit.
            memory_swap: Some(memory_bytes),
            network_mode: Some(setting(SETTING_NETWORK).unwrap_or_else(|| self.config.network_mode.clone())),
            init: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            pids_limit: Some(i64::from(pids_limit)),
            // Room for every secret a job may use (32 of at most 64 KiB), writable by whichever
            // user the container runs as, never executable.
            tmpfs: (!spec.secret_files.is_empty()).then(|| {
                HashMap::from([(
                    CONTAINER_SECRETS_DIR.to_string(),
                    "rw,noexec,nosuid,nodev,size=4m,mode=1777".to_string(),
                )])
            }),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: Some(image),
            entrypoint: Some(Vec::new()),
            cmd: Some(cmd),
            env: Some(env),
            labels: Some(labels),
            working_dir: Some(WORK_DIR.into()),
            user: setting(SETTING_USER),
            host_config: Some(host_config),
            ..Default::default()
        })
    }
}

impl WorkerProvider for DockerProvider {
    async fn create(&self, spec: &WorkerSpec) -> Result<String, ProviderError> {
        let docker = self.docker()?;
        let buried = || {
            ProviderError::Rejected(format!(
                "worker {} was removed before; an attempt never runs twice",
                spec.name()
            ))
        };
        if self.tombstones.is_buried(&docker, &spec.name()).await? {
            return Err(buried());
        }
        let name = self.container_name(&spec.name());
        let body = self.create_body(spec)?;
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let id = match docker.create_container(Some(options), body).await {
            Ok(r) => r.id,
            Err(e) if status_of(&e) == Some(409) => {
                // Created before (by us or an earlier leader): start it only if it never ran.
                let info = self.inspect_created(&name).await?;
                let labels = info.config.as_ref().and_then(|c| c.labels.as_ref());
                spec.refuse_foreign(labels.and_then(|l| l.get(LABEL_CLUSTER_ID)).map(String::as_str))?;
                let status = info.state.and_then(|s| s.status);
                if status != Some(ContainerStateStatusEnum::CREATED) {
                    return Ok(info.id.unwrap_or(name));
                }
                info.id.unwrap_or_else(|| name.clone())
            }
            Err(e) if matches!(status_of(&e), Some(400 | 404)) => {
                return Err(ProviderError::Rejected(format!("docker refused {name}: {e}")));
            }
            Err(e) => return Err(unavailable(e)),
        };
        // A removal that buried the name while the container was being created is seen here.
        if self.tombstones.is_buried(&docker, &spec.name()).await? {
            let _ = docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            return Err(buried());
        }
        if let Some(archive) = &spec.checkout {
            upload_checkout(&docker, &name, archive).await?;
        }
        artifacts::upload_inputs(&docker, &name, &spec.restored_blobs()).await?;
        docker.start_container(&name, None).await.map_err(unavailable)?;
        Ok(id)
    }

    async fn collect_artifacts(
        &self,
        name: &str,
        request: &crate::ArtifactRequest,
    ) -> Result<crate::artifact_archive::Packed, ProviderError> {
        let docker = self.docker()?;
        artifacts::collect(&docker, &self.container_name(name), request).await
    }

    async fn observe(&self, name: &str) -> Result<Observation, ProviderError> {
        let docker = self.docker()?;
        let Some(info) = self.inspect(&self.container_name(name)).await? else {
            self.forget(name);
            return Ok(Observation::default());
        };
        let state = info.state.unwrap_or_default();
        let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
        let mut o = Observation {
            exists: true,
            ..Observation::default()
        };
        if matches!(
            status,
            ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY
        ) {
            return Ok(o);
        }
        o.started = true;
        if status == ContainerStateStatusEnum::DEAD {
            o.lost = true;
            return Ok(o);
        }
        let exit_code = (status == ContainerStateStatusEnum::EXITED).then(|| {
            let code = if state.oom_killed == Some(true) {
                137
            } else {
                state.exit_code.unwrap_or(-1)
            };
            i32::try_from(code).unwrap_or(-1)
        });
        if let Err(e) = self.output(name, &docker).observe(&mut o, exit_code) {
            // Follow again from the start at the next observation.
            self.outputs.lock().expect("outputs lock").remove(name);
            return Err(ProviderError::Unavailable(format!(
                "docker log stream of {name} broke: {e}"
            )));
        }
        Ok(o)
    }

    async fn read_output(&self, name: &str, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        let docker = self.docker()?;
        let output = self.output(name, &docker);
        output.read(offset, max_bytes).inspect_err(|_| {
            self.outputs.lock().expect("outputs lock").remove(name);
        })
    }

    async fn terminate(&self, name: &str) -> Result<bool, ProviderError> {
        let docker = self.docker()?;
        let container = self.container_name(name);
        let Some(info) = self.inspect(&container).await? else {
            return Ok(true);
        };
        if info.state.and_then(|s| s.running) != Some(true) {
            return Ok(true);
        }
        let sent = self.stopping.lock().expect("stopping lock").get(name).copied();
        let signal = match sent {
            None => {
                self.stopping
                    .lock()
                    .expect("stopping lock")
                    .insert(name.to_string(), Instant::now());
                "SIGTERM"
            }
            Some(at) if at.elapsed() >= Duration::from_millis(self.config.stop_grace_ms) => "SIGKILL",
            Some(_) => return Ok(false),
        };
        match docker
            .kill_container(&container, Some(KillContainerOptions { signal: signal.into() }))
            .await
        {
            // 404: removed meanwhile; 409: it stopped meanwhile.
            Ok(()) => Ok(false),
            Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(true),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        let docker = self.docker()?;
        self.tombstones.bury(&docker, name).await?;
        self.forget(name);
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(&self.container_name(name), Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            // 409: removal already in progress.
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn list(&self) -> Result<Vec<ListedWorker>, ProviderError> {
        let docker = self.docker()?;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_CLUSTER}={}", self.config.cluster)],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let containers = docker.list_containers(Some(options)).await.map_err(unavailable)?;
        let mut listed: Vec<ListedWorker> = containers
            .into_iter()
            .filter_map(|c| ListedWorker::from_labels(c.labels?))
            .collect();
        listed.sort();
        Ok(listed)
    }
}

/// Puts the job's source (a tar archive, `WorkerSpec::checkout`) into the created container's
/// work directory, streamed from the leader's disk. Repeated before a retried start, it
/// writes the same files again.
async fn upload_checkout(docker: &Docker, container: &str, archive: &std::path::Path) -> Result<(), ProviderError> {
    use futures::StreamExt;
    let file = tokio::fs::File::open(archive)
        .await
        .map_err(|e| ProviderError::Unavailable(format!("the checkout {} cannot be read: {e}", archive.display())))?;
    let chunks = crate::source_archive::file_chunks(file).boxed();
    upload_tar(docker, container, chunks, "the checkout").await
}

/// Streams the tar archive `chunks` into `container`'s work directory; `what` names it in a
/// refusal.
async fn upload_tar(
    docker: &Docker,
    container: &str,
    chunks: futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>,
    what: &str,
) -> Result<(), ProviderError> {
    let options = bollard::query_parameters::UploadToContainerOptions {
        path: WORK_DIR.to_string(),
        ..Default::default()
    };
    docker
        .upload_to_container(container, Some(options), bollard::body_try_stream(chunks))
        .await
        .map_err(|e| match status_of(&e) {
            Some(400 | 404 | 403) => ProviderError::Rejected(format!("docker refused {what} of {container}: {e}")),
            _ => unavailable(e),
        })
}
