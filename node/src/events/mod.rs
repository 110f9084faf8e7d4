//! Consumers of the node's event journal that are not API streams: the JetStream publisher
//! (leader only) and the applied observer (metrics and spans known at apply time, every node).
//! Both read the journal through `flotilla_raft_store::JournalCursor`, as the SSE endpoint does.

pub mod applied_observer;
pub mod nats_publisher;
