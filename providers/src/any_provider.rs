//! One type for every kind of provider, so the leader can hold a set of them.
//!
//! `WorkerProvider` returns `impl Future` (no boxing on the hot path), which makes it unusable
//! as a trait object; an enum dispatches instead.

use crate::docker::DockerProvider;
use crate::kubernetes::KubernetesProvider;
use crate::process::ProcessProvider;
use crate::provider::{ArtifactRequest, ListedWorker, Observation, ProviderError, WorkerProvider, WorkerSpec};
use crate::sim::SimProvider;
use flotilla_state_machine::{PoolSpec, Resources};

pub enum AnyProvider {
    Process(ProcessProvider),
    /// Boxed, as Kubernetes: their clients and caches make them several times larger than
    /// the others.
    Docker(Box<DockerProvider>),
    Kubernetes(Box<KubernetesProvider>),
    Sim(SimProvider),
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $call:expr) => {
        match $self {
            AnyProvider::Process($p) => $call.await,
            AnyProvider::Docker($p) => $call.await,
            AnyProvider::Kubernetes($p) => $call.await,
            AnyProvider::Sim($p) => $call.await,
        }
    };
}

impl WorkerProvider for AnyProvider {
    async fn create(&self, spec: &WorkerSpec) -> Result<String, ProviderError> {
        dispatch!(self, p => p.create(spec))
    }

    async fn observe(&self, name: &str) -> Result<Observation, ProviderError> {
        dispatch!(self, p => p.observe(name))
    }

    async fn read_output(&self, name: &str, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        dispatch!(self, p => p.read_output(name, offset, max_bytes))
    }

    async fn terminate(&self, name: &str) -> Result<bool, ProviderError> {
        dispatch!(self, p => p.terminate(name))
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        dispatch!(self, p => p.remove(name))
    }

    async fn list(&self) -> Result<Vec<ListedWorker>, ProviderError> {
        dispatch!(self, p => p.list())
    }

    fn measures_capacity(&self) -> bool {
        matches!(self, AnyProvider::Kubernetes(_))
    }

    async fn capacity(&self, pool: &PoolSpec) -> Result<Option<Resources>, ProviderError> {
        dispatch!(self, p => p.capacity(pool))
    }

    async fn collect_artifacts(
        &self,
        name: &str,
        request: &ArtifactRequest,
    ) -> Result<crate::artifact_archive::Packed, ProviderError> {
        dispatch!(self, p => p.collect_artifacts(name, request))
    }
}
