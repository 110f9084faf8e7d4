//! The cluster's PKI, shared by the node, the CLI and the tests: the cluster CA
//! (`authority.rs`), the node certificates it issues and the peer names they carry, and the
//! TLS settings of a client that trusts the cluster (`client.rs`).
//!
//! One crypto stack: rustls and rcgen over ring, as kube and async-nats already build it.

pub mod authority;
pub mod client;

pub use authority::{
    CaError, ClusterCa, Issued, NodeCertRequest, certificate_sha256, create_ca, node_id_of_peer_name,
    parse_certificates, peer_name, peer_node_id,
};
pub use client::{ClientTls, read_trust_bundle};
