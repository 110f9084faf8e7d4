//! What the `kubernetes` provider asks of Kubernetes (the pod of one attempt) and what it
//! reads back (the pod's status as an `Observation`'s ingredients). Pure functions, so both
//! directions are unit-tested without an API server.

use super::output::CONTAINER;
use crate::artifact_archive::{BlobPlace, Packed};
use crate::provider::{CONTAINER_SECRETS_DIR, ProviderError, SourceFetch, WorkerSpec};
use crate::provider::{
    SOURCE_CA_VAR, SOURCE_CACHE_VAR, SOURCE_CHECKOUT_VAR, SOURCE_GRANT_VAR, SOURCE_INPUTS_VAR, SOURCE_URLS_VAR,
};
use crate::uploads::{CollectPurpose, UploadOutcome, UploadReport};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath, LocalObjectReference, Pod, PodSpec,
    ResourceRequirements, Secret, SecretKeySelector, SecretVolumeSource, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Pool settings the provider reads (`settings` of a pool with `provider: kubernetes`; the
/// state machine's `ProviderKind::settings` is the list `apply` accepts).
pub const SETTING_NODE_SELECTOR: &str = "node_selector";
pub const SETTING_SERVICE_ACCOUNT: &str = "service_account";
pub const SETTING_IMAGE_PULL_SECRETS: &str = "image_pull_secrets";
pub const SETTING_TOLERATIONS: &str = "tolerations";

/// Job labels under this prefix become tolerations: `toleration.flotilla.io/<taint key>: <value>`.
pub const TOLERATION_LABEL_PREFIX: &str = "toleration.flotilla.io/";

/// The wrapper every worker pod runs: each step under `sh -e`, markers in band (see
/// `markers.rs`) with the nonce from `FLOTILLA_MARKER`.
const WRAPPER: &str = r#"n=0
code=0
for step in "$@"; do
  printf '\036flotilla-step %s start %s\036' "$FLOTILLA_MARKER" "$n"
  printf '$ %s\n' "$(printf '%s\n' "$step" | head -n 1)"
  sh -ec "$step" 2>&1
  code=$?
  printf '\036flotilla-step %s end %s %s\036' "$FLOTILLA_MARKER" "$n" "$code"
  [ "$code" -ne 0 ] && break
  n=$((n + 1))
done
if [ -n "${FLOTILLA_EXIT_FILE:-}" ]; then printf '%s\n' "$code" > "$FLOTILLA_EXIT_FILE"; fi
exit "$code"
"#;

/// The init container that puts a repository pipeline's source into `/workspace` before the
/// job's container starts (`SOURCE_HELPER_COMMAND`, from `PodTemplate::helper_image`).
pub const SOURCE_CONTAINER: &str = "source";

/// What the source container runs: the node's own binary, which downloads the attempt's
/// checkout from the cluster's API with the attempt's grant and unpacks it.
pub const SOURCE_HELPER_COMMAND: [&str; 4] = ["flotilla-node", "fetch-source", "--into", WORKSPACE];

/// The job's work directory in its pod: an emptyDir the source container fills.
const WORKSPACE: &str = "/workspace";

/// The container that, beside the job's, waits for its steps to end and uploads the files
/// the job keeps (`uploads.rs`): the helper image's `flotilla-node put-files`.
pub const COLLECT_CONTAINER: &str = "collect";

/// What the collect container runs; the rest of what it needs is in its variables.
pub const COLLECT_HELPER_COMMAND: [&str; 6] = [
    "flotilla-node",
    "put-files",
    "--from",
    WORKSPACE,
    "--scratch",
    STATUS_DIR,
];

/// An emptyDir shared by the job's container and the collect container: the job's wrapper
/// writes its exit code there (`EXIT_FILE_VAR`), the collect container packs there.
const STATUS_DIR: &str = "/flotilla-status";

/// Where a container's termination message is read from (Kubernetes' default path).
const TERMINATION_LOG: &str = "/dev/termination-log";

/// The key of the attempt's Secret that holds its upload grant.
pub const UPLOAD_GRANT_KEY: &str = "flotilla.upload-grant";

/// The key of the attempt's Secret that holds its source grant. Not a variable name (a job's
/// variables are letters, digits and `_`), so it never meets one of the job's secrets.
pub const SOURCE_GRANT_KEY: &str = "flotilla.source-grant";

/// How the pod of one attempt is made.
pub struct PodTemplate<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub default_image: Option<&'a str>,
    /// The image holding `flotilla-node` (the nodes' own image) that checks out a repository
    /// pipeline's source; `None`: such jobs are refused with the reason.
    pub helper_image: Option<&'a str>,
    pub stop_grace_ms: u64,
    /// Added to the job's timeout for `activeDeadlineSeconds`: the leader's own timeout acts
    /// first, the deadline stops pods whose control plane is gone.
    pub deadline_margin_s: u64,
}

/// The marker nonce of an attempt: its fencing token.
pub fn marker_nonce(spec: &WorkerSpec) -> String {
    format!("{}-{}", spec.fencing.term, spec.fencing.log_index)
}

fn key_values(text: &str, field: &str) -> Result<Vec<(String, String)>, ProviderError> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| ProviderError::Rejected(format!("pool setting {field}: {t:?} is not key=value")))
        })
        .collect()
}

/// `key=value:Effect` or `key:Effect` or `key=value` (any effect), comma-separated.
fn tolerations(text: &str) -> Result<Vec<Toleration>, ProviderError> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (kv, effect) = match t.rsplit_once(':') {
                Some((kv, e)) => (kv, Some(e.to_string())),
                None => (t, None),
            };
            if let Some(e) = &effect
                && !matches!(e.as_str(), "NoSchedule" | "PreferNoSchedule" | "NoExecute")
            {
                return Err(ProviderError::Rejected(format!(
                    "pool setting tolerations: effect {e:?} is not NoSchedule, PreferNoSchedule or NoExecute"
                )));
            }
            let toleration = match kv.split_once('=') {
                Some((k, v)) => Toleration {
                    key: Some(k.into()),
                    operator: Some("Equal".into()),
                    value: Some(v.into()),
                    effect,
                    ..Default::default()
                },
                None => Toleration {
                    key: Some(kv.into()),
                    operator: Some("Exists".into()),
                    effect,
                    ..Default::default()
                },
            };
            Ok(toleration)
        })
        .collect()
}

/// Node selector of a pool: its `node_selector` setting.
pub fn node_selector(settings: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ProviderError> {
    Ok(key_values(
        settings.get(SETTING_NODE_SELECTOR).map_or("", String::as_str),
        SETTING_NODE_SELECTOR,
    )?
    .into_iter()
    .collect())
}

impl PodTemplate<'_> {
    pub fn pod_name(&self, worker: &str) -> String {
        format!("{}-{worker}", self.cluster)
    }

    /// The Secret of one attempt that uses secrets or checks out its source: named and
    /// labelled as its pod, one key per variable (of the environment and of files alike: the
    /// job's variables are distinct), and the source grant under `SOURCE_GRANT_KEY`. `None`
    /// for an attempt with neither.
    pub fn secret(&self, spec: &WorkerSpec) -> Option<Secret> {
        let grant = spec
            .source_fetch
            .as_ref()
            .filter(|_| self.fetches(spec))
            .map(|f| &f.grant);
        let upload_grant = spec
            .source_fetch
            .as_ref()
            .filter(|_| self.uploads(spec))
            .map(|f| &f.upload_grant);
        if spec.secret_env.is_empty() && spec.secret_files.is_empty() && grant.is_none() && upload_grant.is_none() {
            return None;
        }
        let data = spec
            .secret_env
            .iter()
            .chain(&spec.secret_files)
            .map(|(var, value)| (var.clone(), ByteString(value.expose().as_bytes().to_vec())))
            .chain(grant.map(|g| (SOURCE_GRANT_KEY.to_string(), ByteString(g.expose().as_bytes().to_vec()))))
            .chain(upload_grant.map(|g| (UPLOAD_GRANT_KEY.to_string(), ByteString(g.expose().as_bytes().to_vec()))))
            .collect();
        Some(Secret {
            metadata: ObjectMeta {
                name: Some(self.pod_name(&spec.name())),
                namespace: Some(self.namespace.into()),
                labels: Some(spec.worker_labels(self.cluster).into_iter().collect()),
                ..Default::default()
            },
            data: Some(data),
            type_: Some("Opaque".into()),
            immutable: Some(true),
            ..Default::default()
        })
    }

    pub fn build(&self, spec: &WorkerSpec) -> Result<Pod, ProviderError> {
        let image = spec.image.as_deref().or(self.default_image).ok_or_else(|| {
            ProviderError::Rejected("the job names no image and the kubernetes provider has no default image".into())
        })?;
        let mut command = vec![
            "sh".to_string(),
            "-c".to_string(),
            WRAPPER.to_string(),
            "flotilla-worker".to_string(),
        ];
        command.extend(spec.steps.iter().cloned());
        let mut env: Vec<EnvVar> = spec
            .env
            .iter()
            .map(|(k, v)| EnvVar {
                name: k.clone(),
                value: Some(v.clone()),
                ..Default::default()
            })
            .collect();
        // Secrets come from the attempt's own Secret (`secret`), not the pod spec: whoever may
        // read pods does not read their values.
        for var in spec.secret_env.keys() {
            env.push(self.secret_var(spec, var, var));
        }
        // Secret files are the Secret's keys mounted as a volume; the variable holds the path.
        for var in spec.secret_files.keys() {
            env.push(EnvVar {
                name: var.clone(),
                value: Some(format!("{CONTAINER_SECRETS_DIR}/{var}")),
                ..Default::default()
            });
        }
        env.push(EnvVar {
            name: "FLOTILLA_JOB_ID".into(),
            value: Some(spec.job.0.to_string()),
            ..Default::default()
        });
        env.push(EnvVar {
            name: "FLOTILLA_ATTEMPT".into(),
            value: Some(spec.attempt.to_string()),
            ..Default::default()
        });
        env.push(EnvVar {
            name: "FLOTILLA_MARKER".into(),
            value: Some(marker_nonce(spec)),
            ..Default::default()
        });

        let mut amounts = BTreeMap::from([
            ("cpu".to_string(), Quantity(format!("{}m", spec.resources.cpu_millis))),
            (
                "memory".to_string(),
                Quantity(format!("{}Mi", spec.resources.memory_mib)),
            ),
        ]);
        if spec.resources.gpus > 0 {
            amounts.insert("nvidia.com/gpu".into(), Quantity(spec.resources.gpus.to_string()));
        }
        let resources = ResourceRequirements {
            requests: Some(amounts.clone()),
            limits: Some(amounts),
            ..Default::default()
        };

        let mut selector = node_selector(&spec.pool_settings)?;
        let mut tolerated = tolerations(spec.pool_settings.get(SETTING_TOLERATIONS).map_or("", String::as_str))?;
        for (k, v) in &spec.labels {
            if let Some(taint) = k.strip_prefix(TOLERATION_LABEL_PREFIX) {
                tolerated.push(Toleration {
                    key: Some(taint.into()),
                    operator: Some("Equal".into()),
                    value: Some(v.clone()),
                    ..Default::default()
                });
            } else if k.contains('/') {
                // Kubernetes-style label keys (`kubernetes.io/arch`) select nodes.
                selector.insert(k.clone(), v.clone());
            }
        }
        let pull_secrets: Vec<LocalObjectReference> = spec
            .pool_settings
            .get(SETTING_IMAGE_PULL_SECRETS)
            .map_or("", String::as_str)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| LocalObjectReference { name: s.into() })
            .collect();
        let service_account = spec.pool_settings.get(SETTING_SERVICE_ACCOUNT).cloned();

        let mut volumes = vec![Volume {
            name: "workspace".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }];
        let mut mounts = vec![VolumeMount {
            name: "workspace".into(),
            mount_path: WORKSPACE.into(),
            ..Default::default()
        }];
        if !spec.secret_files.is_empty() {
            volumes.push(Volume {
                name: "secrets".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(self.pod_name(&spec.name())),
                    items: Some(
                        spec.secret_files
                            .keys()
                            .map(|var| KeyToPath {
                                key: var.clone(),
                                path: var.clone(),
                                mode: None,
                            })
                            .collect(),
                    ),
                    // Read by the owner; the kubelet adds the job's group (`fs_group`).
                    default_mode: Some(0o400),
                    optional: Some(false),
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: "secrets".into(),
                // A Secret volume: a tmpfs the kubelet fills.
                mount_path: CONTAINER_SECRETS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            });
        }
        let labels: BTreeMap<String, String> = spec.worker_labels(self.cluster).into_iter().collect();
        let timeout_s = spec.timeout_ms.div_ceil(1000);
        let init_containers = match self.fetches(spec) {
            false => None,
            true => Some(vec![self.source_container(spec, &resources)?]),
        };
        let collect = match self.uploads(spec) {
            false => None,
            true => {
                volumes.push(Volume {
                    name: "status".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                });
                mounts.push(status_mount());
                env.push(plain_var(crate::uploads::EXIT_FILE_VAR, exit_file()));
                Some(self.collect_container(spec)?)
            }
        };
        let container = Container {
            name: CONTAINER.into(),
            image: Some(image.into()),
            command: Some(command),
            env: Some(env),
            resources: Some(resources),
            working_dir: Some(WORKSPACE.into()),
            volume_mounts: Some(mounts),
            // Pod Security's `restricted` profile: no privilege escalation, no capabilities.
            security_context: Some(restricted()),
            ..Default::default()
        };
        Ok(Pod {
            metadata: ObjectMeta {
                name: Some(self.pod_name(&spec.name())),
                namespace: Some(self.namespace.into()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: std::iter::once(container).chain(collect).collect(),
                init_containers,
                restart_policy: Some("Never".into()),
                active_deadline_seconds: Some(
                    i64::try_from(timeout_s.saturating_add(self.deadline_margin_s)).unwrap_or(i64::MAX),
                ),
                termination_grace_period_seconds: Some(
                    i64::try_from(self.stop_grace_ms.div_ceil(1000)).unwrap_or(i64::MAX),
                ),
                node_selector: (!selector.is_empty()).then_some(selector),
                tolerations: (!tolerated.is_empty()).then_some(tolerated),
                image_pull_secrets: (!pull_secrets.is_empty()).then_some(pull_secrets),
                automount_service_account_token: Some(service_account.is_some()),
                // Not root (an image's root user is replaced by nobody; the workspace is an
                // emptyDir owned by its group), the runtime's default seccomp profile.
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(JOB_UID),
                    run_as_group: Some(JOB_UID),
                    fs_group: Some(JOB_UID),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                service_account_name: service_account,
                volumes: Some(volumes),
                ..Default::default()
            }),
            status: None,
        })
    }
}

impl PodTemplate<'_> {
    /// Variable `name` read from key `key` of the attempt's own Secret (`secret`).
    fn secret_var(&self, spec: &WorkerSpec, name: &str, key: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: self.pod_name(&spec.name()),
                    key: key.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The variables of a helper container (source or collect): the nodes' URLs, its grant
    /// read from key `grant.1` of the attempt's Secret into variable `grant.0`, what is its
    /// own (`own`), and the cluster's CA when there is one.
    fn helper_env(&self, spec: &WorkerSpec, fetch: &SourceFetch, grant: (&str, &str), own: Vec<EnvVar>) -> Vec<EnvVar> {
        let mut env = vec![
            plain_var(SOURCE_URLS_VAR, fetch.urls.join(",")),
            self.secret_var(spec, grant.0, grant.1),
        ];
        env.extend(own);
        if let Some(ca) = &fetch.ca_pem {
            env.push(plain_var(SOURCE_CA_VAR, ca.clone()));
        }
        env
    }

    /// Whether the attempt's pod fetches anything from the nodes before its job starts: its
    /// pipeline's checkout, the artifacts of the jobs it needs, or its cache when it can (a
    /// cache is a speed-up: without a helper image or a grant the pod starts without it).
    fn fetches(&self, spec: &WorkerSpec) -> bool {
        spec.checkout.is_some()
            || !spec.inputs.is_empty()
            || (spec.cache.is_some() && self.helper_image.is_some() && spec.source_fetch.is_some())
    }

    /// Whether the attempt's pod uploads files after its steps (its artifacts, its cache): it
    /// has some to keep and the node can give it a helper and a grant. Without them the pod
    /// runs its job alone, and `collect_artifacts` says what was missing.
    fn uploads(&self, spec: &WorkerSpec) -> bool {
        !spec.uploads.is_empty() && self.helper_image.is_some() && spec.source_fetch.is_some()
    }

    /// The container beside the job's that uploads what the job keeps once its steps end
    /// (`uploads.rs`): the helper image's `flotilla-node put-files`, the upload grant read
    /// from the attempt's Secret, its report written as its termination message. It asks
    /// for no resources, so the pod's request stays the job's.
    fn collect_container(&self, spec: &WorkerSpec) -> Result<Container, ProviderError> {
        let (Some(image), Some(fetch)) = (self.helper_image, spec.source_fetch.as_ref()) else {
            return Err(ProviderError::Unsupported(
                "no helper image or grant to upload with".into(),
            ));
        };
        let uploads = serde_json::to_string(&spec.uploads)
            .map_err(|e| ProviderError::Rejected(format!("the uploads of {}: {e}", spec.name())))?;
        let env = self.helper_env(
            spec,
            fetch,
            (crate::uploads::UPLOAD_GRANT_VAR, UPLOAD_GRANT_KEY),
            vec![
                plain_var(crate::uploads::UPLOADS_VAR, uploads),
                plain_var(crate::uploads::EXIT_FILE_VAR, exit_file()),
                plain_var(crate::uploads::REPORT_FILE_VAR, TERMINATION_LOG.into()),
            ],
        );
        Ok(Container {
            name: COLLECT_CONTAINER.into(),
            image: Some(image.into()),
            command: Some(COLLECT_HELPER_COMMAND.iter().map(|s| s.to_string()).collect()),
            env: Some(env),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: "workspace".into(),
                    mount_path: WORKSPACE.into(),
                    read_only: Some(true),
                    ..Default::default()
                },
                status_mount(),
            ]),
            termination_message_path: Some(TERMINATION_LOG.into()),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            security_context: Some(restricted()),
            ..Default::default()
        })
    }

    /// The init container that fetches the attempt's source into the workspace: the helper
    /// image's `flotilla-node fetch-source`, the grant read from the attempt's Secret (the
    /// job's container never sees it), the nodes' endpoints and CA in plain variables. It
    /// asks for the job's own resources, so the pod's request stays the job's.
    fn source_container(
        &self,
        spec: &WorkerSpec,
        resources: &ResourceRequirements,
    ) -> Result<Container, ProviderError> {
        let image = self.helper_image.ok_or_else(|| {
            ProviderError::Unsupported(
                "this node's kubernetes provider has no helper image to fetch a checkout or artifacts with: start the nodes with --kubernetes-helper-image (the nodes' own image)".into(),
            )
        })?;
        let fetch = spec.source_fetch.as_ref().ok_or_else(|| {
            ProviderError::Unsupported(
                "a kubernetes pod fetches its source with a grant signed by the nodes' --secrets-key-file, and this leader has none".into(),
            )
        })?;
        let env = self.helper_env(
            spec,
            fetch,
            (SOURCE_GRANT_VAR, SOURCE_GRANT_KEY),
            vec![
                plain_var(SOURCE_CHECKOUT_VAR, spec.checkout.is_some().to_string()),
                plain_var(SOURCE_INPUTS_VAR, spec.inputs.len().to_string()),
                plain_var(SOURCE_CACHE_VAR, spec.cache.is_some().to_string()),
            ],
        );
        Ok(Container {
            name: SOURCE_CONTAINER.into(),
            image: Some(image.into()),
            command: Some(SOURCE_HELPER_COMMAND.iter().map(|s| s.to_string()).collect()),
            env: Some(env),
            resources: Some(resources.clone()),
            volume_mounts: Some(vec![VolumeMount {
                name: "workspace".into(),
                mount_path: WORKSPACE.into(),
                ..Default::default()
            }]),
            // Its last words (why the fetch failed) become the container's termination
            // message, which `PodView` reports.
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            security_context: Some(restricted()),
            ..Default::default()
        })
    }
}

/// A variable with its value in the pod spec.
fn plain_var(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// Where the job's wrapper writes its exit code for the collect container.
fn exit_file() -> String {
    format!("{STATUS_DIR}/exit")
}

fn status_mount() -> VolumeMount {
    VolumeMount {
        name: "status".into(),
        mount_path: STATUS_DIR.into(),
        ..Default::default()
    }
}

/// Pod Security's `restricted` profile for a container: no privilege escalation, no
/// capabilities.
fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The user and group job containers run as (`nobody`).
pub const JOB_UID: i64 = 65534;

/// Pod-level reasons that mean the pod was taken away, not that its job failed.
const LOST_REASONS: [&str; 6] = [
    "Evicted",
    "NodeLost",
    "Preempting",
    "Shutdown",
    "Terminated",
    "UnexpectedAdmissionError",
];
/// Container waiting reasons that will not resolve by waiting.
const STUCK_REASONS: [&str; 5] = [
    "InvalidImageName",
    "ErrImageNeverPull",
    "ImagePullBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What a pod's status says, in the provider's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// The container has run (running or terminated).
    pub started: bool,
    /// The container's exit code once the pod is `Succeeded` or `Failed`.
    pub exit_code: Option<i32>,
    /// Why the pod will never finish its job, if it will not.
    pub lost: Option<String>,
}

impl PodView {
    pub fn of(pod: &Pod) -> PodView {
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.as_deref().unwrap_or("Pending");
        let container = status
            .container_statuses
            .as_ref()
            .and_then(|v| v.iter().find(|c| c.name == CONTAINER))
            .cloned();
        let state = container.as_ref().and_then(|c| c.state.clone()).unwrap_or_default();
        let mut view = PodView {
            started: state.running.is_some() || state.terminated.is_some(),
            ..PodView::default()
        };
        if let Some(reason) = status.reason.as_deref().filter(|r| LOST_REASONS.contains(r)) {
            view.lost = Some(format!("pod {reason}: {}", status.message.unwrap_or_default()));
            return view;
        }
        if phase == "Unknown" {
            view.lost = Some("pod phase Unknown: its node stopped reporting".into());
            return view;
        }
        if let Some(reason) = source_failure(&status) {
            view.lost = Some(reason);
            return view;
        }
        let collect_state = status
            .container_statuses
            .as_ref()
            .and_then(|v| v.iter().find(|c| c.name == COLLECT_CONTAINER))
            .and_then(|c| c.state.as_ref());
        if let Some(why) = collect_state.and_then(stuck) {
            view.lost = Some(format!("the {COLLECT_CONTAINER} container cannot start: {why}"));
            return view;
        }
        if let Some(why) = stuck(&state) {
            view.lost = Some(format!("container cannot start: {why}"));
            return view;
        }
        if matches!(phase, "Succeeded" | "Failed") {
            view.started = true;
            view.exit_code = Some(match state.terminated {
                Some(t) => t.exit_code,
                // Failed before its container ran (e.g. deadline while pending).
                None if phase == "Succeeded" => 0,
                None => 137,
            });
        }
        view
    }
}

/// What the pod's collect container reported of `purpose` (`uploads.rs`), once it ended: the
/// blob a node received, or why there is none. A pod without a collect container was made
/// by a node that could not give it one.
pub fn collected(pod: &Pod, purpose: CollectPurpose) -> Result<Packed, ProviderError> {
    let field = purpose.field();
    let has_collect = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.containers.iter().any(|c| c.name == COLLECT_CONTAINER));
    if !has_collect {
        return Err(ProviderError::Unsupported(format!(
            "the pod could not upload its {field}: the node that created it has no --kubernetes-helper-image or no --secrets-key-file"
        )));
    }
    let terminated = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|v| v.iter().find(|c| c.name == COLLECT_CONTAINER))
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .ok_or_else(|| {
            ProviderError::Unavailable(format!("the pod's {COLLECT_CONTAINER} container has not ended yet"))
        })?;
    let message = terminated.message.as_deref().unwrap_or_default().trim();
    let report: UploadReport = serde_json::from_str(message).map_err(|_| {
        let last: String = message.lines().last().unwrap_or_default().chars().take(512).collect();
        ProviderError::Rejected(format!(
            "the pod's {field} were not uploaded: its {COLLECT_CONTAINER} container ended (exit {}) saying: {last}",
            terminated.exit_code
        ))
    })?;
    match report.get(purpose) {
        Some(UploadOutcome::Uploaded {
            digest,
            size_bytes,
            entries,
        }) => Ok(Packed {
            digest: digest.clone(),
            size_bytes: *size_bytes,
            entries: *entries,
            place: BlobPlace::Uploaded,
        }),
        Some(UploadOutcome::Failed { reason }) => Err(ProviderError::Rejected(reason.clone())),
        Some(UploadOutcome::Skipped { exit_code }) => Err(ProviderError::Rejected(format!(
            "the pod kept no {field}: its steps ended with exit code {exit_code}"
        ))),
        None => Err(ProviderError::Rejected(format!(
            "the pod's {COLLECT_CONTAINER} container reported nothing of its {field}"
        ))),
    }
}

/// Why the source container will never fill the workspace, if it will not: it exited with
/// an error (its termination message says why), or it cannot start.
fn source_failure(status: &k8s_openapi::api::core::v1::PodStatus) -> Option<String> {
    let source = status
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == SOURCE_CONTAINER)?;
    let state = source.state.as_ref()?;
    if let Some(t) = state.terminated.as_ref().filter(|t| t.exit_code != 0) {
        let words = t.message.as_deref().unwrap_or_default().trim();
        // The last line is the helper's error; a whole log is not a reason.
        let last = words.lines().last().unwrap_or_default();
        let last: String = last.chars().take(512).collect();
        return Some(format!(
            "the source could not be fetched (exit {}): {last}",
            t.exit_code
        ));
    }
    stuck(state).map(|why| format!("the source container cannot start: {why}"))
}

/// `reason: message` of a container waiting for a reason that waiting will not resolve.
fn stuck(state: &k8s_openapi::api::core::v1::ContainerState) -> Option<String> {
    let waiting = state.waiting.as_ref()?;
    let reason = waiting.reason.as_deref().filter(|r| STUCK_REASONS.contains(r))?;
    Some(format!("{reason}: {}", waiting.message.clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{LABEL_CLUSTER, LABEL_CLUSTER_ID, LABEL_WORKER};
    use flotilla_state_machine::{FencingToken, JobId, Resources};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodStatus,
    };

    fn spec() -> WorkerSpec {
        WorkerSpec {
            job: JobId(7),
            attempt: 2,
            fencing: FencingToken { term: 3, log_index: 40 },
            steps: vec!["echo hi".into()],
            env: BTreeMap::from([("A".to_string(), "1".to_string())]),
            secret_env: BTreeMap::new(),
            secret_files: BTreeMap::new(),
            image: Some("busybox".into()),
            resources: Resources::new(500, 256, 1),
            timeout_ms: 90_500,
            labels: BTreeMap::from([
                ("kubernetes.io/arch".to_string(), "arm64".to_string()),
                ("toleration.flotilla.io/dedicated".to_string(), "ci".to_string()),
                ("tier".to_string(), "fast".to_string()),
            ]),
            pool_settings: BTreeMap::from([
                (SETTING_NODE_SELECTOR.to_string(), "pool=ci".to_string()),
                (SETTING_SERVICE_ACCOUNT.to_string(), "runner".to_string()),
                (SETTING_IMAGE_PULL_SECRETS.to_string(), "reg-a, reg-b".to_string()),
                (SETTING_TOLERATIONS.to_string(), "gpu:NoSchedule".to_string()),
            ]),
            cluster_id: Some("c0ffee00c0ffee00c0ffee00c0ffee00".into()),
            checkout: None,
            source_fetch: None,
            inputs: Vec::new(),
            cache: None,
            uploads: Default::default(),
        }
    }

    fn template() -> PodTemplate<'static> {
        PodTemplate {
            cluster: "ci",
            namespace: "workers",
            default_image: None,
            helper_image: Some("flotilla:1"),
            stop_grace_ms: 2_500,
            deadline_margin_s: 60,
        }
    }

    /// `spec()` as a repository pipeline's job, with a grant to fetch its source.
    fn from_source() -> WorkerSpec {
        let mut s = spec();
        s.checkout = Some("/data/sources/checkouts/x.tar".into());
        s.source_fetch = Some(crate::SourceFetch {
            urls: vec![
                "https://n1:8001/v1/jobs/7/attempts/2/source".into(),
                "https://n2:8001/v1/jobs/7/attempts/2/source".into(),
            ],
            grant: crate::SecretValue::new("grant-value-9d1e".into()),
            upload_grant: crate::SecretValue::new("upload-grant-77c3".into()),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into()),
        });
        s
    }

    #[test]
    fn a_source_is_fetched_by_an_init_container_whose_grant_only_it_reads() {
        let s = from_source();
        let secret = template().secret(&s).expect("the grant needs the attempt's Secret");
        assert_eq!(secret.data.unwrap()[SOURCE_GRANT_KEY].0, b"grant-value-9d1e".to_vec());
        let pod = template().build(&s).unwrap();
        let text = serde_json::to_string(&pod).unwrap();
        assert!(
            !text.contains("grant-value-9d1e"),
            "the grant is in the pod spec: {text}"
        );
        let p = pod.spec.unwrap();
        let init = p.init_containers.clone().unwrap();
        assert_eq!(init.len(), 1);
        let source = &init[0];
        assert_eq!(source.name, SOURCE_CONTAINER);
        assert_eq!(source.image.as_deref(), Some("flotilla:1"));
        assert_eq!(
            source.command.clone().unwrap(),
            SOURCE_HELPER_COMMAND.map(String::from).to_vec()
        );
        assert_eq!(
            source.resources, p.containers[0].resources,
            "the pod asks for the job's resources only"
        );
        assert_eq!(source.security_context, p.containers[0].security_context);
        let env = source.env.clone().unwrap();
        let var = |name: &str| env.iter().find(|e| e.name == name).cloned().unwrap();
        assert_eq!(
            var(SOURCE_URLS_VAR).value.unwrap(),
            "https://n1:8001/v1/jobs/7/attempts/2/source,https://n2:8001/v1/jobs/7/attempts/2/source"
        );
        assert!(var(SOURCE_CA_VAR).value.unwrap().contains("BEGIN CERTIFICATE"));
        let grant = var(SOURCE_GRANT_VAR).value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (grant.name.as_str(), grant.key.as_str()),
            ("ci-j7-a2", SOURCE_GRANT_KEY)
        );
        // Both containers share the workspace; the job's container knows nothing of the grant.
        let mount = |c: &Container| {
            c.volume_mounts
                .clone()
                .unwrap()
                .into_iter()
                .find(|m| m.name == "workspace")
        };
        assert_eq!(mount(source).unwrap().mount_path, WORKSPACE);
        assert_eq!(mount(&p.containers[0]).unwrap().mount_path, WORKSPACE);
        let job_env = p.containers[0].env.clone().unwrap();
        assert!(
            job_env.iter().all(|e| !e.name.starts_with("FLOTILLA_SOURCE")),
            "{job_env:?}"
        );
        // A job not from a repository has no init container and, without secrets, no Secret.
        assert!(
            template()
                .build(&spec())
                .unwrap()
                .spec
                .unwrap()
                .init_containers
                .is_none()
        );
        assert!(template().secret(&spec()).is_none());
    }

    #[test]
    fn artifacts_alone_are_fetched_by_the_same_init_container_and_say_how_many() {
        let mut s = from_source();
        s.checkout = None;
        s.inputs = vec!["/data/artifacts/sha256/a".into(), "/data/artifacts/sha256/b".into()];
        let secret = template().secret(&s).expect("the grant needs the attempt's Secret");
        assert_eq!(secret.data.unwrap()[SOURCE_GRANT_KEY].0, b"grant-value-9d1e".to_vec());
        let pod = template().build(&s).unwrap();
        let init = pod.spec.unwrap().init_containers.unwrap();
        let env = init[0].env.clone().unwrap();
        let var = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
        assert_eq!(var(SOURCE_CHECKOUT_VAR).as_deref(), Some("false"));
        assert_eq!(var(SOURCE_INPUTS_VAR).as_deref(), Some("2"));
        // With a checkout too, both are fetched.
        let mut s = from_source();
        s.inputs = vec!["/data/artifacts/sha256/a".into()];
        let pod = template().build(&s).unwrap();
        let env = pod.spec.unwrap().init_containers.unwrap()[0].env.clone().unwrap();
        let var = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
        assert_eq!(var(SOURCE_CHECKOUT_VAR).as_deref(), Some("true"));
        assert_eq!(var(SOURCE_INPUTS_VAR).as_deref(), Some("1"));
        // Without a grant, a pod that needs artifacts is refused, saying why.
        let mut s = spec();
        s.inputs = vec!["/data/artifacts/sha256/a".into()];
        let e = template().build(&s).unwrap_err();
        assert!(
            matches!(&e, ProviderError::Unsupported(m) if m.contains("--secrets-key-file")),
            "{e}"
        );
    }

    #[test]
    fn a_cache_is_fetched_when_the_pod_can_and_skipped_when_it_cannot() {
        let mut s = from_source();
        s.checkout = None;
        s.cache = Some("/data/artifacts/sha256/c".into());
        let pod = template().build(&s).unwrap();
        let env = pod.spec.unwrap().init_containers.unwrap()[0].env.clone().unwrap();
        let var = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
        assert_eq!(var(SOURCE_CACHE_VAR).as_deref(), Some("true"));
        assert_eq!(var(SOURCE_INPUTS_VAR).as_deref(), Some("0"));
        // Without a grant or a helper image, the pod starts without its cache.
        let mut s = spec();
        s.cache = Some("/data/artifacts/sha256/c".into());
        let pod = template().build(&s).unwrap();
        assert!(pod.spec.unwrap().init_containers.is_none());
        let mut t = template();
        t.helper_image = None;
        let mut s = from_source();
        s.checkout = None;
        s.cache = Some("/data/artifacts/sha256/c".into());
        assert!(t.build(&s).unwrap().spec.unwrap().init_containers.is_none());
    }

    fn uploading() -> WorkerSpec {
        let mut s = from_source();
        s.checkout = None;
        s.uploads = crate::uploads::Uploads {
            artifacts: Some(crate::uploads::UploadSpec {
                paths: vec!["dist".into()],
                always: true,
                max_packed_bytes: 1 << 20,
            }),
            cache: None,
        };
        s
    }

    #[test]
    fn a_pod_that_keeps_files_uploads_them_from_a_collect_container_with_its_upload_grant_alone() {
        let s = uploading();
        let pod = template().build(&s).unwrap();
        let spec = pod.spec.unwrap();
        assert!(spec.init_containers.is_none(), "nothing to fetch");
        let [job, collect] = spec.containers.as_slice() else {
            panic!("the job's container and the collect container: {:?}", spec.containers)
        };
        assert_eq!(collect.name, COLLECT_CONTAINER);
        assert_eq!(collect.image.as_deref(), Some("flotilla:1"));
        assert!(collect.resources.is_none(), "the pod's request stays the job's");
        let env = collect.env.clone().unwrap();
        let var = |name: &str| env.iter().find(|e| e.name == name);
        let grant = var(crate::uploads::UPLOAD_GRANT_VAR).unwrap();
        assert!(grant.value.is_none());
        assert_eq!(
            grant.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key,
            UPLOAD_GRANT_KEY
        );
        assert!(var(SOURCE_GRANT_VAR).is_none(), "the collect container reads no source");
        let uploads: crate::uploads::Uploads =
            serde_json::from_str(var(crate::uploads::UPLOADS_VAR).unwrap().value.as_deref().unwrap()).unwrap();
        assert_eq!(uploads, s.uploads);
        let mounts = collect.volume_mounts.clone().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == WORKSPACE && m.read_only == Some(true))
        );
        // The job's wrapper writes its exit code where the collect container waits for it.
        let job_env = job.env.clone().unwrap();
        let exit = job_env
            .iter()
            .find(|e| e.name == crate::uploads::EXIT_FILE_VAR)
            .unwrap();
        assert_eq!(exit.value.as_deref(), Some("/flotilla-status/exit"));
        assert!(
            job.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.mount_path == STATUS_DIR)
        );
        assert!(
            !job_env.iter().any(|e| e.name.contains("GRANT")),
            "the job sees no grant"
        );
        // The Secret carries the upload grant, and no source grant (nothing to fetch).
        let secret = template().secret(&s).unwrap();
        let data = secret.data.unwrap();
        assert_eq!(data[UPLOAD_GRANT_KEY].0, b"upload-grant-77c3");
        assert!(!data.contains_key(SOURCE_GRANT_KEY));
        // Without a helper image the pod runs its job alone.
        let mut t = template();
        t.helper_image = None;
        assert_eq!(t.build(&s).unwrap().spec.unwrap().containers.len(), 1);
    }

    fn ended_collect(message: &str) -> Pod {
        let mut pod = template().build(&uploading()).unwrap();
        pod.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: COLLECT_CONTAINER.into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 0,
                        message: Some(message.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn what_the_collect_container_reported_is_the_collection() {
        let digest = "ab".repeat(32);
        let pod = ended_collect(&format!(
            r#"{{"artifacts":{{"outcome":"uploaded","digest":"{digest}","size_bytes":12,"entries":3}},"cache":{{"outcome":"skipped","exit_code":2}}}}"#
        ));
        let packed = collected(&pod, CollectPurpose::Artifacts).unwrap();
        assert_eq!(packed.digest, digest);
        assert_eq!(
            (packed.size_bytes, packed.entries, packed.place),
            (12, 3, BlobPlace::Uploaded)
        );
        let e = collected(&pod, CollectPurpose::Cache).unwrap_err();
        assert!(
            matches!(&e, ProviderError::Rejected(m) if m.contains("exit code 2")),
            "{e}"
        );
        let failed = ended_collect(
            r#"{"artifacts":{"outcome":"failed","reason":"artifacts.paths[0] dist does not exist in the workspace"}}"#,
        );
        let e = collected(&failed, CollectPurpose::Artifacts).unwrap_err();
        assert!(
            matches!(&e, ProviderError::Rejected(m) if m.starts_with("artifacts.paths[0]")),
            "{e}"
        );
        let garbled = ended_collect("error: the steps did not end within 5 ms");
        let e = collected(&garbled, CollectPurpose::Artifacts).unwrap_err();
        assert!(
            matches!(&e, ProviderError::Rejected(m) if m.contains("did not end")),
            "{e}"
        );
        // Still running: asked again later. No collect container: the reason.
        let mut running = ended_collect("");
        running.status = None;
        assert!(
            collected(&running, CollectPurpose::Artifacts)
                .unwrap_err()
                .is_transient()
        );
        let alone = template().build(&spec()).unwrap();
        let e = collected(&alone, CollectPurpose::Artifacts).unwrap_err();
        assert!(
            matches!(&e, ProviderError::Unsupported(m) if m.contains("--kubernetes-helper-image")),
            "{e}"
        );
    }

    #[test]
    fn a_source_without_a_helper_image_or_a_grant_is_refused_with_the_reason() {
        let mut t = template();
        t.helper_image = None;
        let e = t.build(&from_source()).unwrap_err();
        assert!(matches!(e, ProviderError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("--kubernetes-helper-image"), "{e}");
        let mut s = from_source();
        s.source_fetch = None;
        let e = template().build(&s).unwrap_err();
        assert!(e.to_string().contains("--secrets-key-file"), "{e}");
    }

    #[test]
    fn a_source_that_could_not_be_fetched_loses_the_pod_with_the_helpers_last_words() {
        let failed = |exit_code: i32, message: &str| {
            let pod = Pod {
                status: Some(PodStatus {
                    phase: Some(if exit_code == 0 { "Running" } else { "Failed" }.into()),
                    init_container_statuses: Some(vec![ContainerStatus {
                        name: SOURCE_CONTAINER.into(),
                        state: Some(ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code,
                                message: Some(message.into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            PodView::of(&pod)
        };
        let view = failed(
            1,
            "fetching https://n1...\nerror: no node served the source: 401 grant refused\n",
        );
        assert_eq!(
            view.lost.as_deref(),
            Some("the source could not be fetched (exit 1): error: no node served the source: 401 grant refused")
        );
        assert!(!view.started);
        // A source that arrived changes nothing.
        assert_eq!(failed(0, "").lost, None);
    }

    #[test]
    fn secrets_travel_in_the_attempts_own_secret_never_in_the_pod() {
        assert!(template().secret(&spec()).is_none(), "no secrets, no Secret");
        let mut s = spec();
        s.secret_env
            .insert("DB_PASSWORD".into(), crate::SecretValue::new("pod-secret-value".into()));
        let secret = template().secret(&s).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("ci-j7-a2"));
        assert_eq!(secret.metadata.labels.unwrap()[LABEL_WORKER], "j7-a2");
        assert_eq!(secret.data.unwrap()["DB_PASSWORD"].0, b"pod-secret-value".to_vec());
        let pod = template().build(&s).unwrap();
        let text = serde_json::to_string(&pod).unwrap();
        assert!(!text.contains("pod-secret-value"), "{text}");
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let var = env.iter().find(|e| e.name == "DB_PASSWORD").unwrap();
        let reference = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!(
            (reference.name.as_str(), reference.key.as_str()),
            ("ci-j7-a2", "DB_PASSWORD")
        );
    }

    #[test]
    fn secret_files_are_the_attempts_secret_mounted_read_only_with_their_paths_in_variables() {
        let mut s = spec();
        s.secret_files
            .insert("KUBECONFIG".into(), crate::SecretValue::new("file-secret-value".into()));
        let secret = template().secret(&s).unwrap();
        assert_eq!(secret.data.unwrap()["KUBECONFIG"].0, b"file-secret-value".to_vec());
        let pod = template().build(&s).unwrap();
        let text = serde_json::to_string(&pod).unwrap();
        assert!(!text.contains("file-secret-value"), "{text}");
        let pod_spec = pod.spec.unwrap();
        let volume = pod_spec
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "secrets")
            .unwrap();
        let source = volume.secret.unwrap();
        assert_eq!(source.secret_name.as_deref(), Some("ci-j7-a2"));
        assert_eq!(source.items.unwrap()[0].key, "KUBECONFIG");
        assert_eq!(source.default_mode, Some(0o400));
        let container = &pod_spec.containers[0];
        let mount = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "secrets")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (CONTAINER_SECRETS_DIR, Some(true))
        );
        let var = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "KUBECONFIG")
            .unwrap();
        assert_eq!(var.value.as_deref(), Some("/run/flotilla/secrets/KUBECONFIG"));
        // An attempt without secret files mounts none.
        let plain = template().build(&spec()).unwrap().spec.unwrap();
        assert!(plain.volumes.unwrap().iter().all(|v| v.secret.is_none()));
    }

    #[test]
    fn the_pod_carries_name_labels_limits_deadline_and_pool_settings() {
        let pod = template().build(&spec()).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("ci-j7-a2"));
        let labels = pod.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_WORKER], "j7-a2");
        assert_eq!(labels[LABEL_CLUSTER], "ci");
        assert_eq!(labels[LABEL_CLUSTER_ID], "c0ffee00c0ffee00c0ffee00c0ffee00");
        let p = pod.spec.unwrap();
        assert_eq!(p.restart_policy.as_deref(), Some("Never"));
        assert_eq!(p.active_deadline_seconds, Some(91 + 60));
        assert_eq!(p.termination_grace_period_seconds, Some(3));
        let selector = p.node_selector.unwrap();
        assert_eq!(selector.get("pool").map(String::as_str), Some("ci"));
        assert_eq!(selector.get("kubernetes.io/arch").map(String::as_str), Some("arm64"));
        assert!(!selector.contains_key("tier"));
        let keys: Vec<_> = p
            .tolerations
            .unwrap()
            .into_iter()
            .map(|t| (t.key.unwrap(), t.effect))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("gpu".to_string(), Some("NoSchedule".to_string())),
                ("dedicated".to_string(), None)
            ]
        );
        assert_eq!(p.service_account_name.as_deref(), Some("runner"));
        let pod_security = p.security_context.clone().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(pod_security.run_as_user, Some(JOB_UID));
        assert_eq!(pod_security.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let container_security = p.containers[0].security_context.clone().unwrap();
        assert_eq!(container_security.allow_privilege_escalation, Some(false));
        assert_eq!(
            container_security.capabilities.unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(p.image_pull_secrets.unwrap().len(), 2);
        let c = &p.containers[0];
        let limits = c.resources.clone().unwrap().limits.unwrap();
        assert_eq!(limits["cpu"].0, "500m");
        assert_eq!(limits["memory"].0, "256Mi");
        assert_eq!(limits["nvidia.com/gpu"].0, "1");
        assert!(
            c.env
                .clone()
                .unwrap()
                .iter()
                .any(|e| e.name == "FLOTILLA_MARKER" && e.value.as_deref() == Some("3-40"))
        );
    }

    #[test]
    fn bad_settings_and_missing_images_are_refused() {
        let mut s = spec();
        s.pool_settings.insert(SETTING_NODE_SELECTOR.into(), "nokey".into());
        assert!(matches!(template().build(&s), Err(ProviderError::Rejected(_))));
        let mut s = spec();
        s.pool_settings.insert(SETTING_TOLERATIONS.into(), "a:Sometimes".into());
        assert!(matches!(template().build(&s), Err(ProviderError::Rejected(_))));
        let mut s = spec();
        s.image = None;
        assert!(matches!(template().build(&s), Err(ProviderError::Rejected(_))));
    }

    fn pod(phase: &str, reason: Option<&str>, state: ContainerState) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: reason.map(str::to_string),
                container_statuses: Some(vec![ContainerStatus {
                    name: CONTAINER.into(),
                    state: Some(state),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn statuses_read_as_started_finished_or_lost() {
        let terminated = |code| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            PodView::of(&pod("Pending", None, ContainerState::default())),
            PodView::default()
        );
        assert_eq!(PodView::of(&pod("Failed", None, terminated(3))).exit_code, Some(3));
        assert_eq!(PodView::of(&pod("Succeeded", None, terminated(0))).exit_code, Some(0));
        assert!(
            PodView::of(&pod("Failed", Some("Evicted"), terminated(137)))
                .lost
                .is_some()
        );
        let waiting = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ImagePullBackOff".into()),
                message: None,
            }),
            ..Default::default()
        };
        assert!(PodView::of(&pod("Pending", None, waiting)).lost.is_some());
        let pulling = ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            }),
            ..Default::default()
        };
        assert_eq!(PodView::of(&pod("Pending", None, pulling)).lost, None);
    }
}
