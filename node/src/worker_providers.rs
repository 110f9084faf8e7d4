//! The worker providers this node drives when it leads, built from its settings: the process
//! provider when `--process-provider` is set, Docker when `--docker-socket` is set, Kubernetes when
//! `--kubernetes-namespace` is set, the simulated provider when `--sim-duration-ms` is set;
//! and where their workers live (`whereabouts`).

use crate::leader::Whereabouts;
use crate::settings::Settings;
use anyhow::Context;
use flotilla_providers::{
    AnyProvider, BreakerConfig, DockerConfig, DockerProvider, GuardConfig, KubernetesConfig, KubernetesProvider,
    ProcessConfig, ProcessProvider, ProviderSet, SimConfig, SimProvider,
};
use flotilla_state_machine::ProviderKind;

/// Where this node's workers live: process and Docker workers on its `--host-id`, Docker
/// workers at the engine's address instead when every node reaches it by `tcp://`.
pub fn whereabouts(settings: &Settings) -> Whereabouts {
    let here = Whereabouts::for_host(&settings.host_id);
    match &settings.docker_endpoint {
        Some(endpoint) if endpoint.is_shared() => here.with(ProviderKind::Docker, endpoint.to_string()),
        _ => here,
    }
}

pub fn from_settings(settings: &Settings) -> anyhow::Result<ProviderSet> {
    let guard = GuardConfig {
        call_timeout_ms: settings.provider_call_timeout_ms,
        breaker: BreakerConfig {
            failure_threshold: settings.provider_breaker_failures,
            open_ms: settings.provider_breaker_open_ms,
        },
        ..GuardConfig::default()
    };
    let mut set = ProviderSet::new();
    if settings.process_provider {
        let process = ProcessProvider::new(ProcessConfig {
            root: settings.process_work_dir.clone(),
            secrets_dir: settings.process_secrets_dir.clone(),
            run_as: settings.process_run_as.clone(),
        })
        .with_context(|| {
            format!(
                "preparing the process work directory {}",
                settings.process_work_dir.display()
            )
        })?;
        set = set.with(ProviderKind::Process, AnyProvider::Process(process), guard.clone());
    }
    if let Some(endpoint) = &settings.docker_endpoint {
        if endpoint.is_plain_tcp() {
            tracing::warn!(
                %endpoint,
                "the docker engine is reached over plain HTTP: whoever can reach it or listen on the way runs containers as root on its host; give --docker-cert-path for TLS"
            );
        }
        let mut config = DockerConfig::new(endpoint.clone(), settings.cluster_name.clone());
        if let Some(network) = &settings.docker_network {
            config.network_mode = network.clone();
        }
        config.default_image = settings.docker_default_image.clone();
        let docker = DockerProvider::new(config);
        set = set.with(
            ProviderKind::Docker,
            AnyProvider::Docker(Box::new(docker)),
            guard.clone(),
        );
    }
    if let Some(namespace) = &settings.kubernetes_namespace {
        let mut config = KubernetesConfig::new(namespace.clone(), settings.cluster_name.clone());
        config.api_url = settings.kubernetes_api_url.clone();
        config.default_image = settings.kubernetes_default_image.clone();
        config.helper_image = settings.kubernetes_helper_image.clone();
        let kubernetes = KubernetesProvider::new(config).context("configuring the kubernetes provider")?;
        set = set.with(
            ProviderKind::Kubernetes,
            AnyProvider::Kubernetes(Box::new(kubernetes)),
            guard.clone(),
        );
    }
    if let Some(default_duration_ms) = settings.sim_duration_ms {
        set = set.with(
            ProviderKind::Sim,
            AnyProvider::Sim(SimProvider::new(SimConfig { default_duration_ms })),
            guard,
        );
    }
    Ok(set)
}
