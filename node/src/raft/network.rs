//! The client half of node-to-node gRPC: openraft's `RaftNetworkV2` over one cached channel per
//! peer, and forwarding of client writes and read-index requests to the leader.
//!
//! Payloads are versioned bincode of openraft's serde types inside protobuf `bytes`. A remote
//! failure travels back as a string (`Result<T, String>`), since error sources are not serde.

use crate::identity::{Identity, Incarnation};
use crate::raft::addressing::address;
use crate::raft::pb::raft_service_client::RaftServiceClient;
use crate::raft::pb::{Blob, SnapshotChunk};
use flotilla_raft_store::{NodeAddr, SnapshotFile, TypeConfig, Vote, decode, encode};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use serde::{Serialize, de::DeserializeOwned};
use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Largest gRPC message between nodes, either way. `proposer::MAX_ENTRY_BYTES` keeps every
/// entry well below it, and `append_entries` sends at most `MAX_APPEND_BYTES` at once.
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of entries sent in one AppendEntries at most; what is left goes in the next one.
/// openraft gives a streamed append only the heartbeat interval to complete, so a message of
/// tens of MB would time out and be retried forever; with this bound (and the deadline below)
/// a follower that was away catches up over large entries message by message.
pub const MAX_APPEND_BYTES: usize = 16 * 1024 * 1024;
/// Throughput an append's deadline assumes beyond openraft's TTL: a message of `n` bytes gets
/// `n / APPEND_BYTES_PER_MS` more milliseconds to be sent, written and fsynced by the follower.
const APPEND_BYTES_PER_MS: usize = 16 * 1024;
/// Least time an AppendEntries gets before it counts as failed. openraft gives each one the
/// heartbeat interval, which a cluster may set short so that a dead leader is noticed soon
/// (50 ms in `docs/benchmarks.md`'s availability runs); a follower's fsync on a loaded disk can
/// take longer than that, and an append timed out and resent costs more than one waited for.
/// (openraft's heartbeat worker also bounds each heartbeat by the interval, outside this.)
const MIN_APPEND_TIMEOUT: Duration = Duration::from_millis(250);

/// Bytes of snapshot file per gRPC message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Snapshot chunks read ahead of the network.
const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 4;

/// Lazily connected gRPC channels by peer and address; tonic reconnects a channel on its own.
#[derive(Clone, Default)]
pub struct Channels {
    by_peer: Arc<Mutex<HashMap<(u64, String), Channel>>>,
    connect_timeout_ms: u64,
    /// Source address of outgoing connections, if pinned.
    source_ip: Option<IpAddr>,
    /// Mutual TLS with this node's certificate; plain TCP when `None` (`--insecure-plaintext`).
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Channels {
    /// `source_ip` pins the source address of connections to peers. Nodes sharing one host on
    /// distinct loopback addresses set it to their own, so traffic between two of them can be
    /// told apart by address (and cut by a firewall rule, as the chaos harness does).
    pub fn new(connect_timeout_ms: u64, source_ip: Option<IpAddr>, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Channels {
            by_peer: Default::default(),
            connect_timeout_ms,
            source_ip,
            tls,
        }
    }

    /// A client of node `target`'s Raft port at `addr`. Over TLS the peer must present a
    /// certificate of the cluster CA naming `target` (a node now at an address another
    /// member had is not taken for it).
    pub fn client(&self, target: u64, addr: &str) -> Result<RaftServiceClient<Channel>, String> {
        let mut map = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        let key = (target, addr.to_string());
        let ch = match map.get(&key) {
            Some(ch) => ch.clone(),
            None => {
                let ch = self.connect(target, addr)?;
                map.insert(key, ch.clone());
                ch
            }
        };
        Ok(RaftServiceClient::new(ch)
            .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES))
    }

    /// A lazily connected channel to node `target` at `addr`.
    fn connect(&self, target: u64, addr: &str) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .tcp_nodelay(true)
            .local_address(self.source_ip)
            .http2_keep_alive_interval(Duration::from_secs(10));
        Ok(match &self.tls {
            None => endpoint.connect_lazy(),
            Some(config) => {
                let server_name = rustls_pki_types::ServerName::try_from(flotilla_pki::peer_name(target))
                    .map_err(|e| format!("peer name of node {target}: {e}"))?;
                endpoint.connect_with_connector_lazy(super::tls_connector::TlsConnector {
                    addr: addr.to_string(),
                    source_ip: self.source_ip,
                    server_name,
                    config: config.clone(),
                })
            }
        })
    }
}

pub fn to_blob<T: Serialize>(value: &T) -> Result<Blob, tonic::Status> {
    encode(value)
        .map(|data| Blob { data })
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

pub fn from_blob<T: DeserializeOwned>(blob: &Blob) -> Result<T, tonic::Status> {
    decode(&blob.data).map_err(|e| tonic::Status::invalid_argument(e.to_string()))
}

/// Creates one `PeerClient` per target; openraft keeps it for the replication stream.
#[derive(Clone)]
pub struct Network {
    pub channels: Channels,
    /// This node's identity: its cluster id goes with every message.
    pub identity: Identity,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &NodeAddr) -> PeerClient {
        PeerClient {
            target,
            addr: node.raft_addr.clone(),
            to: Incarnation(node.incarnation),
            channels: self.channels.clone(),
            identity: self.identity.clone(),
        }
    }
}

pub struct PeerClient {
    target: u64,
    addr: String,
    /// The target's data directory as the membership records it.
    to: Incarnation,
    channels: Channels,
    identity: Identity,
}

fn unreachable<E: std::fmt::Display>(e: E) -> Unreachable<TypeConfig> {
    Unreachable::from_string(e.to_string())
}

/// Maps a gRPC failure: connection problems mean "unreachable" (openraft backs off), the rest
/// are network errors.
fn rpc_error(status: tonic::Status) -> RPCError<TypeConfig> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            RPCError::Unreachable(unreachable(status))
        }
        _ => RPCError::Network(NetworkError::from_string(status.to_string())),
    }
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        request: &Req,
        timeout: Duration,
        send: impl AsyncFnOnce(
            RaftServiceClient<Channel>,
            tonic::Request<Blob>,
        ) -> Result<tonic::Response<Blob>, tonic::Status>,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        self.call_blob(to_blob(request).map_err(rpc_error)?, timeout, send)
            .await
    }

    /// `call` with the request already encoded.
    async fn call_blob<Resp: DeserializeOwned>(
        &self,
        blob: Blob,
        timeout: Duration,
        send: impl AsyncFnOnce(
            RaftServiceClient<Channel>,
            tonic::Request<Blob>,
        ) -> Result<tonic::Response<Blob>, tonic::Status>,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let client = self
            .channels
            .client(self.target, &self.addr)
            .map_err(|e| RPCError::Unreachable(unreachable(e)))?;
        let mut req = tonic::Request::new(blob);
        req.set_timeout(timeout);
        address(&mut req, self.identity.cluster_id().as_deref(), self.to);
        let resp = send(client, req).await.map_err(rpc_error)?;
        let result: Result<Resp, String> = from_blob(resp.get_ref()).map_err(rpc_error)?;
        result.map_err(|e| RPCError::Network(NetworkError::from_string(format!("node {}: {e}", self.target))))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let deadline = |bytes: usize| {
            option.hard_ttl().max(MIN_APPEND_TIMEOUT) + Duration::from_millis((bytes / APPEND_BYTES_PER_MS) as u64)
        };
        let blob = to_blob(&rpc).map_err(rpc_error)?;
        if blob.data.len() <= MAX_APPEND_BYTES {
            let timeout = deadline(blob.data.len());
            return self
                .call_blob(blob, timeout, async |mut c, r| c.append_entries(r).await)
                .await;
        }
        let keep = entries_within(&rpc.entries, MAX_APPEND_BYTES)
            .map_err(|e| RPCError::Network(NetworkError::from_string(e.to_string())))?;
        // Too many bytes for one message: send the prefix that fits and report it as a partial
        // success, which openraft answers by sending the rest (its documented contract).
        let mut rpc = rpc;
        rpc.entries.truncate(keep);
        let last = rpc.entries.last().map(|e| e.log_id);
        let blob = to_blob(&rpc).map_err(rpc_error)?;
        let timeout = deadline(blob.data.len());
        let response: AppendEntriesResponse<TypeConfig> = self
            .call_blob(blob, timeout, async |mut c, r| c.append_entries(r).await)
            .await?;
        Ok(match response {
            AppendEntriesResponse::Success => AppendEntriesResponse::PartialSuccess(last),
            other => other,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), async |mut c, r| c.vote(r).await)
            .await
    }

    /// A real Pre-Vote round trip: a peer that cannot be reached answers `Err`, which openraft
    /// never counts as a grant, so an isolated node cannot talk itself into a new term.
    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), async |mut c, r| c.pre_vote(r).await)
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&req, option.hard_ttl(), async |mut c, r| c.transfer_leader(r).await)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: flotilla_raft_store::FlotillaSnapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.channels.client(self.target, &self.addr).map_err(unreachable)?;
        let header = encode(&(vote, snapshot.meta.clone())).map_err(|e| NetworkError::from_string(e.to_string()))?;
        // A blocking reader streams the snapshot (the file's state, then the job output from
        // the store: `SnapshotWire`) in chunks through a bounded channel.
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotChunk>(SNAPSHOT_CHUNKS_IN_FLIGHT);
        let snapshot_file = snapshot.snapshot;
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = snapshot_file.wire()?;
            let mut header = Some(header);
            loop {
                let mut buf = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
                let n = (&mut file).take(SNAPSHOT_CHUNK_BYTES as u64).read_to_end(&mut buf)?;
                if n == 0 && header.is_none() {
                    return Ok(());
                }
                let chunk = SnapshotChunk {
                    header: header.take().unwrap_or_default(),
                    data: buf,
                };
                if tx.blocking_send(chunk).is_err() {
                    return Ok(()); // receiver gone: the RPC failed or was cancelled
                }
                if n == 0 {
                    return Ok(());
                }
            }
        });
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        request.set_timeout(option.hard_ttl());
        address(&mut request, self.identity.cluster_id().as_deref(), self.to);
        let send = client.install_snapshot(request);
        let response = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = send => r.map_err(|s| match rpc_error(s) {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                other => StreamingError::Network(NetworkError::from_string(other.to_string())),
            })?,
        };
        reader
            .await
            .map_err(|e| NetworkError::from_string(e.to_string()))?
            .map_err(|e| NetworkError::from_string(e.to_string()))?;
        let result: Result<SnapshotResponse<TypeConfig>, String> =
            from_blob(response.get_ref()).map_err(|e| NetworkError::from_string(e.to_string()))?;
        result.map_err(|e| StreamingError::Network(NetworkError::from_string(format!("node {}: {e}", self.target))))
    }
}

/// How many of `entries`, from the first, fit in `budget_bytes` once encoded; at least one (a
/// single entry is bounded by `MAX_ENTRY_BYTES` where it is created). Only called for a batch
/// already found too large, so the common case pays no second encoding.
fn entries_within(entries: &[flotilla_raft_store::Entry], budget_bytes: usize) -> std::io::Result<usize> {
    let mut total = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        total = total.saturating_add(flotilla_raft_store::encoded_len(entry)?);
        if total > budget_bytes {
            return Ok(i.max(1));
        }
    }
    Ok(entries.len())
}
