//! `/v1/cluster`: status, bootstrap, membership changes.
//!
//! Membership changes run on the leader; a follower answers `307 Temporary Redirect` to the
//! leader's API address, which HTTP clients follow with the same method and body.

use super::input_body::InputBody;
use super::{ApiError, AppState};
use crate::identity::Incarnation;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_raft_store::NodeAddr;
use flotilla_raft_store::TypeConfig;
use openraft::ChangeMembers;
use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use utoipa::ToSchema;

/// Longest a membership change may wait (a learner catching up, a change committing).
pub const MEMBERSHIP_CHANGE_TIMEOUT_MS: u64 = 30_000;

#[derive(Serialize)]
pub struct MemberView {
    pub id: u64,
    pub raft_addr: String,
    pub api_addr: String,
    /// The member's data directory as the cluster added it (16 hex digits).
    pub incarnation: String,
    pub voter: bool,
    /// Highest log index the leader knows this member has (only on the leader).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
}

#[derive(Serialize)]
pub struct ClusterView {
    pub id: u64,
    /// The cluster this node belongs to; `null` until it founds one or is added to one.
    pub cluster_id: Option<String>,
    /// This node's data directory (16 hex digits): a directory that was lost and recreated is
    /// another incarnation, which the cluster refuses as the member it was.
    pub incarnation: String,
    /// This node's wall clock (ms since the epoch), which peers sample (`cluster_clock.rs`).
    pub now_ms: u64,
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub leader_api_addr: Option<String>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub members: Vec<MemberView>,
}

#[utoipa::path(get, path = "/v1/cluster", tag = "cluster", responses((status = 200, description = "this node's view: members, leader, term, indexes")))]
pub async fn status(State(app): State<AppState>) -> Json<ClusterView> {
    Json(view(&app))
}

/// This node's view of its cluster, from its Raft metrics (the route and the console share it).
pub fn view(app: &AppState) -> ClusterView {
    let m = crate::raft::metrics(&app.raft);
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let matched: BTreeMap<u64, Option<u64>> = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, lid)| (*id, lid.as_ref().map(|l| l.index))).collect())
        .unwrap_or_default();
    let members = membership
        .nodes()
        .map(|(id, node)| MemberView {
            id: *id,
            raft_addr: node.raft_addr.clone(),
            api_addr: node.api_addr.clone(),
            incarnation: Incarnation(node.incarnation).to_string(),
            voter: voters.contains(id),
            matched_index: matched.get(id).copied().flatten(),
        })
        .collect();
    let leader_api_addr = crate::raft::leader_addr(&m).map(|n| n.api_addr);
    ClusterView {
        id: app.id,
        cluster_id: app.founding.identity.cluster_id(),
        incarnation: app.founding.identity.incarnation().to_string(),
        now_ms: crate::raft::proposer::wall_clock_ms(),
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        leader_api_addr,
        last_log_index: m.last_log_index,
        committed_index: m.local_committed.map(|l| l.index),
        applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        members,
    }
}

/// Founds a new cluster with this node as its only voter (`founding.rs` says what it checks).
#[utoipa::path(post, path = "/v1/cluster/init", tag = "cluster",
    responses((status = 201, description = "founded: this node is the only voter"),
              (status = 401, description = "this node was given the pre-shared admin token (--admin-token-file) and the request does not carry it", body = super::openapi::ErrorBodyDoc),
              (status = 409, description = "this node belongs to a cluster or is joining one, or a founding peer belongs to one", body = super::openapi::ErrorBodyDoc),
              (status = 503, description = "a founding peer did not answer", body = super::openapi::ErrorBodyDoc)))]
pub async fn init(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Result<Response, ApiError> {
    use crate::founding::FoundError;
    // A node given the pre-shared admin token founds only for its holder. (One that belongs
    // to a cluster refuses below whoever asks; its cluster id is public at GET /v1/cluster.)
    if let Some(preshared) = &app.founding.admin_token
        && app.founding.identity.cluster_id().is_none()
    {
        crate::auth::gate::check_preshared(&headers, preshared)?;
    }
    match app.founding.found(&app.raft, &app.addr).await {
        Ok(cluster_id) => {
            tracing::info!(
                id = app.id,
                cluster_id,
                "founded a new cluster with this node as its only voter"
            );
            // The first admin token, handed out here once (unless it is pre-shared: the caller
            // holds it already). If it cannot be committed yet, the cluster still stands:
            // POST /v1/tokens/bootstrap makes it later, or the leader commits the pre-shared one.
            let secret = app
                .founding
                .admin_token
                .clone()
                .unwrap_or_else(crate::auth::TokenSecret::generate);
            let shown = app.founding.admin_token.is_none().then(|| secret.reveal().to_string());
            let (admin_token, admin_token_error) = match super::tokens::commit_bootstrap(&app.proposer, &secret).await {
                Ok(_) => (shown, None),
                Err(e) => (
                    None,
                    Some(format!(
                        "no admin token yet ({}): create it with POST /v1/tokens/bootstrap (flotilla token bootstrap)",
                        e.message()
                    )),
                ),
            };
            Ok((
                StatusCode::CREATED,
                Json(serde_json::json!({
                    "initialized": app.id,
                    "cluster_id": cluster_id,
                    "admin_token": admin_token,
                    "admin_token_preshared": app.founding.admin_token.is_some(),
                    "admin_token_error": admin_token_error,
                })),
            )
                .into_response())
        }
        Err(e @ (FoundError::AlreadyMember { .. } | FoundError::Initialized)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_initialized",
            e.to_string(),
        )),
        Err(e @ FoundError::Joining { .. }) => Err(ApiError::new(StatusCode::CONFLICT, "joining", e.to_string())),
        Err(e @ FoundError::PeerMember { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, "peer_in_cluster", e.to_string()))
        }
        Err(e @ FoundError::PeerSilent { .. }) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "peer_silent", e.to_string()).retry_after(1))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "init_failed",
            e.to_string(),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub id: u64,
    pub raft_addr: String,
    pub api_addr: String,
    /// The node's data directory (16 hex digits), as it reports at `GET /v1/cluster`. When
    /// given it must match what the node reports; the leader asks the node either way.
    #[serde(default)]
    pub incarnation: Option<String>,
}

/// Redirects to the leader when this node is not it: the routes whose commands the leader
/// alone proposes (membership, and the operators' and admins' changes that are no client
/// request a follower may forward, `Command::is_client_request`).
pub(super) fn leader_redirect(app: &AppState, path: &str) -> Result<(), ApiError> {
    if app.raft.is_leader() {
        return Ok(());
    }
    match crate::raft::leader_addr(&crate::raft::metrics(&app.raft)) {
        Some(leader) => {
            let message = format!("send this to the leader at {}", leader.api_addr);
            Err(ApiError::new(StatusCode::TEMPORARY_REDIRECT, "not_leader", message)
                .location(app.founding.api.url(&leader.api_addr, path)))
        }
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            "no leader is known; retry",
        )
        .retry_after(1)),
    }
}

/// Adds a node: first as a learner that catches up, then promotes it to voter.
#[utoipa::path(post, path = "/v1/cluster/members", tag = "cluster", request_body(content = super::openapi::AddMemberDoc, content_type = "application/json"),
    responses((status = 201, description = "added as a voter"), (status = 200, description = "already a voter"), (status = 307, description = "sent to a follower: see Location"),
              (status = 409, description = "id taken by another address", body = super::openapi::ErrorBodyDoc), super::openapi::StandardErrors,
              (status = 504, description = "the new node did not catch up in time; it stays a learner", body = super::openapi::ErrorBodyDoc)))]
pub async fn add_member(
    State(app): State<AppState>,
    join: Option<axum::Extension<crate::auth::gate::JoinBearer>>,
    InputBody(req): InputBody<AddMember>,
) -> Result<Response, ApiError> {
    leader_redirect(&app, "/v1/cluster/members")?;
    if req.id == 0 {
        return Err(ApiError::bad_request("id", "id must be greater than 0"));
    }
    // A join token in place of an admin's: used up for this node before anything changes (a
    // retried join of the same node is answered again; another node is refused).
    if let Some(axum::Extension(crate::auth::gate::JoinBearer(secret))) = &join {
        let command = flotilla_state_machine::Command::RedeemJoinToken {
            secret_sha256: secret.sha256(),
            node: req.id,
        };
        super::done(app.proposer.commit(command).await?)?;
    }
    for (field, addr) in [("raft_addr", &req.raft_addr), ("api_addr", &req.api_addr)] {
        crate::settings::check_host_port(addr).map_err(|e| ApiError::bad_request(field, e))?;
    }
    let given = match &req.incarnation {
        None => None,
        Some(text) => Some(
            (text.len() == 16)
                .then(|| u64::from_str_radix(text, 16).ok())
                .flatten()
                .ok_or_else(|| ApiError::bad_request("incarnation", "incarnation must be 16 hex digits"))?,
        ),
    };
    let incarnation = node_incarnation(&app, &req, given).await?;
    let node = NodeAddr {
        raft_addr: req.raft_addr.clone(),
        api_addr: req.api_addr.clone(),
        incarnation: incarnation.0,
    };
    let membership = crate::raft::metrics(&app.raft).membership_config.membership().clone();
    if let Some(existing) = membership.get_node(&req.id) {
        if (&existing.raft_addr, &existing.api_addr) != (&node.raft_addr, &node.api_addr) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "id_taken",
                format!("node {} is already a member at {existing}", req.id),
            )
            .field("id"));
        }
        if existing.incarnation != node.incarnation {
            let message = format!(
                "node {id} is a member whose data directory was lost or replaced (the cluster added incarnation {known}, the node now runs on {now}): a member without its log may not vote as the one it was. Remove it first (flotilla cluster remove {id}), then add it again",
                id = req.id,
                known = Incarnation(existing.incarnation),
                now = incarnation,
            );
            return Err(ApiError::new(StatusCode::CONFLICT, "data_lost", message).field("id"));
        }
        if membership.voter_ids().any(|v| v == req.id) {
            return Ok(Json(serde_json::json!({ "added": req.id, "already_member": true })).into_response());
        }
    }
    let fail = |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "membership_change_failed", e).retry_after(1);
    // The learner must catch up before it is promoted; a node that never answers (a wrong or
    // unreachable address) would make this wait forever without a deadline.
    let timed_out = || {
        let message = format!(
            "node {} did not catch up within {MEMBERSHIP_CHANGE_TIMEOUT_MS} ms; it stays a learner (check that {} is reachable, then retry or remove it)",
            req.id, req.raft_addr
        );
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message).field("raft_addr")
    };
    within_deadline(
        &app.founding.api,
        "/v1/cluster/members",
        || app.raft.add_learner(req.id, node.clone(), true),
        &timed_out,
        &fail,
    )
    .await?;
    let promote = ChangeMembers::AddVoterIds(BTreeSet::from([req.id]));
    within_deadline(
        &app.founding.api,
        "/v1/cluster/members",
        || app.raft.change_membership(promote.clone(), false),
        &timed_out,
        &fail,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "added": req.id, "already_member": false })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferLeader {
    pub to: u64,
}

/// The incarnation of the node being added, as the node itself reports it: it must be the node
/// the request names, not belong to another cluster, and match the request's incarnation.
async fn node_incarnation(app: &AppState, req: &AddMember, given: Option<u64>) -> Result<Incarnation, ApiError> {
    let reported =
        crate::founding::read_identity(&app.founding.http, &app.founding.api.url(&req.api_addr, "/v1/cluster"))
            .await
            .map_err(|e| {
                let message = format!("could not ask node {} at {} who it is: {e}", req.id, req.api_addr);
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "node_unreachable", message)
                    .field("api_addr")
                    .retry_after(1)
            })?;
    if reported.id != req.id {
        let message = format!(
            "the node at {} is node {}, not node {}",
            req.api_addr, reported.id, req.id
        );
        return Err(ApiError::new(StatusCode::CONFLICT, "other_node", message).field("id"));
    }
    let own = app.founding.identity.cluster_id();
    if let (Some(theirs), Some(own)) = (&reported.cluster_id, &own)
        && theirs != own
    {
        let message = format!(
            "node {} belongs to cluster {theirs}, not to this cluster ({own})",
            req.id
        );
        return Err(ApiError::new(StatusCode::CONFLICT, "other_cluster", message).field("api_addr"));
    }
    if let Some(given) = given
        && given != reported.incarnation.0
    {
        let message = format!(
            "node {} reports incarnation {}, not {}",
            req.id,
            reported.incarnation,
            Incarnation(given)
        );
        return Err(ApiError::new(StatusCode::CONFLICT, "incarnation_mismatch", message).field("incarnation"));
    }
    Ok(reported.incarnation)
}

/// Hands leadership to another voter.
#[utoipa::path(post, path = "/v1/cluster/transfer-leader", tag = "cluster", request_body(content = super::openapi::TransferLeaderDoc, content_type = "application/json"),
    responses((status = 200, description = "the target leads"), (status = 307, description = "sent to a follower: see Location"),
              (status = 422, description = "target is not a voter", body = super::openapi::ErrorBodyDoc), (status = 503, description = "the transfer did not complete", body = super::openapi::ErrorBodyDoc)))]
pub async fn transfer_leader(
    State(app): State<AppState>,
    InputBody(req): InputBody<TransferLeader>,
) -> Result<Response, ApiError> {
    leader_redirect(&app, "/v1/cluster/transfer-leader")?;
    let membership = crate::raft::metrics(&app.raft).membership_config.membership().clone();
    if !membership.voter_ids().any(|v| v == req.to) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_voter",
            format!("node {} is not a voter", req.to),
        )
        .field("to"));
    }
    if req.to != app.id {
        crate::raft::transfer_leadership(&app.raft, req.to, std::time::Duration::from_millis(app.rpc_timeout_ms))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "transfer_failed", e.to_string()).retry_after(1)
            })?;
    }
    Ok(Json(serde_json::json!({ "leader": req.to })).into_response())
}

/// Removes a node from the voters and from the cluster's node list.
#[utoipa::path(delete, path = "/v1/cluster/members/{id}", tag = "cluster", params(("id" = u64, Path)),
    responses((status = 200, description = "removed"), (status = 307, description = "sent to a follower: see Location"), (status = 404, description = "not a member", body = super::openapi::ErrorBodyDoc),
              (status = 409, description = "the membership change was refused (another change in progress)", body = super::openapi::ErrorBodyDoc),
              super::openapi::StandardErrors, (status = 504, description = "the change did not commit in time", body = super::openapi::ErrorBodyDoc)))]
pub async fn remove_member(State(app): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = super::parse_id("id", &id)?;
    let path = format!("/v1/cluster/members/{id}");
    leader_redirect(&app, &path)?;
    let membership = crate::raft::metrics(&app.raft).membership_config.membership().clone();
    if membership.get_node(&id).is_none() {
        return Err(ApiError::not_found(format!("node {id} is not a member")));
    }
    let fail = |e: String| ApiError::new(StatusCode::CONFLICT, "membership_change_failed", e);
    let timed_out = || {
        let message = format!("removing node {id} did not commit within {MEMBERSHIP_CHANGE_TIMEOUT_MS} ms; retry");
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message).retry_after(1)
    };
    if membership.voter_ids().any(|v| v == id) {
        let demote = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
        within_deadline(
            &app.founding.api,
            &path,
            || app.raft.change_membership(demote.clone(), false),
            &timed_out,
            &fail,
        )
        .await?;
    }
    let remove = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
    within_deadline(
        &app.founding.api,
        &path,
        || app.raft.change_membership(remove.clone(), false),
        &timed_out,
        &fail,
    )
    .await?;
    Ok(Json(serde_json::json!({ "removed": id })).into_response())
}

/// Runs one membership step within `MEMBERSHIP_CHANGE_TIMEOUT_MS`: `timed_out` answers a step
/// that did not finish in time, `fail` one that failed. A step refused because an earlier
/// change is not committed yet (the founding membership just after `init`, or a change another
/// request started) is tried again every 100 ms until the deadline: openraft allows one change
/// at a time, and that refusal means "wait", not that anything is wrong. Adding a node right
/// after `cluster init` was refused so (seen in CI). `path` is the route, for the redirect
/// when leadership moves meanwhile.
async fn within_deadline<T, Fut>(
    api: &crate::tls::ApiTransport,
    path: &str,
    step: impl Fn() -> Fut,
    timed_out: impl Fn() -> ApiError,
    fail: impl Fn(String) -> ApiError,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<T, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(MEMBERSHIP_CHANGE_TIMEOUT_MS);
    loop {
        match tokio::time::timeout_at(deadline, step()).await {
            Err(_) => return Err(timed_out()),
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(e),
            )))) => {
                if tokio::time::Instant::now() + std::time::Duration::from_millis(100) >= deadline {
                    return Err(fail(e.to_string()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            // Leadership moved while the change was asked for: with a leader known, the
            // client is sent there (the steps are idempotent, so it can ask again from the
            // start); during an election, the step waits for one like a change in progress.
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                if let Some(leader) = f.leader_node {
                    let message = format!("leadership moved; send this to the leader at {}", leader.api_addr);
                    return Err(ApiError::new(StatusCode::TEMPORARY_REDIRECT, "not_leader", message)
                        .location(api.url(&leader.api_addr, path)));
                }
                if tokio::time::Instant::now() + std::time::Duration::from_millis(100) >= deadline {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "no_leader",
                        "leadership was lost during the change and no leader was elected in time; retry",
                    )
                    .retry_after(1));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Ok(Err(e)) => return Err(fail(e.to_string())),
        }
    }
}

/// A digest of this node's applied state, to compare replicas: nodes at the same applied index
/// must report the same digest.
#[derive(Clone, Serialize, ToSchema)]
pub struct StateDigest {
    pub applied_index: u64,
    /// SHA-256 of the state's record encoding (`flotilla_raft_store::encode`: the format-version
    /// byte, then bincode 2's standard configuration) followed by every stored output chunk as
    /// a snapshot file holds it (`DiskView::write_chunks`), hexadecimal.
    pub digest: String,
}

/// The last digest computed, by applied index. Computing one encodes the whole state, so it is
/// done at most once per applied index and by one request at a time; the others wait for it.
#[derive(Default)]
pub struct DigestCache {
    last: tokio::sync::Mutex<Option<StateDigest>>,
}

#[utoipa::path(get, path = "/v1/cluster/state-digest", tag = "cluster",
    responses((status = 200, description = "applied index and state digest", body = StateDigest)))]
pub async fn state_digest(State(app): State<AppState>) -> Result<Json<StateDigest>, ApiError> {
    let mut last = app.digests.last.lock().await;
    let applied = app.machine.read().last_applied.as_ref().map_or(0, |l| l.index);
    if let Some(cached) = last.as_ref().filter(|d| d.applied_index == applied) {
        return Ok(Json(cached.clone()));
    }
    let state = app.machine.clone();
    let digest = tokio::task::spawn_blocking(move || digest_of(&state))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    *last = Some(digest.clone());
    Ok(Json(digest))
}

/// Hashes the state's encoding as it is written, without building it in memory.
fn digest_of(machine: &flotilla_raft_store::StateHandle) -> std::io::Result<StateDigest> {
    use sha2::Digest;
    struct HashWriter(sha2::Sha256);
    impl std::io::Write for HashWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // The state (a clone: its maps are persistent, so this is a copy of a few pointers) and
    // the output as of the same entry, both taken under the read lock, which applies hold to
    // write output; the hashing runs after it is released, so applies never wait on it.
    let data = machine.read();
    let state = data.state.clone();
    let applied_index = data.last_applied.as_ref().map_or(0, |l| l.index);
    let output = machine.disk().consistent_view();
    drop(data);
    let mut w = HashWriter(sha2::Sha256::new());
    flotilla_raft_store::encode_into(&state, &mut w)?;
    drop(state);
    output.write_chunks(&mut w)?;
    let hash = w.0.finalize();
    let digest = hash.iter().map(|b| format!("{b:02x}")).collect();
    Ok(StateDigest { applied_index, digest })
}
