//! A Kubernetes pool's capacity: the allocatable resources of the nodes its `node_selector`
//! picks, minus what pods other than this cluster's workers request on them. Flotilla's own
//! pods are left out because the replicated state already counts them as allocated.

use super::quantity::{cpu_millis, memory_mib, whole};
use crate::provider::LABEL_CLUSTER;
use flotilla_state_machine::Resources;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::{BTreeMap, BTreeSet};

pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

fn amounts(map: &BTreeMap<String, Quantity>) -> Resources {
    let get = |k: &str| map.get(k).map(|q| q.0.as_str());
    Resources {
        cpu_millis: get("cpu").and_then(cpu_millis).unwrap_or(0),
        memory_mib: get("memory").and_then(memory_mib).unwrap_or(0),
        gpus: get(GPU_RESOURCE).and_then(whole).unwrap_or(0),
    }
}

fn add(a: Resources, b: Resources) -> Resources {
    Resources {
        cpu_millis: a.cpu_millis.saturating_add(b.cpu_millis),
        memory_mib: a.memory_mib.saturating_add(b.memory_mib),
        gpus: a.gpus.saturating_add(b.gpus),
    }
}

/// What one pod requests (limits stand in for missing requests, as Kubernetes defaults them).
fn requested(pod: &Pod) -> Resources {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers.iter().fold(Resources::ZERO, |sum, c| {
        let r = c.resources.clone().unwrap_or_default();
        let mut wanted = r.limits.unwrap_or_default();
        wanted.extend(r.requests.unwrap_or_default());
        add(sum, amounts(&wanted))
    })
}

/// `nodes` are the pool's nodes (already selected); `pods` are the cluster's pods that are
/// not finished.
pub fn pool_capacity(nodes: &[Node], pods: &[Pod], cluster: &str) -> Resources {
    let names: BTreeSet<&str> = nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
    let total = nodes.iter().fold(Resources::ZERO, |sum, n| {
        add(
            sum,
            n.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .map(amounts)
                .unwrap_or_default(),
        )
    });
    let used = pods
        .iter()
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| names.contains(n))
        })
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CLUSTER))
                .map(String::as_str)
                != Some(cluster)
        })
        .fold(Resources::ZERO, |sum, p| add(sum, requested(p)));
    total.saturating_sub(&used)
}

#[cfg(test)]
mod tests {
    use super::pool_capacity;
    use flotilla_state_machine::Resources;
    use k8s_openapi::api::core::v1::{Container, Node, NodeStatus, Pod, PodSpec, PodStatus, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn node(name: &str, cpu: &str, memory: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: Some(BTreeMap::from([
                    ("cpu".into(), Quantity(cpu.into())),
                    ("memory".into(), Quantity(memory.into())),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(node: &str, cluster: Option<&str>, cpu: &str, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                labels: cluster.map(|c| BTreeMap::from([(super::LABEL_CLUSTER.to_string(), c.to_string())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                containers: vec![Container {
                    resources: Some(ResourceRequirements {
                        requests: Some(BTreeMap::from([("cpu".into(), Quantity(cpu.into()))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn capacity_is_allocatable_minus_other_pods_on_the_pools_nodes() {
        let nodes = [node("a", "4", "8Gi"), node("b", "2000m", "4Gi")];
        let pods = [
            pod("a", None, "500m", "Running"),
            pod("b", Some("other"), "1", "Pending"),
            pod("a", Some("ci"), "2", "Running"),
            pod("a", None, "3", "Succeeded"),
            pod("z", None, "3", "Running"),
        ];
        assert_eq!(pool_capacity(&nodes, &pods, "ci"), Resources::new(4500, 12 * 1024, 0));
    }
}
