//! Which peers the Raft port serves under mutual TLS: the handshake already proved the
//! caller holds a certificate of the cluster CA; this decides, per request, whether the node
//! it names is one this node may hear from. A removed member's certificate stays valid until
//! it expires, so the CA alone is not enough.

use std::collections::BTreeSet;

/// Why a peer's request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("the caller presented no certificate")]
    NoCertificate,
    #[error("the caller's certificate names no node (peer name node-<id>.flotilla)")]
    NoNode,
    #[error("node {0} is not a member of this node's cluster")]
    NotMember(u64),
}

/// Whether node `caller` (from its certificate, `None` if it names none) may send Raft
/// requests to a node whose membership holds `members`. A node that knows no membership yet
/// (it is being added and has not received its log) hears from any node of the CA: the
/// leader adding it is the first to call.
pub fn admit_peer(certificate: Option<Option<u64>>, members: &BTreeSet<u64>) -> Result<(), PeerRefusal> {
    let caller = certificate
        .ok_or(PeerRefusal::NoCertificate)?
        .ok_or(PeerRefusal::NoNode)?;
    if members.is_empty() || members.contains(&caller) {
        Ok(())
    } else {
        Err(PeerRefusal::NotMember(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_heard_others_are_not() {
        let members = BTreeSet::from([1, 2, 3]);
        assert_eq!(admit_peer(Some(Some(2)), &members), Ok(()));
        assert_eq!(admit_peer(Some(Some(4)), &members), Err(PeerRefusal::NotMember(4)));
        assert_eq!(admit_peer(Some(None), &members), Err(PeerRefusal::NoNode));
        assert_eq!(admit_peer(None, &members), Err(PeerRefusal::NoCertificate));
    }

    #[test]
    fn a_node_without_membership_hears_any_node_of_the_ca() {
        assert_eq!(admit_peer(Some(Some(9)), &BTreeSet::new()), Ok(()));
        assert_eq!(admit_peer(Some(None), &BTreeSet::new()), Err(PeerRefusal::NoNode));
    }
}
