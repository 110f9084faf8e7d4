//! Who a Raft message is for: every node-to-node request carries the sender's cluster id and
//! the incarnation of the data directory it means to reach (`identity.rs` explains both), and
//! the receiver admits it only if both are its own.
//!
//! The decision is a pure function (`admit`), tested as data; the service calls it before it
//! decodes anything.

use crate::identity::Incarnation;
use tonic::metadata::{MetadataMap, MetadataValue};

/// The sender's cluster id (absent while the sender belongs to none).
pub const CLUSTER_HEADER: &str = "flotilla-cluster-id";
/// The incarnation the sender expects the receiver to be, 16 hex digits.
pub const TO_INCARNATION_HEADER: &str = "flotilla-to-incarnation";

/// Stamps a request for the member with incarnation `to`, from a node of `cluster_id`.
pub fn address<T>(request: &mut tonic::Request<T>, cluster_id: Option<&str>, to: Incarnation) {
    let metadata = request.metadata_mut();
    if let Some(id) = cluster_id.and_then(|id| MetadataValue::try_from(id).ok()) {
        metadata.insert(CLUSTER_HEADER, id);
    }
    if let Ok(value) = MetadataValue::try_from(to.to_string()) {
        metadata.insert(TO_INCARNATION_HEADER, value);
    }
}

/// What a request's headers said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addressed {
    pub cluster_id: Option<String>,
    /// `None` when the header is missing or not 16 hex digits.
    pub to: Option<Incarnation>,
}

impl Addressed {
    pub fn read(metadata: &MetadataMap) -> Addressed {
        let text = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Addressed {
            cluster_id: text(CLUSTER_HEADER),
            to: text(TO_INCARNATION_HEADER)
                .filter(|t| t.len() == 16)
                .and_then(|t| u64::from_str_radix(&t, 16).ok())
                .map(Incarnation),
        }
    }
}

/// The receiver's side of the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Admit, and record first that this node belongs to the sender's cluster.
    AdmitAndJoin(String),
    Refuse(Refusal),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the request names no incarnation (flotilla-to-incarnation): it does not come from a Flotilla node of this version"
    )]
    Unaddressed,
    #[error(
        "node {node}'s data directory is not the one its cluster added (the cluster expects incarnation {expected}, this directory is {actual}): its log was lost or replaced, so it may not vote or take entries as that member. Remove it (flotilla cluster remove {node}) and let it join again"
    )]
    OtherIncarnation {
        node: u64,
        expected: Incarnation,
        actual: Incarnation,
    },
    #[error("node {node} belongs to cluster {own}; this request comes from cluster {sender}")]
    OtherCluster { node: u64, own: String, sender: String },
    #[error("node {node} belongs to cluster {own}; this request comes from a node that belongs to no cluster")]
    NoCluster { node: u64, own: String },
}

/// Whether node `node` (incarnation `own_incarnation`, of cluster `own_cluster` if it knows
/// one) takes a request addressed as `addressed`.
pub fn admit(node: u64, own_incarnation: Incarnation, own_cluster: Option<&str>, addressed: &Addressed) -> Admission {
    let Some(to) = addressed.to else {
        return Admission::Refuse(Refusal::Unaddressed);
    };
    if to != own_incarnation {
        return Admission::Refuse(Refusal::OtherIncarnation {
            node,
            expected: to,
            actual: own_incarnation,
        });
    }
    match (own_cluster, addressed.cluster_id.as_deref()) {
        (Some(own), Some(sender)) if own == sender => Admission::Admit,
        (Some(own), Some(sender)) => Admission::Refuse(Refusal::OtherCluster {
            node,
            own: own.to_string(),
            sender: sender.to_string(),
        }),
        (Some(own), None) => Admission::Refuse(Refusal::NoCluster {
            node,
            own: own.to_string(),
        }),
        // The sender reached this very directory (the incarnation is random and only a cluster
        // that added this node knows it): its cluster is the one this node was added to.
        (None, Some(sender)) => Admission::AdmitAndJoin(sender.to_string()),
        (None, None) => Admission::Admit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Incarnation = Incarnation(0xabc);
    const CLUSTER: &str = "0123456789abcdef0123456789abcdef";

    fn addressed(cluster: Option<&str>, to: Option<u64>) -> Addressed {
        Addressed {
            cluster_id: cluster.map(str::to_string),
            to: to.map(Incarnation),
        }
    }

    #[test]
    fn a_message_for_this_incarnation_of_this_cluster_is_admitted() {
        assert_eq!(
            admit(2, ME, Some(CLUSTER), &addressed(Some(CLUSTER), Some(0xabc))),
            Admission::Admit
        );
    }

    #[test]
    fn a_message_for_an_earlier_incarnation_is_refused_with_what_to_do() {
        let got = admit(2, ME, None, &addressed(Some(CLUSTER), Some(0x111)));
        let Admission::Refuse(refusal) = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            refusal,
            Refusal::OtherIncarnation {
                node: 2,
                expected: Incarnation(0x111),
                actual: ME
            }
        );
        assert!(refusal.to_string().contains("flotilla cluster remove 2"), "{refusal}");
    }

    #[test]
    fn a_new_member_learns_its_cluster_from_the_first_message() {
        assert_eq!(
            admit(2, ME, None, &addressed(Some(CLUSTER), Some(0xabc))),
            Admission::AdmitAndJoin(CLUSTER.to_string())
        );
    }

    #[test]
    fn another_cluster_or_none_or_no_address_is_refused() {
        let other = "ffffffffffffffffffffffffffffffff";
        assert!(matches!(
            admit(2, ME, Some(CLUSTER), &addressed(Some(other), Some(0xabc))),
            Admission::Refuse(Refusal::OtherCluster { .. })
        ));
        assert!(matches!(
            admit(2, ME, Some(CLUSTER), &addressed(None, Some(0xabc))),
            Admission::Refuse(Refusal::NoCluster { .. })
        ));
        assert_eq!(
            admit(2, ME, Some(CLUSTER), &addressed(Some(CLUSTER), None)),
            Admission::Refuse(Refusal::Unaddressed)
        );
    }

    #[test]
    fn headers_round_trip() {
        let mut request = tonic::Request::new(());
        address(&mut request, Some(CLUSTER), Incarnation(0x1f));
        assert_eq!(
            Addressed::read(request.metadata()),
            addressed(Some(CLUSTER), Some(0x1f))
        );
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert(TO_INCARNATION_HEADER, "not-hex".parse().unwrap());
        assert_eq!(Addressed::read(request.metadata()).to, None);
    }
}
