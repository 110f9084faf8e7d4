//! Node configuration: command-line flags and environment, over an optional TOML file, over
//! defaults. Every option is documented in `flotilla-node --help`.

use anyhow::Context;
use clap::Parser;
use flotilla_providers::DockerEndpoint;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `--blob-copy-mib-per-s` unless given: a 1 GiB artifact (about 540 MB packed) reaches two
/// peers in about 16 s, and the submissions beside it keep their p99 within 1.8 times what it
/// is without it, where 128 MiB/s reached 2.0 (`docs/benchmarks.md`, "Artifacts").
pub const DEFAULT_BLOB_COPY_MIB_PER_S: u64 = 64;
/// The largest `--blob-copy-mib-per-s` (1 TiB/s: no disk or link goes faster).
pub const MAX_BLOB_COPY_MIB_PER_S: u64 = 1 << 20;

/// The largest `--storage-memtable-mib` and `--storage-block-cache-mib` (1 TiB).
pub const MAX_STORAGE_MEMORY_MIB: usize = 1 << 20;

/// Options as given; `None` means "not given here". Used for both flags and the TOML file.
#[derive(Parser, Debug, Default, Deserialize)]
#[command(name = "flotilla-node", version, about = "Runs one member of a Flotilla cluster")]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// TOML file with any of the options below (flags and environment win over it).
    #[arg(long, env = "FLOTILLA_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id, unique in the cluster and never reused.
    #[arg(long, env = "FLOTILLA_NODE_ID")]
    pub id: Option<u64>,
    /// Directory for the Raft log (RocksDB) and snapshots. Created if missing.
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for node-to-node gRPC (Raft). Default 127.0.0.1:7001.
    #[arg(long, env = "FLOTILLA_RAFT_ADDR")]
    pub raft_addr: Option<SocketAddr>,
    /// Address for the REST API. Default 127.0.0.1:8001.
    #[arg(long, env = "FLOTILLA_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Address other nodes reach this node's Raft server at, when it differs from the bind
    /// address (`host:port`; a DNS name such as a StatefulSet pod's stable name). Default:
    /// --raft-addr.
    #[arg(long, env = "FLOTILLA_ADVERTISE_RAFT_ADDR")]
    pub advertise_raft_addr: Option<String>,
    /// Address clients and redirects reach this node's API at (`host:port`). Default:
    /// --api-addr.
    #[arg(long, env = "FLOTILLA_ADVERTISE_API_ADDR")]
    pub advertise_api_addr: Option<String>,
    /// At start, ask the cluster at this API address (http://host:port) to add this node.
    #[arg(long, env = "FLOTILLA_JOIN")]
    pub join: Option<String>,
    /// On a start with empty storage, found a new cluster with this node as its only voter
    /// (what `POST /v1/cluster/init` does). Give it to one node only: the first of a
    /// StatefulSet or compose file. Restarts with data ignore it.
    #[arg(long, env = "FLOTILLA_BOOTSTRAP", num_args = 0..=1, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// API addresses (`host:port`, comma-separated) of the cluster's other founding members.
    /// Before founding, every one of them must answer that it belongs to no cluster; one that
    /// does belongs to the cluster this node should be in, and the node asks it to join instead
    /// (a node whose data directory was lost never founds a second cluster). Default: none (a
    /// one-node cluster).
    #[arg(long, env = "FLOTILLA_BOOTSTRAP_PEERS", value_delimiter = ',')]
    pub bootstrap_peers: Option<Vec<String>>,
    /// Name of the host this node runs on, as pools record it: process pools (and Docker pools
    /// behind a local socket) are bound to the host of the node that registered them, and
    /// only a leader on that host drives their workers. Nodes that share a host (and its work
    /// directory or Docker socket) must share it. Default: `/etc/machine-id`, else the
    /// hostname.
    #[arg(long, env = "FLOTILLA_HOST_ID")]
    pub host_id: Option<String>,
    /// Leader heartbeat interval. Default 250.
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Lower bound of the election timeout. Default 1500. A follower stands for election (after
    /// a Pre-Vote) once it has heard nothing from the leader for the upper bound (the leader's
    /// lease) plus a random time between the two bounds: 4.5-6 s by default. 50 / 250 / 500
    /// (heartbeat / min / max) fail over in about a second, but a loaded 2-core cluster
    /// overloaded for ten minutes stalled longer than that and elected a new leader without a
    /// fault (`docs/benchmarks.md`, availability); size them from
    /// `flotilla_raft_leader_contact_gap_seconds` on your own load.
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    /// Upper bound of the election timeout, and the leader's lease. Default 3000.
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// Pre-Vote before an election: a node whose election timer fires first asks whether a
    /// quorum would vote for it, and only then raises its term, so a follower back from a
    /// pause or a partition does not depose a healthy leader. Default true.
    #[arg(long)]
    pub pre_vote: Option<bool>,
    /// Build a snapshot after this many applied entries since the last one. Default 10000.
    #[arg(long)]
    pub snapshot_after_entries: Option<u64>,
    /// Build a snapshot once this many bytes of entries were appended since the last one,
    /// whatever their number. Default 268435456 (256 MiB).
    #[arg(long)]
    pub snapshot_after_log_bytes: Option<u64>,
    /// Entries kept in the log behind the newest snapshot (for slow followers). Default 1000.
    #[arg(long)]
    pub log_entries_kept_after_snapshot: Option<u64>,
    /// REST requests in progress at once; beyond it requests get 429. Default 256.
    #[arg(long)]
    pub max_concurrent_requests: Option<usize>,
    /// Largest accepted request body. Default 1048576.
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// REST connections open at once; past it a new connection is closed at once. Default 4096.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's headers, also the longest an idle keep-alive
    /// connection is kept. Default 30000.
    #[arg(long)]
    pub header_read_timeout_ms: Option<u64>,
    /// Time limit for one forwarded write or node-to-node RPC. Default 10000.
    #[arg(long)]
    pub rpc_timeout_ms: Option<u64>,
    /// Whether API callers need tokens: `tokens` (every route but health, the OpenAPI
    /// document, the public cluster status, init and token bootstrap needs a live token of a
    /// role the route admits) or `none` (anyone who reaches the port may do anything; logged
    /// as a warning: for a trusted network only). Default `tokens`.
    #[arg(long, env = "FLOTILLA_AUTH", value_enum)]
    pub auth: Option<crate::auth::AuthMode>,
    /// A file holding the cluster's first admin token, pre-shared by the deployment
    /// (`flt_` and 64 hex digits; `flotilla token generate` makes one; mode 0600). The node
    /// that founds the cluster makes it the bootstrap admin token as soon as it leads,
    /// `POST /v1/cluster/init` asks for it, `POST /v1/tokens/bootstrap` is refused, and a
    /// joining node (--join, or a founding node that finds its peers in a cluster) presents it
    /// to be added. Give every node the same file. Default: none (`cluster init` hands out
    /// a new admin token; joining nodes must be added by an admin).
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// With --admin-token-file: when this node leads a cluster where no token has that file's
    /// secret (every admin token lost or revoked), commit it as a new admin token, once per
    /// start, logged as a warning. For recovery only: restart without it afterwards, or a
    /// revoked token comes back at the next start.
    #[arg(long, env = "FLOTILLA_RECOVER_ADMIN_TOKEN", num_args = 0..=1, default_missing_value = "true")]
    pub recover_admin_token: Option<bool>,
    /// The key-encryption keys of the cluster's secrets: one per line (`fsk_` and 64 hex
    /// digits; `flotilla secret generate-key` makes one), the first wrapping new data keys,
    /// any others only opening old ones while keys are rotated; mode 0600 (0640 for a
    /// Kubernetes Secret). Give every node the same file. Without it this node neither stores
    /// secrets nor, as leader, starts jobs that use them.
    #[arg(long, env = "FLOTILLA_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// The cluster CA's certificates (PEM; several while a new CA is rotated in), the same file
    /// on every node; `flotilla tls ca-create` makes one. With --tls-ca-key-file, the node
    /// issues itself a certificate at start (in memory, renewed while it runs), serves the API
    /// over HTTPS with it and requires it of peers on the Raft port (mutual TLS: a peer must
    /// present a certificate of this CA naming a current member). Required unless
    /// --insecure-plaintext.
    #[arg(long, env = "FLOTILLA_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// The key of one of the CA certificates in --tls-ca-file (PEM; mode 0600 or 0640: a file
    /// every user may read is refused).
    #[arg(long, env = "FLOTILLA_TLS_CA_KEY_FILE")]
    pub tls_ca_key_file: Option<PathBuf>,
    /// More names or IP addresses clients reach this node's API by (comma-separated), beyond
    /// `localhost`, 127.0.0.1, the --api-addr address and the host of --advertise-api-addr,
    /// which its certificate always carries.
    #[arg(long, env = "FLOTILLA_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Option<Vec<String>>,
    /// A join token (`fjt_...`, from `flotilla cluster join-token create`): with --join and
    /// --join-ca-sha256, and no --tls-ca-* files, the node fetches the cluster CA from the
    /// seed at its first start (kept in <data-dir>/tls, the key with mode 0600) and presents
    /// the token to be added. Single-use; it expires.
    #[arg(long, env = "FLOTILLA_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// The hash of the cluster CA's certificate the seed must present (`sha256:<hex>`, given
    /// with the join token): the seed is trusted for the CA it hands out only if its own
    /// certificate chain holds that certificate.
    #[arg(long, env = "FLOTILLA_JOIN_CA_SHA256")]
    pub join_ca_sha256: Option<String>,
    /// Development only: plain HTTP on the API and plain TCP between nodes, so anyone on the
    /// network reads every token and job sent, and anyone who reaches the Raft port can send
    /// it Raft messages. Logged as a warning at start. All nodes of a cluster must agree.
    #[arg(long, env = "FLOTILLA_INSECURE_PLAINTEXT", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_plaintext: Option<bool>,
    /// Enables the `process` provider: jobs of process pools then run as `sh` on this node's
    /// host, as this node's user (with an emptied environment, in --process-work-dir). Off by
    /// default: a job on it is a shell on a control-plane host. For development and trusted
    /// single-tenant hosts; isolate jobs with the docker or kubernetes provider otherwise.
    #[arg(long, env = "FLOTILLA_PROCESS_PROVIDER", num_args = 0..=1, default_missing_value = "true")]
    pub process_provider: Option<bool>,
    /// Directory of the process provider's workers; the nodes of one cluster on one host share
    /// it so a new leader adopts running workers. It belongs to one cluster: it also remembers
    /// the names of removed workers so none runs twice, and names restart with a new cluster.
    /// Default: <system temp>/flotilla-workers.
    #[arg(long, env = "FLOTILLA_PROCESS_WORK_DIR")]
    pub process_work_dir: Option<PathBuf>,
    /// Runs process jobs as this user of the host (a name or a number) instead of the node's:
    /// each step switches to it with `setpriv` (no supplementary groups, capabilities or new
    /// privileges), so jobs cannot read the node's files or write its data directory. Needs
    /// the node to run as root. Default: the node's own user.
    #[arg(long, env = "FLOTILLA_PROCESS_RUN_AS_USER")]
    pub process_run_as_user: Option<String>,
    /// Directory of process jobs' secret files; it must be on a tmpfs, so no secret reaches
    /// a disk. Default: a directory per work directory under /dev/shm/flotilla-secrets.
    #[arg(long, env = "FLOTILLA_PROCESS_SECRETS_DIR")]
    pub process_secrets_dir: Option<PathBuf>,
    /// How often the leader reconciles workers with the state. Default 200.
    #[arg(long)]
    pub leader_tick_ms: Option<u64>,
    /// How often the leader removes what the retention policies make due. Default 5000.
    #[arg(long)]
    pub retention_interval_ms: Option<u64>,
    /// How often each node removes the artifact blobs no record names and fetches from a peer
    /// those it lacks. Default 60000.
    #[arg(long)]
    pub artifact_upkeep_interval_ms: Option<u64>,
    /// The most MiB a second this node sends to its peers as artifact and cache copies, all
    /// copies together; 0 for no bound. Default 64.
    #[arg(long)]
    pub blob_copy_mib_per_s: Option<u64>,
    /// Keep artifact and cache blobs in an S3-compatible bucket (`s3://bucket/prefix`)
    /// rather than on every node's disk; credentials and region from the usual `AWS_*`
    /// variables. Every node must name the same bucket. Default: the nodes' disks.
    #[arg(long, env = "FLOTILLA_ARTIFACT_STORE")]
    pub artifact_store: Option<String>,
    /// The object store's endpoint, for S3-compatible servers other than AWS
    /// (`https://minio.internal:9000`; `http://` is allowed for a server on loopback).
    #[arg(long, env = "FLOTILLA_ARTIFACT_STORE_ENDPOINT")]
    pub artifact_store_endpoint: Option<String>,
    /// Name of this cluster: prefix of its Docker container names and value of their
    /// `flotilla.cluster` label. Clusters sharing a Docker Engine need different names.
    /// Default `flotilla`.
    #[arg(long, env = "FLOTILLA_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Docker Engine to run `docker` pools on: its socket's path (`/var/run/docker.sock`, one
    /// host's: a leader on another host leaves its workers alone) or `tcp://HOST:PORT` of an
    /// engine every node reaches (any leader drives its workers). Setting it enables the
    /// `docker` provider. The engine may be down at start: calls fail until it answers.
    #[arg(long, env = "FLOTILLA_DOCKER_SOCKET")]
    pub docker_socket: Option<String>,
    /// Directory with `ca.pem`, `cert.pem` and `key.pem` (Docker's DOCKER_CERT_PATH layout):
    /// a `tcp://` engine is then reached over TLS with this client certificate. Without it a
    /// `tcp://` engine is plain HTTP, which start-up logs as a warning.
    #[arg(long, env = "FLOTILLA_DOCKER_CERT_PATH")]
    pub docker_cert_path: Option<PathBuf>,
    /// Network of job containers on Docker pools whose `network` setting names none, e.g.
    /// `bridge` or a network of the operator's. Default `none`: jobs reach no network, the
    /// cluster's own ports included.
    #[arg(long)]
    pub docker_network: Option<String>,
    /// Image for jobs on Docker pools that name none. Default: such jobs fail.
    #[arg(long)]
    pub docker_default_image: Option<String>,
    /// Namespace of worker pods; setting it enables the `kubernetes` provider for pools that
    /// name it (the cluster name then prefixes pod names: lowercase letters, digits, '-').
    #[arg(long, env = "FLOTILLA_KUBERNETES_NAMESPACE")]
    pub kubernetes_namespace: Option<String>,
    /// Kubernetes API server URL. Default: found as kubectl finds it (the pod's service
    /// account inside a cluster, else KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "FLOTILLA_KUBERNETES_API_URL")]
    pub kubernetes_api_url: Option<String>,
    /// Image for jobs on Kubernetes pools that name none. Default: such jobs fail.
    #[arg(long)]
    pub kubernetes_default_image: Option<String>,
    /// Image holding `flotilla-node` (the nodes' own image) that a repository pipeline's pod
    /// runs first to fetch its source from the nodes. Default: such jobs fail, saying so.
    #[arg(long, env = "FLOTILLA_KUBERNETES_HELPER_IMAGE")]
    pub kubernetes_helper_image: Option<String>,
    /// Enables the `sim` provider (workers that exist only in the leader's memory and finish
    /// after this many ms, or the job's SIM_DURATION_MS) for pools that name it. For
    /// benchmarks and tests: its jobs run nothing. Default: disabled.
    #[arg(long, env = "FLOTILLA_SIM_DURATION_MS")]
    pub sim_duration_ms: Option<u64>,
    /// Time limit of one call to a provider (create, observe, stop...). Default 10000.
    #[arg(long)]
    pub provider_call_timeout_ms: Option<u64>,
    /// Consecutive failed calls after which a provider's circuit breaker opens. Default 5.
    #[arg(long)]
    pub provider_breaker_failures: Option<u32>,
    /// How long an open breaker fails calls at once before one probe call. Default 5000.
    #[arg(long)]
    pub provider_breaker_open_ms: Option<u64>,
    /// Most events a node keeps in memory for `/v1/events` resumes and the NATS publisher's
    /// catch-up; older ones are evicted (readers resuming before them get 410). Default 100000.
    #[arg(long)]
    pub event_journal_events: Option<usize>,
    /// Memory RocksDB's memtables may take, all column families together; the largest is
    /// flushed when they pass it. Default 64, at least 4.
    #[arg(long)]
    pub storage_memtable_mib: Option<usize>,
    /// RocksDB's block cache, shared by every table's data, index and filter blocks.
    /// Default 32, at least 1.
    #[arg(long)]
    pub storage_block_cache_mib: Option<usize>,
    /// Most `/v1/events` streams open at once on this node. Default 256.
    #[arg(long)]
    pub max_event_streams: Option<usize>,
    /// NATS server URL; setting it makes the leader publish every event to JetStream stream
    /// `FLOTILLA_<cluster>` under `flotilla.<cluster>.<category>.<id>.<event>`.
    #[arg(long, env = "FLOTILLA_NATS_URL")]
    pub nats_url: Option<String>,
    /// OTLP/gRPC collector for traces, e.g. `http://127.0.0.1:4317`. Default: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log format: `pretty` or `json`. Level comes from RUST_LOG (default `info`).
    #[arg(long, env = "FLOTILLA_LOG_FORMAT")]
    pub log_format: Option<String>,
}

/// The secret in an `--admin-token-file`: one line, `flt_` and 64 hex digits. A file others
/// may read is refused (a group-readable one is allowed: Kubernetes mounts a secret so when the
/// pod has an fsGroup).
fn read_admin_token(path: &Path) -> anyhow::Result<crate::auth::TokenSecret> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("--admin-token-file {shown}: {e}"))?;
    anyhow::ensure!(
        meta.is_file() && meta.len() <= 1024,
        "--admin-token-file {shown}: not a token file (a regular file of one line)"
    );
    let mode = meta.permissions().mode() & 0o777;
    anyhow::ensure!(
        mode & 0o007 == 0,
        "--admin-token-file {shown}: mode {mode:03o} lets every user of this host read the cluster's admin token; chmod 600 it"
    );
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--admin-token-file {shown}: {e}"))?;
    crate::auth::TokenSecret::parse(text.trim()).ok_or_else(|| {
        anyhow::anyhow!(
            "--admin-token-file {shown}: does not hold a token secret (`flt_` and 64 lowercase hex digits; `flotilla token generate` makes one)"
        )
    })
}

/// TLS files (given, or fetched with a join token into the data directory), or plain TCP
/// when asked for; one or the other is required.
fn transport_mode(cli: &Options, file: &Options, data_dir: &Path) -> anyhow::Result<crate::tls::TransportMode> {
    let plaintext = cli.insecure_plaintext.or(file.insecure_plaintext).unwrap_or(false);
    let ca_file = cli.tls_ca_file.clone().or(file.tls_ca_file.clone());
    let ca_key_file = cli.tls_ca_key_file.clone().or(file.tls_ca_key_file.clone());
    let extra_names = cli.tls_names.clone().or(file.tls_names.clone()).unwrap_or_default();
    let join_token = cli.join_token.clone().or(file.join_token.clone());
    let pin = cli.join_ca_sha256.clone().or(file.join_ca_sha256.clone());
    let join = cli.join.clone().or(file.join.clone());
    if let Some(token) = join_token {
        let secret = crate::auth::JoinSecret::parse(token.trim())
            .ok_or_else(|| anyhow::anyhow!("--join-token: not a join token (`fjt_` and 64 hex digits)"))?;
        anyhow::ensure!(
            !plaintext,
            "--join-token is for TLS clusters; --insecure-plaintext nodes join with --admin-token-file"
        );
        anyhow::ensure!(
            ca_file.is_none() && ca_key_file.is_none(),
            "--join-token fetches the cluster CA; the node already has --tls-ca-file: join with --admin-token-file instead, or drop the CA files"
        );
        let seed = join.ok_or_else(|| {
            anyhow::anyhow!("--join-token needs --join, the seed to fetch the CA from and be added by")
        })?;
        let pin = pin.ok_or_else(|| {
            anyhow::anyhow!("--join-token needs --join-ca-sha256 (printed with the token): without it the seed cannot be told from an impostor")
        })?;
        anyhow::ensure!(
            pin.strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
            "--join-ca-sha256: not `sha256:` and 64 hex digits"
        );
        let tls_dir = data_dir.join("tls");
        return Ok(crate::tls::TransportMode::Tls(crate::tls::TlsFiles {
            ca_file: tls_dir.join("ca.crt"),
            ca_key_file: tls_dir.join("ca.key"),
            extra_names,
            from_join: Some(crate::tls::CaFetch {
                seed,
                ca_sha256: pin.to_ascii_lowercase(),
                secret,
            }),
        }));
    }
    anyhow::ensure!(pin.is_none(), "--join-ca-sha256 is for --join-token");
    match (plaintext, ca_file, ca_key_file) {
        (true, None, None) => {
            anyhow::ensure!(
                extra_names.is_empty(),
                "--tls-names is for TLS, and --insecure-plaintext turns it off"
            );
            Ok(crate::tls::TransportMode::Plaintext)
        }
        (true, _, _) => anyhow::bail!("--insecure-plaintext and the --tls-ca-* files exclude each other"),
        (false, Some(ca_file), Some(ca_key_file)) => {
            for name in &extra_names {
                anyhow::ensure!(
                    !name.is_empty()
                        && name.len() <= 253
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b)),
                    "--tls-names: {name:?} is neither a DNS name nor an IP address"
                );
            }
            Ok(crate::tls::TransportMode::Tls(crate::tls::TlsFiles {
                ca_file,
                ca_key_file,
                extra_names,
                from_join: None,
            }))
        }
        (false, Some(_), None) => {
            anyhow::bail!("--tls-ca-file needs --tls-ca-key-file: the node issues its certificate with the CA's key")
        }
        (false, None, Some(_)) => anyhow::bail!("--tls-ca-key-file needs --tls-ca-file, the CA's certificates"),
        (false, None, None) => anyhow::bail!(
            "nodes talk TLS: give --tls-ca-file and --tls-ca-key-file, the cluster CA every node shares (`flotilla tls ca-create --out DIR` makes one), or --join with a --join-token and --join-ca-sha256 to fetch it, or --insecure-plaintext for development"
        ),
    }
}

/// Resolved configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub id: u64,
    pub data_dir: PathBuf,
    pub raft_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub advertise_raft_addr: String,
    pub advertise_api_addr: String,
    pub join: Option<String>,
    pub bootstrap: bool,
    pub bootstrap_peers: Vec<String>,
    pub host_id: String,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_after_entries: u64,
    pub snapshot_after_log_bytes: u64,
    pub pre_vote: bool,
    pub log_entries_kept_after_snapshot: u64,
    pub max_concurrent_requests: usize,
    pub max_request_bytes: usize,
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub rpc_timeout_ms: u64,
    pub auth: crate::auth::AuthMode,
    /// The pre-shared first admin token (`--admin-token-file`), read at start.
    pub admin_token: Option<crate::auth::TokenSecret>,
    /// `--recover-admin-token`: the admin token file's secret is committed again if lost.
    pub recover_admin_token: bool,
    /// The secrets' key-encryption keys (`--secrets-key-file`), read at start.
    pub keyring: Option<std::sync::Arc<crate::secrets::Keyring>>,
    /// TLS from the cluster CA, or plain TCP (`--insecure-plaintext`).
    pub transport: crate::tls::TransportMode,
    pub process_provider: bool,
    pub process_work_dir: PathBuf,
    /// `--process-run-as-user`, looked up at start.
    pub process_run_as: Option<flotilla_providers::RunAs>,
    pub process_secrets_dir: PathBuf,
    pub leader_tick_ms: u64,
    pub retention_interval_ms: u64,
    pub artifact_upkeep_interval_ms: u64,
    /// `--blob-copy-mib-per-s`: 0 for no bound.
    pub blob_copy_mib_per_s: u64,
    /// `--artifact-store` and its endpoint, if blobs go to an object store.
    pub artifact_store: Option<crate::artifacts::ObjectStoreConfig>,
    pub json_logs: bool,
    pub cluster_name: String,
    pub docker_endpoint: Option<DockerEndpoint>,
    pub docker_network: Option<String>,
    pub docker_default_image: Option<String>,
    pub kubernetes_namespace: Option<String>,
    pub kubernetes_api_url: Option<String>,
    pub kubernetes_default_image: Option<String>,
    pub kubernetes_helper_image: Option<String>,
    pub sim_duration_ms: Option<u64>,
    pub provider_call_timeout_ms: u64,
    pub provider_breaker_failures: u32,
    pub provider_breaker_open_ms: u64,
    pub event_journal_events: usize,
    /// RocksDB's memory budget (`--storage-memtable-mib`, `--storage-block-cache-mib`).
    pub storage_memory: flotilla_raft_store::StorageMemory,
    pub max_event_streams: usize,
    pub nats_url: Option<String>,
    pub otlp_endpoint: Option<String>,
}

impl Settings {
    /// Resolves flags over the TOML file (if any) over defaults, and checks the result.
    pub fn resolve(cli: Options) -> anyhow::Result<Settings> {
        let file = match &cli.config {
            None => Options::default(),
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?
            }
        };
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                cli.$field
                    .clone()
                    .or(file.$field.clone())
                    .unwrap_or_else(|| $default)
            };
        }
        let id = cli
            .id
            .or(file.id)
            .context("--id is required (or `id` in the config file)")?;
        let raft_addr: SocketAddr = pick!(raft_addr, "127.0.0.1:7001".parse().expect("literal"));
        let api_addr: SocketAddr = pick!(api_addr, "127.0.0.1:8001".parse().expect("literal"));
        let mut settings = Settings {
            id,
            data_dir: pick!(data_dir, PathBuf::from(format!("flotilla-data-{id}"))),
            raft_addr,
            api_addr,
            advertise_raft_addr: pick!(advertise_raft_addr, raft_addr.to_string()),
            advertise_api_addr: pick!(advertise_api_addr, api_addr.to_string()),
            join: cli.join.clone().or(file.join.clone()),
            bootstrap: pick!(bootstrap, false),
            bootstrap_peers: pick!(bootstrap_peers, Vec::new()),
            host_id: pick!(host_id, default_host_id()),
            heartbeat_interval_ms: pick!(heartbeat_interval_ms, 250),
            election_timeout_min_ms: pick!(election_timeout_min_ms, 1500),
            election_timeout_max_ms: pick!(election_timeout_max_ms, 3000),
            snapshot_after_entries: pick!(snapshot_after_entries, 10_000),
            snapshot_after_log_bytes: pick!(snapshot_after_log_bytes, 256 * 1024 * 1024),
            pre_vote: pick!(pre_vote, true),
            log_entries_kept_after_snapshot: pick!(log_entries_kept_after_snapshot, 1000),
            max_concurrent_requests: pick!(max_concurrent_requests, 256),
            max_request_bytes: pick!(max_request_bytes, 1024 * 1024),
            max_connections: pick!(max_connections, 4096),
            header_read_timeout_ms: pick!(header_read_timeout_ms, 30_000),
            rpc_timeout_ms: pick!(rpc_timeout_ms, 10_000),
            auth: pick!(auth, crate::auth::AuthMode::Tokens),
            admin_token: match cli.admin_token_file.clone().or(file.admin_token_file.clone()) {
                None => None,
                Some(path) => Some(read_admin_token(&path)?),
            },
            recover_admin_token: pick!(recover_admin_token, false),
            keyring: match cli.secrets_key_file.clone().or(file.secrets_key_file.clone()) {
                None => None,
                Some(path) => Some(std::sync::Arc::new(
                    crate::secrets::Keyring::from_file(&path).map_err(|e| anyhow::anyhow!("--secrets-key-file {e}"))?,
                )),
            },
            transport: transport_mode(
                &cli,
                &file,
                &pick!(data_dir, PathBuf::from(format!("flotilla-data-{id}"))),
            )?,
            process_provider: pick!(process_provider, false),
            process_work_dir: pick!(process_work_dir, std::env::temp_dir().join("flotilla-workers")),
            process_run_as: None,
            process_secrets_dir: PathBuf::new(),
            leader_tick_ms: pick!(leader_tick_ms, 200),
            retention_interval_ms: pick!(retention_interval_ms, 5_000),
            artifact_upkeep_interval_ms: pick!(artifact_upkeep_interval_ms, 60_000),
            blob_copy_mib_per_s: pick!(blob_copy_mib_per_s, DEFAULT_BLOB_COPY_MIB_PER_S),
            artifact_store: cli.artifact_store.clone().or(file.artifact_store.clone()).map(|url| {
                crate::artifacts::ObjectStoreConfig {
                    url,
                    endpoint: cli
                        .artifact_store_endpoint
                        .clone()
                        .or(file.artifact_store_endpoint.clone()),
                }
            }),
            json_logs: match pick!(log_format, "pretty".to_string()).as_str() {
                "pretty" => false,
                "json" => true,
                other => anyhow::bail!("--log-format must be `pretty` or `json`, not {other:?}"),
            },
            cluster_name: pick!(cluster_name, "flotilla".to_string()),
            docker_endpoint: match cli.docker_socket.clone().or(file.docker_socket.clone()) {
                None => None,
                Some(text) => Some(
                    DockerEndpoint::parse(&text, cli.docker_cert_path.clone().or(file.docker_cert_path.clone()))
                        .map_err(|e| anyhow::anyhow!("--docker-socket: {e}"))?,
                ),
            },
            docker_network: cli.docker_network.clone().or(file.docker_network.clone()),
            docker_default_image: cli.docker_default_image.clone().or(file.docker_default_image.clone()),
            kubernetes_namespace: cli.kubernetes_namespace.clone().or(file.kubernetes_namespace.clone()),
            kubernetes_api_url: cli.kubernetes_api_url.clone().or(file.kubernetes_api_url.clone()),
            kubernetes_default_image: cli
                .kubernetes_default_image
                .clone()
                .or(file.kubernetes_default_image.clone()),
            kubernetes_helper_image: cli
                .kubernetes_helper_image
                .clone()
                .or(file.kubernetes_helper_image.clone()),
            sim_duration_ms: cli.sim_duration_ms.or(file.sim_duration_ms),
            provider_call_timeout_ms: pick!(provider_call_timeout_ms, 10_000),
            provider_breaker_failures: pick!(provider_breaker_failures, 5),
            provider_breaker_open_ms: pick!(provider_breaker_open_ms, 5_000),
            event_journal_events: pick!(event_journal_events, 100_000),
            storage_memory: flotilla_raft_store::StorageMemory {
                memtables_bytes: pick!(storage_memtable_mib, flotilla_raft_store::DEFAULT_MEMTABLES_BYTES >> 20)
                    .saturating_mul(1 << 20),
                block_cache_bytes: pick!(
                    storage_block_cache_mib,
                    flotilla_raft_store::DEFAULT_BLOCK_CACHE_BYTES >> 20
                )
                .saturating_mul(1 << 20),
            },
            max_event_streams: pick!(max_event_streams, 256),
            nats_url: cli.nats_url.clone().or(file.nats_url.clone()),
            otlp_endpoint: cli.otlp_endpoint.clone().or(file.otlp_endpoint.clone()),
        };
        anyhow::ensure!(
            is_plain_name(&settings.host_id, 128),
            "--host-id must be 1-128 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit (got {:?})",
            settings.host_id
        );
        anyhow::ensure!(
            !settings.recover_admin_token || settings.admin_token.is_some(),
            "--recover-admin-token commits the token of --admin-token-file: give that file too"
        );
        let run_as = cli.process_run_as_user.clone().or(file.process_run_as_user.clone());
        let secrets_dir = cli.process_secrets_dir.clone().or(file.process_secrets_dir.clone());
        if settings.process_provider {
            let (work, data) = (absolute(&settings.process_work_dir)?, absolute(&settings.data_dir)?);
            anyhow::ensure!(
                !work.starts_with(&data) && !data.starts_with(&work),
                "--process-work-dir {} and --data-dir {} must not contain each other: jobs could write the Raft store",
                work.display(),
                data.display()
            );
            settings.process_secrets_dir = match secrets_dir {
                Some(dir) => absolute(&dir)?,
                None => flotilla_providers::default_secrets_dir(&work),
            };
            anyhow::ensure!(
                !settings.process_secrets_dir.starts_with(&data),
                "--process-secrets-dir {} is inside --data-dir {}: jobs' secrets would sit beside the Raft store",
                settings.process_secrets_dir.display(),
                data.display()
            );
            if let Some(user) = run_as {
                settings.process_run_as = Some(flotilla_providers::RunAs::resolve(&user)?);
            }
        } else {
            anyhow::ensure!(
                run_as.is_none() && secrets_dir.is_none(),
                "--process-run-as-user and --process-secrets-dir are for the process provider: give --process-provider too"
            );
        }
        anyhow::ensure!(
            settings.docker_endpoint.is_some() || cli.docker_cert_path.is_none() && file.docker_cert_path.is_none(),
            "--docker-cert-path is for a tcp:// --docker-socket, and none is given"
        );
        if let Some(join) = &settings.join {
            let tls = matches!(settings.transport, crate::tls::TransportMode::Tls(_));
            anyhow::ensure!(
                !(tls && join.starts_with("http://")),
                "--join {join}: this node speaks TLS, so its seed is https://host:port (or --insecure-plaintext on every node)"
            );
            anyhow::ensure!(
                tls || !join.starts_with("https://"),
                "--join {join}: this node runs --insecure-plaintext, so its seed is http://host:port"
            );
        }
        for peer in &settings.bootstrap_peers {
            check_host_port(peer).map_err(|e| anyhow::anyhow!("--bootstrap-peers: {e}"))?;
        }
        anyhow::ensure!(
            !(settings.bootstrap && settings.join.is_some()),
            "--bootstrap and --join exclude each other: one node founds the cluster, the others join it"
        );
        for (flag, addr) in [
            ("--advertise-raft-addr", &settings.advertise_raft_addr),
            ("--advertise-api-addr", &settings.advertise_api_addr),
        ] {
            if let Err(e) = check_host_port(addr) {
                anyhow::bail!("{flag}: {e}");
            }
        }
        anyhow::ensure!(settings.id > 0, "--id must be greater than 0");
        anyhow::ensure!(
            settings.heartbeat_interval_ms < settings.election_timeout_min_ms
                && settings.election_timeout_min_ms < settings.election_timeout_max_ms,
            "need heartbeat-interval-ms < election-timeout-min-ms < election-timeout-max-ms"
        );
        anyhow::ensure!(settings.leader_tick_ms > 0, "--leader-tick-ms must be greater than 0");
        anyhow::ensure!(
            settings.snapshot_after_log_bytes > 0,
            "--snapshot-after-log-bytes must be greater than 0"
        );
        anyhow::ensure!(
            settings.retention_interval_ms > 0,
            "--retention-interval-ms must be greater than 0"
        );
        anyhow::ensure!(
            settings.artifact_upkeep_interval_ms > 0,
            "--artifact-upkeep-interval-ms must be greater than 0"
        );
        anyhow::ensure!(
            settings.blob_copy_mib_per_s <= MAX_BLOB_COPY_MIB_PER_S,
            "--blob-copy-mib-per-s must be at most {MAX_BLOB_COPY_MIB_PER_S} (0 for no bound)"
        );
        anyhow::ensure!(
            settings.max_concurrent_requests > 0,
            "--max-concurrent-requests must be greater than 0"
        );
        anyhow::ensure!(settings.max_connections > 0, "--max-connections must be greater than 0");
        anyhow::ensure!(
            settings.header_read_timeout_ms > 0,
            "--header-read-timeout-ms must be greater than 0"
        );
        anyhow::ensure!(
            is_plain_name(&settings.cluster_name, 64),
            "--cluster-name must be 1-64 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit"
        );
        anyhow::ensure!(
            settings.provider_call_timeout_ms > 0,
            "--provider-call-timeout-ms must be greater than 0"
        );
        let mib_between = |bytes: usize, min_bytes: usize| (min_bytes..=MAX_STORAGE_MEMORY_MIB << 20).contains(&bytes);
        anyhow::ensure!(
            mib_between(
                settings.storage_memory.memtables_bytes,
                flotilla_raft_store::MIN_MEMTABLES_BYTES
            ),
            "--storage-memtable-mib must be between {} and {MAX_STORAGE_MEMORY_MIB}",
            flotilla_raft_store::MIN_MEMTABLES_BYTES >> 20
        );
        anyhow::ensure!(
            mib_between(
                settings.storage_memory.block_cache_bytes,
                flotilla_raft_store::MIN_BLOCK_CACHE_BYTES
            ),
            "--storage-block-cache-mib must be between {} and {MAX_STORAGE_MEMORY_MIB}",
            flotilla_raft_store::MIN_BLOCK_CACHE_BYTES >> 20
        );
        anyhow::ensure!(
            settings.event_journal_events > 0,
            "--event-journal-events must be greater than 0"
        );
        anyhow::ensure!(
            settings.max_event_streams > 0,
            "--max-event-streams must be greater than 0"
        );
        anyhow::ensure!(
            settings.provider_breaker_failures > 0,
            "--provider-breaker-failures must be greater than 0"
        );
        Ok(settings)
    }

    /// The address this node is reached at and the life of its data directory, as its peers
    /// store them.
    pub fn advertised(&self, incarnation: crate::identity::Incarnation) -> flotilla_raft_store::NodeAddr {
        flotilla_raft_store::NodeAddr {
            raft_addr: self.advertise_raft_addr.clone(),
            api_addr: self.advertise_api_addr.clone(),
            incarnation: incarnation.0,
        }
    }

    /// The names and addresses this node's certificate carries for API clients: `localhost`
    /// and 127.0.0.1 (a client on the node's host, a published container port), the API's
    /// bind address unless it is a wildcard, the advertised API host, and
    /// --tls-names.
    pub fn api_names(&self) -> Vec<String> {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if !self.api_addr.ip().is_unspecified() {
            names.push(self.api_addr.ip().to_string());
        }
        if let Some((host, _)) = self.advertise_api_addr.rsplit_once(':') {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if !host.is_empty() && host != "0.0.0.0" && host != "::" {
                names.push(host.to_string());
            }
        }
        if let crate::tls::TransportMode::Tls(files) = &self.transport {
            names.extend(files.extra_names.iter().cloned());
        }
        let mut unique = Vec::new();
        for name in names {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        unique
    }

    pub fn raft_config(&self) -> anyhow::Result<openraft::Config> {
        let config = openraft::Config {
            cluster_name: "flotilla".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.rpc_timeout_ms.max(30_000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.log_entries_kept_after_snapshot,
            enable_pre_vote: Some(self.pre_vote),
            ..Default::default()
        };
        config.validate().context("invalid raft configuration")
    }
}

/// 1 to `max_bytes` ASCII letters, digits, '-', '_' or '.', starting with a letter or digit.
fn is_plain_name(value: &str, max_bytes: usize) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max_bytes
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// This machine's name for `--host-id`: its machine id (shared by every process of the host,
/// whatever their network namespace), else its hostname (a container without a machine id has
/// its own hostname, and its own filesystem too).
fn default_host_id() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')))
    };
    read("/etc/machine-id")
        .or_else(|| read("/proc/sys/kernel/hostname"))
        .unwrap_or_else(|| "localhost".to_string())
}

/// `host:port` where host is an IP address or a DNS name; the error says what is wrong.
pub fn check_host_port(addr: &str) -> Result<(), String> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not host:port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{addr:?}: port {port:?} is not a number from 0 to 65535"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!("{addr:?}: {host:?} is neither an IP address nor a DNS name"));
    }
    Ok(())
}

/// `path` made absolute (against the current directory) with `.` and `..` resolved lexically,
/// and symbolic links in what already exists resolved: two spellings of one directory compare
/// equal.
fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    let mut resolved = PathBuf::new();
    for part in std::path::absolute(path)?.components() {
        match part {
            std::path::Component::ParentDir => {
                resolved.pop();
            }
            std::path::Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    // The longest existing prefix through its links; the rest as written.
    let mut existing = resolved.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => rest.push(name.to_os_string()),
            None => break,
        }
        existing.pop();
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    out.extend(rest.iter().rev());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Settings from `args` (TLS files or `--insecure-plaintext` among them).
    fn resolve_exactly(args: &[&str]) -> anyhow::Result<Settings> {
        let mut all = vec!["flotilla-node", "--id", "1"];
        all.extend_from_slice(args);
        Settings::resolve(Options::parse_from(all))
    }

    /// Settings from `args`, over plain TCP unless they name TLS files.
    fn resolve(args: &[&str]) -> anyhow::Result<Settings> {
        let mut all = args.to_vec();
        if !args.iter().any(|a| a.starts_with("--tls-ca")) {
            all.push("--insecure-plaintext");
        }
        resolve_exactly(&all)
    }

    #[test]
    fn rocksdb_memory_defaults_and_bounds() {
        let default = resolve(&[]).unwrap().storage_memory;
        assert_eq!(default, flotilla_raft_store::StorageMemory::default());
        let set = resolve(&["--storage-memtable-mib", "16", "--storage-block-cache-mib", "8"]).unwrap();
        assert_eq!(set.storage_memory.memtables_bytes, 16 << 20);
        assert_eq!(set.storage_memory.block_cache_bytes, 8 << 20);
        let huge = (MAX_STORAGE_MEMORY_MIB + 1).to_string();
        let overflow = usize::MAX.to_string();
        for (args, says) in [
            (
                ["--storage-memtable-mib", "3"],
                "--storage-memtable-mib must be between 4 and",
            ),
            (
                ["--storage-memtable-mib", &huge],
                "--storage-memtable-mib must be between 4 and",
            ),
            (
                ["--storage-block-cache-mib", "0"],
                "--storage-block-cache-mib must be between 1 and",
            ),
            (
                ["--storage-block-cache-mib", &overflow],
                "--storage-block-cache-mib must be between 1 and",
            ),
        ] {
            let e = resolve(&args).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn tls_is_required_unless_plaintext_is_asked_for() {
        let e = resolve_exactly(&[]).unwrap_err().to_string();
        assert!(
            e.contains("--tls-ca-file") && e.contains("flotilla tls ca-create") && e.contains("--insecure-plaintext"),
            "{e}"
        );
        let tls = resolve_exactly(&[
            "--tls-ca-file",
            "ca.crt",
            "--tls-ca-key-file",
            "ca.key",
            "--tls-names",
            "flotilla.example,10.1.2.3",
        ])
        .unwrap();
        let crate::tls::TransportMode::Tls(files) = &tls.transport else {
            panic!("not TLS: {tls:?}")
        };
        assert_eq!(files.extra_names, ["flotilla.example", "10.1.2.3"]);
        let names = tls.api_names();
        assert!(
            names.contains(&"127.0.0.1".to_string()) && names.contains(&"flotilla.example".to_string()),
            "{names:?}"
        );
        for (args, says) in [
            (&["--tls-ca-file", "ca.crt"][..], "needs --tls-ca-key-file"),
            (&["--tls-ca-key-file", "ca.key"][..], "needs --tls-ca-file"),
            (
                &[
                    "--insecure-plaintext",
                    "--tls-ca-file",
                    "ca.crt",
                    "--tls-ca-key-file",
                    "k",
                ][..],
                "exclude each other",
            ),
            (
                &["--tls-ca-file", "c", "--tls-ca-key-file", "k", "--tls-names", "a b"][..],
                "neither a DNS name",
            ),
            (
                &[
                    "--tls-ca-file",
                    "c",
                    "--tls-ca-key-file",
                    "k",
                    "--join",
                    "http://10.0.0.1:8001",
                ][..],
                "https://",
            ),
            (
                &["--insecure-plaintext", "--join", "https://10.0.0.1:8001"][..],
                "http://host:port",
            ),
        ] {
            let e = resolve_exactly(args).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
        assert!(matches!(
            resolve_exactly(&["--insecure-plaintext"]).unwrap().transport,
            crate::tls::TransportMode::Plaintext
        ));
        // A join token fetches the CA into the data directory; it needs the seed and the pin.
        let token = format!("fjt_{}", "0".repeat(64));
        let pin = format!("sha256:{}", "a".repeat(64));
        let joining = resolve_exactly(&[
            "--data-dir",
            "/d",
            "--join",
            "https://10.0.0.1:8001",
            "--join-token",
            &token,
            "--join-ca-sha256",
            &pin,
        ])
        .unwrap();
        let crate::tls::TransportMode::Tls(files) = &joining.transport else {
            panic!("not TLS")
        };
        assert_eq!(files.ca_file, std::path::Path::new("/d/tls/ca.crt"));
        assert!(
            files
                .from_join
                .as_ref()
                .is_some_and(|f| f.ca_sha256 == pin && f.seed == "https://10.0.0.1:8001")
        );
        assert!(
            !format!("{joining:?}").contains(&token[4..]),
            "settings never print the secret"
        );
        for (args, says) in [
            (
                vec!["--join-token", token.as_str(), "--join-ca-sha256", pin.as_str()],
                "needs --join",
            ),
            (
                vec!["--join", "https://h:1", "--join-token", token.as_str()],
                "needs --join-ca-sha256",
            ),
            (
                vec![
                    "--join",
                    "https://h:1",
                    "--join-token",
                    "fjt_x",
                    "--join-ca-sha256",
                    pin.as_str(),
                ],
                "not a join token",
            ),
            (
                vec![
                    "--join",
                    "https://h:1",
                    "--join-token",
                    token.as_str(),
                    "--join-ca-sha256",
                    "md5:x",
                ],
                "64 hex digits",
            ),
            (
                vec![
                    "--join",
                    "https://h:1",
                    "--join-token",
                    token.as_str(),
                    "--join-ca-sha256",
                    pin.as_str(),
                    "--tls-ca-file",
                    "c",
                    "--tls-ca-key-file",
                    "k",
                ],
                "already has --tls-ca-file",
            ),
        ] {
            let e = resolve_exactly(&args).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn recovering_the_admin_token_needs_its_file() {
        let e = resolve(&["--recover-admin-token"]).unwrap_err().to_string();
        assert!(e.contains("--admin-token-file"), "{e}");
        assert!(!resolve(&[]).unwrap().recover_admin_token);
    }

    #[test]
    fn a_secrets_key_file_must_be_private_and_well_formed_and_never_prints() {
        use std::os::unix::fs::PermissionsExt;
        assert!(resolve(&[]).unwrap().keyring.is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.key");
        let path = file.to_str().unwrap();
        let key = format!("fsk_{}", "3c".repeat(32));
        let write = |text: &str, mode: u32| {
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&format!("{key}\n"), 0o600);
        let read = resolve(&["--secrets-key-file", path]).unwrap();
        let ring = read.keyring.as_ref().expect("a keyring");
        assert_eq!(ring.kek_ids(), vec![crate::secrets::kek_id(&[0x3c; 32])]);
        assert!(!format!("{read:?}").contains("3c3c3c"), "settings never print a key");
        write(&key, 0o644);
        let e = resolve(&["--secrets-key-file", path]).unwrap_err().to_string();
        assert!(e.contains("--secrets-key-file") && e.contains("chmod 600"), "{e}");
        write("fsk_hunter2", 0o600);
        let e = resolve(&["--secrets-key-file", path]).unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn tokens_are_the_default_and_an_admin_token_file_must_be_private_and_well_formed() {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(resolve(&[]).unwrap().auth, crate::auth::AuthMode::Tokens);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin-token");
        let path = file.to_str().unwrap();
        let secret = crate::auth::TokenSecret::generate();
        let write = |text: &str, mode: u32| {
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&format!("{}\n", secret.reveal()), 0o600);
        let read = resolve(&["--admin-token-file", path]).unwrap();
        assert_eq!(read.admin_token, Some(secret.clone()));
        assert!(
            !format!("{read:?}").contains(&secret.reveal()[4..]),
            "settings never print it"
        );
        write(secret.reveal(), 0o640);
        assert!(
            resolve(&["--admin-token-file", path]).is_ok(),
            "group-readable, as Kubernetes mounts it"
        );
        write(secret.reveal(), 0o644);
        let e = resolve(&["--admin-token-file", path]).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        write("hunter2", 0o600);
        let e = resolve(&["--admin-token-file", path]).unwrap_err().to_string();
        assert!(e.contains("flotilla token generate") && !e.contains("hunter2"), "{e}");
        let missing = dir.path().join("nothing");
        assert!(resolve(&["--admin-token-file", missing.to_str().unwrap()]).is_err());
    }

    #[test]
    fn the_process_provider_is_off_unless_enabled_and_its_work_dir_stays_out_of_the_data_dir() {
        let base = tempfile::tempdir().unwrap();
        let data = base.path().join("data");
        let (data_dir, inside, beside) = (
            data.to_str().unwrap().to_string(),
            data.join("workers").to_str().unwrap().to_string(),
            base.path().join("workers").to_str().unwrap().to_string(),
        );
        assert!(!resolve(&["--data-dir", &data_dir]).unwrap().process_provider);
        let on = resolve(&[
            "--data-dir",
            &data_dir,
            "--process-provider",
            "--process-work-dir",
            &beside,
        ])
        .unwrap();
        assert!(on.process_provider);
        // Inside the data directory, however it is spelled, jobs could write the Raft store.
        let dotted = format!("{beside}/../data/./workers");
        for work in [&inside, &dotted] {
            let e = resolve(&[
                "--data-dir",
                &data_dir,
                "--process-provider",
                "--process-work-dir",
                work,
            ])
            .unwrap_err()
            .to_string();
            assert!(e.contains("must not contain each other"), "{e}");
        }
        // The data directory inside the work directory is refused too; without the provider
        // the work directory is never used, so nothing is checked.
        let e = resolve(&[
            "--data-dir",
            &inside,
            "--process-provider",
            "--process-work-dir",
            &data_dir,
        ])
        .unwrap_err();
        assert!(e.to_string().contains("must not contain each other"), "{e}");
        assert!(resolve(&["--data-dir", &data_dir, "--process-work-dir", &inside]).is_ok());
    }

    #[test]
    fn process_users_and_secret_directories_are_checked_at_start() {
        let base = tempfile::tempdir().unwrap();
        let data = base.path().join("data");
        let work = base.path().join("workers");
        let (data_dir, work_dir) = (data.to_str().unwrap(), work.to_str().unwrap());
        let with = |extra: &[&str]| {
            let mut args = vec![
                "--data-dir",
                data_dir,
                "--process-provider",
                "--process-work-dir",
                work_dir,
            ];
            args.extend_from_slice(extra);
            resolve(&args)
        };
        let plain = with(&[]).unwrap();
        assert_eq!(plain.process_run_as, None);
        assert_eq!(
            plain.process_secrets_dir,
            flotilla_providers::default_secrets_dir(&work)
        );
        // The tests run as root on a Debian host, which has `nobody`.
        let as_nobody = with(&["--process-run-as-user", "nobody"]).unwrap();
        assert_eq!(as_nobody.process_run_as.map(|r| r.uid), Some(65534));
        let e = with(&["--process-run-as-user", "no-such-user-flotilla"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such user"), "{e}");
        let e = with(&["--process-run-as-user", "root"]).unwrap_err().to_string();
        assert!(e.contains("is root"), "{e}");
        let inside = data.join("secrets");
        let e = with(&["--process-secrets-dir", inside.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside --data-dir"), "{e}");
        // Without the provider they mean nothing, and saying them is a mistake.
        let e = resolve(&["--data-dir", data_dir, "--process-run-as-user", "nobody"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("give --process-provider"), "{e}");
    }

    #[test]
    fn a_docker_endpoint_is_checked_at_start() {
        let e = resolve(&["--docker-socket", "tcp://nowhere"]).unwrap_err().to_string();
        assert!(e.contains("--docker-socket") && e.contains("HOST:PORT"), "{e}");
        let e = resolve(&["--docker-cert-path", "/etc"]).unwrap_err().to_string();
        assert!(e.contains("--docker-cert-path"), "{e}");
        let tcp = resolve(&["--docker-socket", "tcp://127.0.0.1:2375"]).unwrap();
        assert_eq!(
            tcp.docker_endpoint.map(|e| e.to_string()).as_deref(),
            Some("tcp://127.0.0.1:2375")
        );
    }
}
