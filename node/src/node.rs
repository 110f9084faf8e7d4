//! Assembles a node: storage, Raft, the gRPC server for peers, the REST API, and the optional
//! join request; and takes it down gracefully.

use crate::Raft;
use crate::api::{self, ApiLimits, AppState};
use crate::raft::network::{Channels, Network};
use crate::raft::pb::raft_service_server::RaftServiceServer;
use crate::raft::proposer::Proposer;
use crate::raft::service::RaftGrpc;
use crate::settings::Settings;
use anyhow::Context;
use flotilla_raft_store::{StateHandle, StoreConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct RunningNode {
    pub id: u64,
    pub raft: Raft,
    pub machine: StateHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

impl RunningNode {
    /// Opens the data directory, starts Raft and both servers.
    pub async fn start(settings: Settings) -> anyhow::Result<RunningNode> {
        let incoming = settings.data_dir.join("incoming");
        // What a crash left half-received is of no use: emptied at every start.
        if incoming.exists() {
            std::fs::remove_dir_all(&incoming).with_context(|| format!("emptying {}", incoming.display()))?;
        }
        std::fs::create_dir_all(&incoming).with_context(|| format!("creating {}", incoming.display()))?;
        let identity =
            crate::identity::Identity::open(&settings.data_dir, &settings.data_dir.join("store"), settings.id)
                .context("reading this node's identity")?;
        let store_config = StoreConfig {
            event_journal_capacity_events: settings.event_journal_events,
            memory: settings.storage_memory,
            ..StoreConfig::new(settings.data_dir.join("store"))
        };
        let (log, sm) = flotilla_raft_store::open(&store_config)
            .with_context(|| format!("opening the store in {}", settings.data_dir.display()))?;
        let machine = sm.handle();
        // On loopback, connect from our own address so peers see who is talking; elsewhere let
        // the kernel choose the route's source address.
        let source_ip = settings.raft_addr.ip().is_loopback().then(|| settings.raft_addr.ip());
        let (tls, join_token) = match &settings.transport {
            crate::tls::TransportMode::Tls(files) => {
                // A node joining with a token fetches the CA first (once: later starts find it).
                if let Some(fetch) = &files.from_join {
                    crate::tls::join::fetch_if_missing(files, fetch)
                        .await
                        .with_context(|| format!("fetching the cluster CA from {} with the join token", fetch.seed))?;
                }
                let tls = crate::tls::NodeTls::start(
                    files,
                    settings.id,
                    settings.api_names(),
                    crate::raft::proposer::wall_clock_ms(),
                )
                .context("setting up TLS")?;
                (Some(tls), files.from_join.as_ref().map(|f| f.secret.clone()))
            }
            crate::tls::TransportMode::Plaintext => {
                tracing::warn!(
                    "--insecure-plaintext: the API at {} speaks plain HTTP (tokens and jobs travel readable) and the Raft port at {} accepts any caller; for development only",
                    settings.api_addr,
                    settings.raft_addr
                );
                (None, None)
            }
        };
        let api_transport = crate::tls::ApiTransport::new(tls.as_ref());
        let raft_client_tls = tls.as_ref().map(|t| t.raft_client()).transpose()?;
        let channels = Channels::new(settings.rpc_timeout_ms.min(2_000), source_ip, raft_client_tls.clone());
        // Blobs travel on connections of their own: a gigabyte streamed to a peer shares no
        // TCP connection (and no HTTP/2 flow-control window) with the heartbeats and
        // AppendEntries that commit every write.
        let blob_channels = Channels::new(settings.rpc_timeout_ms.min(2_000), source_ip, raft_client_tls);
        let network = Network {
            channels: channels.clone(),
            identity: identity.clone(),
        };
        let raft = Raft::new(settings.id, Arc::new(settings.raft_config()?), network, log, sm)
            .await
            .context("starting raft")?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let clock = Arc::new(crate::raft::cluster_clock::ClusterClock::default());
        let blob_store = Arc::new(
            crate::artifacts::BlobStore::open(&settings.data_dir.join("artifacts"))
                .with_context(|| format!("opening the artifact store in {}", settings.data_dir.display()))?,
        );
        let blob_throttle = Arc::new(crate::artifacts::CopyThrottle::new(settings.blob_copy_mib_per_s));
        let blob_peers = Arc::new(crate::artifacts::BlobPeers {
            node_id: settings.id,
            raft: raft.clone(),
            channels: blob_channels,
            identity: identity.clone(),
            store: blob_store.clone(),
            throttle: blob_throttle.clone(),
            object: match &settings.artifact_store {
                None => None,
                Some(config) => Some(Arc::new({
                    // The object store's HTTP client (reqwest without a TLS provider of its
                    // own) uses the process's: ring, as everywhere else here.
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    crate::artifacts::ObjectBlobs::open(config).map_err(|e| anyhow::anyhow!(e))?
                })),
            },
        });
        let proposer = Proposer::new(
            raft.clone(),
            channels,
            identity.clone(),
            clock.clone(),
            settings.rpc_timeout_ms,
        );
        let sampler = crate::raft::clock_sampler::run(
            settings.id,
            raft.clone(),
            clock,
            api_transport.clone(),
            shutdown_rx.clone(),
        );
        let addr = settings.advertised(identity.incarnation());
        let founding = crate::founding::Founding::new(
            identity.clone(),
            crate::founding::FoundingConfig {
                node_id: settings.id,
                peers: settings.bootstrap_peers.clone(),
                joining: settings.join.clone(),
                admin_token: settings.admin_token.clone(),
                join_token,
                api: api_transport.clone(),
            },
        );
        let mut tasks = vec![tokio::spawn(sampler)];
        tasks.push(tokio::spawn(crate::raft::snapshot_trigger::run(
            raft.clone(),
            machine.clone(),
            settings.snapshot_after_log_bytes,
            shutdown_rx.clone(),
        )));
        if let Some(tls) = &tls {
            tasks.push(tokio::spawn(crate::tls::node_cert::run_renewal(
                tls.cert(),
                shutdown_rx.clone(),
            )));
        }

        let metrics = crate::observe::metrics::NodeMetrics::new();
        let grpc = RaftGrpc {
            node_id: settings.id,
            leader_contact: metrics.raft_leader_contact.clone(),
            raft: raft.clone(),
            proposer: proposer.clone(),
            identity: identity.clone(),
            peers_by_certificate: tls.is_some(),
            last_refusal_logged_ms: Default::default(),
            incoming_dir: incoming,
            next_incoming: Default::default(),
            blobs: blob_store.clone(),
            blob_throttle,
        };
        let raft_listener = tokio::net::TcpListener::bind(settings.raft_addr)
            .await
            .with_context(|| format!("binding the raft address {}", settings.raft_addr))?;
        let rx = shutdown_rx.clone();
        let raft_server_tls = tls.as_ref().map(|t| t.raft_server()).transpose()?;
        tasks.push(tokio::spawn(async move {
            let service = RaftServiceServer::new(grpc)
                .max_decoding_message_size(crate::raft::network::MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(crate::raft::network::MAX_RAFT_MESSAGE_BYTES);
            let server = tonic::transport::Server::builder().add_service(service);
            let served = match raft_server_tls {
                Some(config) => {
                    let incoming = crate::tls::accept::incoming(raft_listener, config, Default::default(), rx.clone());
                    server.serve_with_incoming_shutdown(incoming, wait_for(rx)).await
                }
                None => {
                    let incoming = tokio_stream::wrappers::TcpListenerStream::new(raft_listener);
                    server.serve_with_incoming_shutdown(incoming, wait_for(rx)).await
                }
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "raft grpc server failed");
            }
        }));

        let app_proposer = proposer.clone();
        let providers = Arc::new(crate::worker_providers::from_settings(&settings)?);
        let providers_for_leader = providers.clone();
        let sources = crate::source::Sources::new(crate::source::SourceConfig::new(settings.data_dir.join("sources")));
        let app = AppState {
            id: settings.id,
            addr: addr.clone(),
            founding: founding.clone(),
            raft: raft.clone(),
            machine: machine.clone(),
            proposer,
            rpc_timeout_ms: settings.rpc_timeout_ms,
            metrics: metrics.clone(),
            providers: providers.clone(),
            event_streams: Arc::new(tokio::sync::Semaphore::new(settings.max_event_streams)),
            digests: Default::default(),
            shutdown: shutdown_rx.clone(),
            auth: settings.auth,
            tls: tls.clone(),
            keyring: settings.keyring.clone(),
            leader_history: Default::default(),
            sources: sources.clone(),
            blobs: blob_peers.clone(),
        };
        tasks.push(tokio::spawn(crate::artifacts::run_sweeps(
            blob_peers.clone(),
            machine.clone(),
            Duration::from_millis(settings.artifact_upkeep_interval_ms),
            metrics.artifact_blob_bytes.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(
            app.leader_history.clone().follow(raft.clone(), shutdown_rx.clone()),
        ));
        if settings.auth == crate::auth::AuthMode::None {
            tracing::warn!(
                "--auth none: the API asks no caller for a token; anyone who reaches {} may do anything (the default is --auth tokens)",
                settings.api_addr
            );
        }
        let limits = ApiLimits {
            max_concurrent_requests: settings.max_concurrent_requests,
            max_request_bytes: settings.max_request_bytes,
        };
        let router = api::router(app, limits);
        let api_listener = tokio::net::TcpListener::bind(settings.api_addr)
            .await
            .with_context(|| format!("binding the api address {}", settings.api_addr))?;
        let rx = shutdown_rx.clone();
        let server_config = api::server::ServerConfig {
            max_connections: settings.max_connections,
            header_read_timeout_ms: settings.header_read_timeout_ms,
            tls: tls.as_ref().map(|t| t.api_server()).transpose()?,
        };
        tasks.push(tokio::spawn(api::server::serve(
            api_listener,
            router,
            server_config,
            rx,
        )));

        // One value for every loop that acts only while this node leads.
        let (leadership, follow_leadership) = crate::leader::Leadership::follow(&raft, shutdown_rx.clone());
        tasks.push(tokio::spawn(follow_leadership));

        if let Some(url) = settings.nats_url.clone() {
            let config = crate::events::nats_publisher::PublisherConfig::new(url, settings.cluster_name.clone());
            let publisher = crate::events::nats_publisher::Publisher::new(
                leadership.clone(),
                machine.clone(),
                app_proposer.clone(),
                metrics.clone(),
                config,
            );
            tasks.push(tokio::spawn(publisher.run(shutdown_rx.clone())));
        }

        if let Some(secret) = settings.admin_token.clone() {
            let preshared = crate::auth::preshared::run(
                leadership.clone(),
                machine.clone(),
                app_proposer.clone(),
                secret,
                if settings.recover_admin_token {
                    crate::auth::preshared::Purpose::Recover
                } else {
                    crate::auth::preshared::Purpose::FirstToken
                },
                shutdown_rx.clone(),
            );
            tasks.push(tokio::spawn(preshared));
        }

        let leader_config = crate::leader::LeaderConfig {
            retention_interval_ms: settings.retention_interval_ms,
            ..crate::leader::LeaderConfig::with_tick_ms(settings.leader_tick_ms)
        };
        let parts = crate::leader::LeaderParts {
            node_id: settings.id,
            host_id: settings.host_id.clone(),
            whereabouts: crate::worker_providers::whereabouts(&settings),
            identity: founding.identity.clone(),
            leadership,
            machine: machine.clone(),
            proposer: app_proposer,
            providers,
            metrics: metrics.clone(),
            keyring: settings.keyring.clone(),
            sources,
            source_reach: crate::leader::SourceReach {
                transport: api_transport,
                ca_pem: tls.as_ref().map(|t| t.cert().ca().pem().0.to_string()),
            },
            artifacts: crate::artifacts::Collector::new(blob_store, blob_peers, providers_for_leader),
        };
        tasks.push(tokio::spawn(crate::leader::run(
            parts,
            leader_config,
            shutdown_rx.clone(),
        )));
        let observer = crate::events::applied_observer::AppliedObserver {
            raft: raft.clone(),
            machine: machine.clone(),
            metrics: metrics.clone(),
        };
        tasks.push(tokio::spawn(observer.run(shutdown_rx.clone())));

        if settings.bootstrap {
            // Every start with the flag: founding checks that this node belongs to no cluster
            // and that no founding peer does (`founding.rs`), so the flag can stay in a unit
            // or manifest, and a node that lost its data directory does not found a second one.
            let at_start = founding.at_start(raft.clone(), addr.clone(), shutdown_rx.clone());
            tasks.push(tokio::spawn(at_start));
        } else if let Some(seed) = settings.join.clone() {
            // (`--bootstrap` and `--join` exclude each other: `Settings::resolve` refuses both.)
            let join =
                crate::founding::join_cluster(founding.join_request(addr, seed), raft.clone(), shutdown_rx.clone());
            tasks.push(tokio::spawn(join));
        }
        tracing::info!(id = settings.id, raft = %settings.raft_addr, api = %settings.api_addr, "node started");
        Ok(RunningNode {
            id: settings.id,
            raft,
            machine,
            shutdown,
            tasks,
        })
    }

    /// Hands leadership over if this node leads, stops accepting requests, stops Raft, and waits
    /// for the servers.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        // Hand over while the servers still run: the successor's messages must reach this node.
        self.hand_over_leadership().await;
        // A snapshot of what was applied, so the next start replays no log.
        crate::raft::snapshot_trigger::before_stop(&self.raft).await;
        let _ = self.shutdown.send(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        Ok(())
    }
}

impl RunningNode {
    /// A leader that stops hands leadership to the most up-to-date other voter first, so the
    /// cluster does not wait an election timeout to notice.
    async fn hand_over_leadership(&self) {
        if !self.raft.is_leader() {
            return;
        }
        let m = crate::raft::metrics(&self.raft);
        let matched = m.replication.clone().unwrap_or_default();
        let successor = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.id)
            .max_by_key(|v| matched.get(v).cloned().flatten().map(|l| l.index));
        let Some(to) = successor else { return };
        match crate::raft::transfer_leadership(&self.raft, to, Duration::from_secs(3)).await {
            Ok(()) => tracing::info!(to, "leadership handed over"),
            Err(e) => tracing::warn!(error = %e, "leadership hand-over failed; the cluster will elect"),
        }
    }
}
