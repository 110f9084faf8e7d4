//! The worker providers this node drives when it leads, built from its settings: the process
//! provider always, Docker when `--docker-socket` is set, Kubernetes when
//! `--kubernetes-namespace` is set, the simulated provider when `--sim-duration-ms` is set.

use crate::settings::Settings;
use anyhow::Context;
use flotilla_providers::{
    AnyProvider, BreakerConfig, DockerConfig, DockerProvider, GuardConfig, KubernetesConfig, KubernetesProvider,
    ProcessConfig, ProcessProvider, ProviderSet, SimConfig, SimProvider,
};
use flotilla_state_machine::ProviderKind;

pub fn from_settings(settings: &Settings) -> anyhow::Result<ProviderSet> {
    let guard = GuardConfig {
        call_timeout_ms: settings.provider_call_timeout_ms,
        breaker: BreakerConfig {
            failure_threshold: settings.provider_breaker_failures,
            open_ms: settings.provider_breaker_open_ms,
        },
        ..GuardConfig::default()
    };
    let process = ProcessProvider::new(ProcessConfig {
        root: settings.process_work_dir.clone(),
    })
    .with_context(|| {
        format!(
            "preparing the process work directory {}",
            settings.process_work_dir.display()
        )
    })?;
    let mut set = ProviderSet::new().with(ProviderKind::Process, AnyProvider::Process(process), guard.clone());
    if let Some(socket) = &settings.docker_socket {
        // Removed containers are remembered beside the process workers: both are per host.
        let tombstones = settings.process_work_dir.join(".removed-docker");
        let mut config = DockerConfig::new(socket.clone(), settings.cluster_name.clone(), tombstones);
        config.network_mode = settings.docker_network.clone();
        config.default_image = settings.docker_default_image.clone();
        let docker = DockerProvider::new(config).context("preparing the docker provider's tombstone directory")?;
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
