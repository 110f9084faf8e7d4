//! Artifacts in the cluster: the files a job kept, as blobs on every node's disk.
//!
//! A job's `artifacts` are packed by its provider when its steps end (`collector.rs`), kept in
//! this node's `BlobStore` under the SHA-256 of their bytes (`blob_store.rs`) and copied to
//! the other members over the node-to-node port (`peers.rs`, served by `serve.rs`) before the
//! leader proposes the record (`Command::ArtifactStored`), so a record always names a blob a
//! majority holds and losing a node loses no artifact. The bytes never enter the Raft log:
//! commit latency does not grow with them. Every node removes the blobs no record names
//! (`sweep.rs`) and fetches from a peer a blob it lacks when it must serve or deliver it.
//!
//! Caches (`Command::CacheSaved`) are blobs of the same kind, packed, stored, copied and swept
//! by the same code: a record of either kind keeps its blob alive.

mod blob_store;
mod collector;
mod object_blobs;
mod peers;
mod receive;
mod send;
pub mod serve;
mod sweep;
mod throttle;

pub use blob_store::{BlobError, BlobStore, DigestCheck};
pub use collector::{CollectOrder, Collector, Progress, Purpose};
pub use object_blobs::{ObjectBlobs, ObjectStoreConfig};
pub use peers::{BLOB_CHUNK_BYTES, BlobPeers, MAX_BLOB_BYTES, copy_timeout};
pub use receive::receive_checked;
pub use send::read_checked;
pub use sweep::{SWEEP_GRACE_MS, run_sweeps, unreferenced};
pub use throttle::CopyThrottle;
