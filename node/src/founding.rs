//! Founding a cluster: once, by one node, never by a node that belongs to one, and never when a
//! founding peer already belongs to one.
//!
//! A deployment gives `--bootstrap` to its first node on every start (a StatefulSet's ordinal
//! 0, a compose file's first service). If that node lost its volume it would otherwise found a
//! second cluster beside the real one, answer clients from an empty state, and remove the real
//! cluster's workers as orphans. So founding asks every other founding member first
//! (`--bootstrap-peers`): only when each answers that it belongs to no cluster does the node
//! found one; when one belongs to a cluster, the node asks it to be added instead (and is told
//! to be removed first if the cluster knew it with another data directory). A peer that does
//! not answer is waited for: founding while one is silent could found the second cluster.

use crate::Raft;
use crate::auth::TokenSecret;
use crate::identity::{Identity, IdentityError, Incarnation, fresh_cluster_id};
use flotilla_raft_store::NodeAddr;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// Longest wait for one peer's answer about its identity.
pub const PEER_IDENTITY_TIMEOUT_MS: u64 = 5_000;
/// Pause between two surveys of silent founding peers, and between two join requests.
const RETRY_MS: u64 = 1_000;

/// What a node says of itself at `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub id: u64,
    pub incarnation: Incarnation,
    pub cluster_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FoundError {
    #[error("this node already belongs to cluster {cluster_id}")]
    AlreadyMember { cluster_id: String },
    #[error("this node's Raft state is already initialized")]
    Initialized,
    #[error("this node was started to join the cluster at {seed}, so it does not found one")]
    Joining { seed: String },
    #[error("founding peer {peer} belongs to cluster {cluster_id}: this node joins it rather than found another")]
    PeerMember { peer: String, cluster_id: String },
    #[error(
        "founding peer {peer} did not say whether it belongs to a cluster ({error}); every founding peer must answer first"
    )]
    PeerSilent { peer: String, error: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("initializing Raft: {0}")]
    Raft(String),
}

/// What founding needs to know besides Raft.
#[derive(Clone)]
pub struct Founding {
    pub node_id: u64,
    pub identity: Identity,
    /// API addresses of the other founding members (`--bootstrap-peers`).
    pub peers: Vec<String>,
    /// The seed this node joins through (`--join`), if any.
    pub joining: Option<String>,
    /// The cluster's pre-shared first admin token (`--admin-token-file`): the founding node's
    /// leader makes it the bootstrap token, `cluster init` asks for it, and a joining node
    /// presents it to be added.
    pub admin_token: Option<TokenSecret>,
    /// A join token (`--join-token`): presented instead of the admin token to be added.
    pub join_token: Option<crate::auth::JoinSecret>,
    /// How this node reaches other nodes' APIs (HTTPS trusting the cluster CA).
    pub api: crate::tls::ApiTransport,
    pub http: reqwest::Client,
}

/// What a node is told about founding and joining at start.
pub struct FoundingConfig {
    pub node_id: u64,
    pub peers: Vec<String>,
    pub joining: Option<String>,
    pub admin_token: Option<TokenSecret>,
    pub join_token: Option<crate::auth::JoinSecret>,
    pub api: crate::tls::ApiTransport,
}

impl Founding {
    pub fn new(identity: Identity, config: FoundingConfig) -> Founding {
        let http = config.api.client(PEER_IDENTITY_TIMEOUT_MS);
        Founding {
            api: config.api,
            node_id: config.node_id,
            identity,
            peers: config.peers,
            joining: config.joining,
            admin_token: config.admin_token,
            join_token: config.join_token,
            http,
        }
    }

    /// This node's request to be added (at `addr`) to the cluster whose member's API is `seed`.
    pub fn join_request(&self, addr: NodeAddr, seed: String) -> JoinRequest {
        JoinRequest {
            id: self.node_id,
            addr,
            seed,
            bearer: match (&self.join_token, &self.admin_token) {
                (Some(join), _) => Some(join.reveal().to_string()),
                (None, Some(admin)) => Some(admin.reveal().to_string()),
                (None, None) => None,
            },
            http: self.api.client(JOIN_REQUEST_TIMEOUT_MS),
        }
    }

    /// Founds a cluster with this node (at `addr`) as its only voter and returns its id, if
    /// nothing speaks against it.
    pub async fn found(&self, raft: &Raft, addr: &NodeAddr) -> Result<String, FoundError> {
        if let Some(cluster_id) = self.identity.cluster_id() {
            return Err(FoundError::AlreadyMember { cluster_id });
        }
        if raft
            .is_initialized()
            .await
            .map_err(|e| FoundError::Raft(e.to_string()))?
        {
            return Err(FoundError::Initialized);
        }
        if let Some(seed) = &self.joining {
            return Err(FoundError::Joining { seed: seed.clone() });
        }
        // A peer in a cluster decides, even while others are silent: this node belongs there.
        let mut silent = None;
        for peer in &self.peers {
            match read_identity(&self.http, &self.api.url(peer, "/v1/cluster")).await {
                Ok(PeerIdentity {
                    cluster_id: Some(cluster_id),
                    ..
                }) => {
                    return Err(FoundError::PeerMember {
                        peer: peer.clone(),
                        cluster_id,
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    silent.get_or_insert(FoundError::PeerSilent {
                        peer: peer.clone(),
                        error,
                    });
                }
            }
        }
        if let Some(e) = silent {
            return Err(e);
        }
        // Recorded before Raft is initialized: a node that crashed in between refuses to found
        // again rather than risk a second cluster (its error names the file to inspect).
        let cluster_id = fresh_cluster_id();
        self.identity.join_cluster(&cluster_id)?;
        raft.initialize(BTreeMap::from([(self.node_id, addr.clone())]))
            .await
            .map_err(|e| FoundError::Raft(e.to_string()))?;
        Ok(cluster_id)
    }

    /// `--bootstrap` at start: founds the cluster when every founding peer confirms there is
    /// none, waits while one is silent, and joins through a peer that belongs to one.
    pub async fn at_start(self, raft: Raft, addr: NodeAddr, mut stop: watch::Receiver<bool>) {
        loop {
            match self.found(&raft, &addr).await {
                Ok(cluster_id) => {
                    tracing::info!(
                        id = self.node_id,
                        cluster_id,
                        "founded a new cluster with this node as its only voter"
                    );
                    return;
                }
                Err(FoundError::AlreadyMember { .. } | FoundError::Initialized) => return,
                Err(FoundError::PeerMember { peer, cluster_id }) => {
                    tracing::error!(
                        peer,
                        cluster_id,
                        "a founding peer belongs to a cluster, and this node's data directory does not: this node does not found another one, and asks to join that one instead"
                    );
                    join_cluster(self.join_request(addr, self.api.url(&peer, "")), raft, stop).await;
                    return;
                }
                Err(e @ FoundError::PeerSilent { .. }) => tracing::warn!(error = %e, "waiting before founding"),
                Err(e) => {
                    tracing::error!(error = %e, "founding the cluster failed");
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(RETRY_MS)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Asks the node whose `GET /v1/cluster` is at `url` who it is.
pub async fn read_identity(http: &reqwest::Client, url: &str) -> Result<PeerIdentity, String> {
    #[derive(Deserialize)]
    struct View {
        id: u64,
        incarnation: String,
        cluster_id: Option<String>,
    }
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let view: View = response.json().await.map_err(|e| format!("{url}: {e}"))?;
    let incarnation = u64::from_str_radix(&view.incarnation, 16)
        .map_err(|_| format!("{url}: incarnation {:?} is not hexadecimal", view.incarnation))?;
    Ok(PeerIdentity {
        id: view.id,
        incarnation: Incarnation(incarnation),
        cluster_id: view.cluster_id,
    })
}

/// Who asks which cluster to be added.
pub struct JoinRequest {
    pub id: u64,
    pub addr: NodeAddr,
    /// The API of a member (`https://host:port`).
    pub seed: String,
    /// Sent as the bearer token: the join token, else the admin token (adding a member is an
    /// admin's action, or a join token's).
    pub bearer: Option<String>,
    /// Trusts the cluster CA; follows no redirect (`join_cluster` follows them with the token).
    pub http: reqwest::Client,
}

/// Time limit of one join request (it waits for the new member's log to catch up).
const JOIN_REQUEST_TIMEOUT_MS: u64 = 60_000;

/// Asks the cluster at the request's seed to add this node, until it is a member or the node
/// stops. A refusal that needs an operator (this node's old data directory is gone, or the
/// cluster asks for a token this node was not given) is logged with what to do, and asked
/// again: once the operator removed the old member, the next request adds this one.
pub async fn join_cluster(request: JoinRequest, raft: Raft, mut stop: watch::Receiver<bool>) {
    let JoinRequest {
        id,
        addr,
        seed,
        bearer,
        http: client,
    } = request;
    // Redirects (a seed that is not the leader) are followed here, with the token: reqwest
    // would drop the Authorization header on the way to another port.
    let body = serde_json::json!({
        "id": id,
        "raft_addr": addr.raft_addr,
        "api_addr": addr.api_addr,
        "incarnation": Incarnation(addr.incarnation).to_string(),
    });
    let first_url = format!("{}/v1/cluster/members", seed.trim_end_matches('/'));
    let mut url = first_url.clone();
    // Redirects followed since the last pause: a few, so two nodes that name each other as
    // the leader during an election do not make this spin.
    let mut redirects = 0;
    loop {
        let member = crate::raft::metrics(&raft)
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == id);
        if member {
            tracing::info!(id, "joined the cluster");
            return;
        }
        let mut post = client.post(&url).json(&body);
        if let Some(token) = &bearer {
            post = post.bearer_auth(token);
        }
        match post.send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(id, seed, "join accepted");
                return;
            }
            Ok(r) if r.status() == reqwest::StatusCode::TEMPORARY_REDIRECT => {
                match r.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()) {
                    Some(leader)
                        if redirects < 3 && (leader.starts_with("http://") || leader.starts_with("https://")) =>
                    {
                        tracing::info!(id, seed, leader, "the seed is not the leader; asking the leader");
                        url = leader.to_string();
                        redirects += 1;
                        continue;
                    }
                    _ => tracing::warn!(seed, "the seed redirected without a leader's address; asking again"),
                }
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
                    tracing::error!(%status, seed, answer = %text, "join refused: the cluster asks for an admin token or a live join token; give this node the cluster's --admin-token-file or a --join-token (asking again)");
                } else {
                    tracing::warn!(%status, seed, answer = %text, "join refused; asking again");
                }
            }
            Err(e) => tracing::warn!(error = %e, seed, "join request failed; asking again"),
        }
        // The next attempt asks the seed again: the leader it named may have moved on.
        url = first_url.clone();
        redirects = 0;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(RETRY_MS)) => {}
            _ = stop.changed() => return,
        }
    }
}
