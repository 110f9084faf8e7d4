//! The REST API, versioned under `/v1`, served by every node.
//!
//! Writes go through the `Proposer` (a follower forwards to the leader). Reads are served from
//! this node's applied state and report its applied index in `X-Flotilla-Applied-Index`;
//! `?consistency=linearizable` first waits until this node has applied the leader's read index.

mod artifacts;
mod attempt_source;
mod attempt_upload;
mod caches;
pub(crate) mod cluster;
mod error;
mod events;
mod health;
pub(crate) mod hooks;
pub(crate) mod input_body;
mod jobs;
mod join;
mod limits;
mod notifiers;
pub mod openapi;
pub(crate) mod pipelines;
mod pools;
pub mod records;
mod repositories;
mod retention;
mod schedules;
mod secrets;
pub mod server;
mod tenants;
pub mod tokens;
mod yaml_guard;
mod yaml_lines;

pub use error::ApiError;
pub use events::StreamedEvent;

use crate::Raft;
use crate::auth::Permission;
use crate::raft::proposer::Proposer;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Method;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use flotilla_raft_store::{NodeAddr, StateHandle};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub const APPLIED_INDEX_HEADER: &str = "x-flotilla-applied-index";
/// Most items one list request returns.
pub const MAX_PAGE: usize = 1000;
pub const DEFAULT_PAGE: usize = 100;

#[derive(Clone)]
pub struct AppState {
    pub id: u64,
    pub addr: NodeAddr,
    /// This node's identity and what founding a cluster from it must check.
    pub founding: crate::founding::Founding,
    pub raft: Raft,
    pub machine: StateHandle,
    pub proposer: Proposer,
    pub rpc_timeout_ms: u64,
    pub metrics: Arc<crate::observe::metrics::NodeMetrics>,
    pub providers: Arc<flotilla_providers::ProviderSet>,
    /// Open `/v1/events` streams (bounded by `--max-event-streams`).
    pub event_streams: Arc<Semaphore>,
    /// The last state digest computed (`GET /v1/cluster/state-digest`).
    pub digests: Arc<cluster::DigestCache>,
    /// Becomes `true` when the node stops: open streams end so the server can close.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Whether callers need tokens (`--auth`).
    pub auth: crate::auth::AuthMode,
    /// This node's TLS (its CA, for joining nodes); `None` under `--insecure-plaintext`.
    pub tls: Option<crate::tls::NodeTls>,
    /// The secrets' keys (`--secrets-key-file`); `None`: this node stores no secrets.
    pub keyring: Option<Arc<crate::secrets::Keyring>>,
    /// Leadership changes as this node saw them (the console's cluster page).
    pub leader_history: Arc<crate::raft::leader_history::LeaderHistory>,
    /// Repositories and checkouts on this node's disk (webhooks read pipeline files here).
    pub sources: Arc<crate::source::Sources>,
    /// Artifact blobs on this node's disk, and the peers to fetch a missing one from.
    pub blobs: Arc<crate::artifacts::BlobPeers>,
}

/// Limits applied to the whole API.
#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    pub max_concurrent_requests: usize,
    pub max_request_bytes: usize,
}

/// Every route, once, with what it asks of its caller: the router is built from this table,
/// a test compares it with the OpenAPI document, and another calls every route with every
/// role.
fn routes() -> Vec<(&'static str, Method, MethodRouter<AppState>, Permission)> {
    use flotilla_state_machine::Role::{Admin, Operator, Submitter, Viewer};
    let at_least = Permission::AtLeast;
    vec![
        (
            "/v1/pipelines",
            Method::POST,
            post(pipelines::submit),
            at_least(Submitter),
        ),
        ("/v1/pipelines", Method::GET, get(pipelines::list), at_least(Viewer)),
        (
            "/v1/pipelines/{id}",
            Method::GET,
            get(pipelines::get_one),
            at_least(Viewer),
        ),
        (
            "/v1/pipelines/{id}/cancel",
            Method::POST,
            post(pipelines::cancel),
            at_least(Submitter),
        ),
        (
            "/v1/pipelines/{id}/rerun",
            Method::POST,
            post(pipelines::rerun),
            at_least(Submitter),
        ),
        ("/v1/jobs", Method::GET, get(jobs::list), at_least(Viewer)),
        ("/v1/jobs/{id}", Method::GET, get(jobs::get_one), at_least(Viewer)),
        (
            "/v1/jobs/{id}/cancel",
            Method::POST,
            post(jobs::cancel),
            at_least(Submitter),
        ),
        (
            "/v1/jobs/{id}/approve",
            Method::POST,
            post(jobs::approve),
            at_least(Submitter),
        ),
        ("/v1/jobs/{id}/logs", Method::GET, get(jobs::logs), at_least(Viewer)),
        (
            "/v1/jobs/{id}/artifacts",
            Method::GET,
            get(artifacts::show),
            at_least(Viewer),
        ),
        (
            "/v1/jobs/{id}/artifacts/archive",
            Method::GET,
            get(artifacts::archive),
            at_least(Viewer),
        ),
        ("/v1/caches", Method::GET, get(caches::list), at_least(Viewer)),
        (
            "/v1/caches",
            Method::DELETE,
            delete(caches::clear_all),
            at_least(Submitter),
        ),
        (
            "/v1/caches/{key}",
            Method::DELETE,
            delete(caches::clear_one),
            at_least(Submitter),
        ),
        (
            "/v1/jobs/{id}/why-pending",
            Method::GET,
            get(jobs::why_pending),
            at_least(Viewer),
        ),
        ("/v1/events", Method::GET, get(events::stream), at_least(Viewer)),
        ("/v1/pools", Method::GET, get(pools::list), at_least(Viewer)),
        ("/v1/pools", Method::POST, post(pools::register), at_least(Operator)),
        (
            "/v1/pools/{name}/drain",
            Method::POST,
            post(pools::drain),
            at_least(Operator),
        ),
        (
            "/v1/pools/{name}",
            Method::DELETE,
            delete(pools::remove),
            at_least(Operator),
        ),
        ("/v1/tenants", Method::GET, get(tenants::list), at_least(Viewer)),
        (
            "/v1/tenants/{name}/quota",
            Method::PUT,
            put(tenants::set_quota),
            at_least(Admin),
        ),
        (
            "/v1/tenants/{name}/quota",
            Method::DELETE,
            delete(tenants::clear_quota),
            at_least(Admin),
        ),
        (
            "/v1/tenants/{name}/retention",
            Method::PUT,
            put(retention::set_tenant),
            at_least(Admin),
        ),
        (
            "/v1/tenants/{name}/retention",
            Method::DELETE,
            delete(retention::clear_tenant),
            at_least(Admin),
        ),
        ("/v1/retention", Method::GET, get(retention::get), at_least(Viewer)),
        (
            "/v1/retention/default",
            Method::PUT,
            put(retention::set_default),
            at_least(Admin),
        ),
        (
            "/v1/retention/default",
            Method::DELETE,
            delete(retention::clear_default),
            at_least(Admin),
        ),
        ("/v1/limits", Method::GET, get(limits::get), at_least(Viewer)),
        ("/v1/limits", Method::PUT, put(limits::update), at_least(Admin)),
        ("/v1/cluster", Method::GET, get(cluster::status), Permission::Public),
        (
            "/v1/cluster/init",
            Method::POST,
            post(cluster::init),
            Permission::Public,
        ),
        (
            "/v1/cluster/members",
            Method::POST,
            post(cluster::add_member),
            Permission::AdminOrJoinToken,
        ),
        (
            "/v1/cluster/join-tokens",
            Method::POST,
            post(join::create),
            at_least(Admin),
        ),
        ("/v1/cluster/ca", Method::POST, post(join::ca), Permission::JoinToken),
        (
            "/v1/cluster/members/{id}",
            Method::DELETE,
            delete(cluster::remove_member),
            at_least(Admin),
        ),
        (
            "/v1/cluster/transfer-leader",
            Method::POST,
            post(cluster::transfer_leader),
            at_least(Admin),
        ),
        (
            "/v1/cluster/state-digest",
            Method::GET,
            get(cluster::state_digest),
            at_least(Viewer),
        ),
        (
            "/v1/tokens/bootstrap",
            Method::POST,
            post(tokens::bootstrap),
            Permission::Public,
        ),
        ("/v1/tokens", Method::POST, post(tokens::create), at_least(Admin)),
        ("/v1/tokens", Method::GET, get(tokens::list), at_least(Admin)),
        (
            "/v1/tokens/{id}",
            Method::DELETE,
            delete(tokens::revoke),
            at_least(Admin),
        ),
        ("/v1/secrets", Method::GET, get(secrets::list), at_least(Viewer)),
        (
            "/v1/secrets/rotate-keys",
            Method::POST,
            post(secrets::rotate_keys),
            at_least(Admin),
        ),
        ("/v1/secrets/{name}", Method::PUT, put(secrets::set), at_least(Operator)),
        (
            "/v1/secrets/{name}",
            Method::DELETE,
            delete(secrets::delete),
            at_least(Operator),
        ),
        ("/v1/repos", Method::GET, get(repositories::list), at_least(Viewer)),
        (
            "/v1/repos/{name}",
            Method::GET,
            get(repositories::get_one),
            at_least(Viewer),
        ),
        (
            "/v1/repos/{name}",
            Method::PUT,
            put(repositories::put),
            at_least(Operator),
        ),
        (
            "/v1/repos/{name}",
            Method::DELETE,
            delete(repositories::remove),
            at_least(Operator),
        ),
        (
            "/v1/repos/{name}/run",
            Method::POST,
            post(repositories::run),
            at_least(Submitter),
        ),
        ("/v1/notifiers", Method::GET, get(notifiers::list), at_least(Viewer)),
        (
            "/v1/notifiers/{name}",
            Method::PUT,
            put(notifiers::put),
            at_least(Operator),
        ),
        (
            "/v1/notifiers/{name}",
            Method::DELETE,
            delete(notifiers::remove),
            at_least(Operator),
        ),
        ("/v1/schedules", Method::GET, get(schedules::list), at_least(Viewer)),
        (
            "/v1/schedules/{name}",
            Method::PUT,
            put(schedules::put),
            at_least(Operator),
        ),
        (
            "/v1/schedules/{name}",
            Method::DELETE,
            delete(schedules::remove),
            at_least(Operator),
        ),
        (
            "/v1/jobs/{id}/attempts/{attempt}/source",
            Method::GET,
            get(attempt_source::source),
            Permission::Public,
        ),
        (
            "/v1/jobs/{id}/attempts/{attempt}/cache",
            Method::GET,
            get(attempt_source::cache),
            Permission::Public,
        ),
        (
            "/v1/jobs/{id}/attempts/{attempt}/uploads/{purpose}/{digest}",
            Method::PUT,
            put(attempt_upload::upload),
            Permission::Public,
        ),
        (
            "/v1/jobs/{id}/attempts/{attempt}/inputs/{n}",
            Method::GET,
            get(attempt_source::inputs),
            Permission::Public,
        ),
        (
            "/v1/hooks/{tenant}/{repository}",
            Method::POST,
            post(hooks::receive),
            Permission::Public,
        ),
        ("/v1/health/live", Method::GET, get(health::live), Permission::Public),
        ("/v1/health/ready", Method::GET, get(health::ready), Permission::Public),
        (
            "/v1/openapi.json",
            Method::GET,
            get(openapi::openapi_json),
            Permission::Public,
        ),
        ("/metrics", Method::GET, get(health::metrics), at_least(Viewer)),
    ]
}

/// `(path, method)` of every route the router serves.
pub fn route_table() -> Vec<(&'static str, Method)> {
    routes().into_iter().map(|(p, m, _, _)| (p, m)).collect()
}

/// `(path, method, permission)` of every route.
pub fn route_permissions() -> Vec<(&'static str, Method, Permission)> {
    routes().into_iter().map(|(p, m, _, a)| (p, m, a)).collect()
}

pub fn router(state: AppState, limits: ApiLimits) -> Router {
    // One semaphore for the whole API. (A tower `ConcurrencyLimitLayer` given to
    // `Router::layer` is instantiated per route, which would bound each route separately.)
    let in_flight = Arc::new(Semaphore::new(limits.max_concurrent_requests));
    routes()
        .into_iter()
        .fold(Router::new(), |r, (path, _, method_router, permission)| {
            let gate = crate::auth::gate::Gate {
                app: state.clone(),
                permission,
            };
            r.route(
                path,
                method_router.route_layer(middleware::from_fn_with_state(gate, crate::auth::gate::check)),
            )
        })
        .merge(crate::console::routes(state.clone()))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_request_bytes))
        .layer(middleware::from_fn_with_state(in_flight, shed_overload))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::console::member_cors,
        ))
        .layer(middleware::from_fn_with_state(state.metrics.clone(), count_request))
        .with_state(state)
}

/// Counts every answered request by matched route, method and status, with its latency.
async fn count_request(
    State(metrics): State<Arc<crate::observe::metrics::NodeMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let labels = crate::observe::metrics::RouteLabels {
        route: route.clone(),
        method: method.clone(),
    };
    metrics
        .api_latency_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    metrics
        .api_requests
        .get_or_create(&crate::observe::metrics::RequestLabels {
            route,
            method,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

/// Answers 429 at once when `max_concurrent_requests` requests are in progress. The permit is
/// held until the handler returns its response (a streamed body then runs on without it).
async fn shed_overload(State(in_flight): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    match in_flight.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "too many requests in progress",
        )
        .retry_after(1)
        .into_response(),
    }
}

/// Query parameters shared by reads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    pub consistency: Option<String>,
    pub limit: Option<usize>,
    pub after: Option<u64>,
    pub state: Option<String>,
    pub pipeline: Option<u64>,
    /// Lists only: this tenant's records (within the caller's scope).
    pub tenant: Option<String>,
    /// Logs only: keep the response open and stream output as it is committed.
    pub follow: Option<bool>,
    /// Followed logs only: start after this many bytes of output (a reader resuming, on this
    /// or another node, where its stream broke).
    pub offset: Option<u64>,
}

impl ReadQuery {
    pub fn page(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(0) => Err(ApiError::bad_request("limit", "limit must be at least 1")),
            Some(n) if n > MAX_PAGE => Err(ApiError::bad_request(
                "limit",
                format!("limit must be at most {MAX_PAGE}"),
            )),
            Some(n) => Ok(n),
        }
    }

    /// The `tenant` filter, refused past the longest tenant name any state can hold.
    pub fn tenant(&self) -> Result<Option<&str>, ApiError> {
        let ceiling = flotilla_state_machine::Limits::CEILING.max_name_bytes;
        match self.tenant.as_deref() {
            Some("") => Err(ApiError::bad_request("tenant", "tenant must not be empty")),
            Some(t) if t.len() > ceiling => Err(ApiError::bad_request(
                "tenant",
                format!("tenant must be at most {ceiling} bytes"),
            )),
            other => Ok(other),
        }
    }
}

/// Parses a query string with a JSON error naming the bad parameter.
pub fn parse_query<T: serde::de::DeserializeOwned + Default>(raw: Option<String>) -> Result<T, ApiError> {
    match raw {
        None => Ok(T::default()),
        Some(q) => serde_urlencoded_parse(&q),
    }
}

fn serde_urlencoded_parse<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError::bad_request("query", "malformed query string"))?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| ApiError::bad_request("query", e.body_text()))
}

impl AppState {
    /// Waits, if asked for linearizable reads, until this node has applied the leader's read
    /// index. Returns the applied index the read is served at.
    pub async fn read_barrier(&self, consistency: Option<&str>) -> Result<u64, ApiError> {
        match consistency {
            None | Some("local") => {}
            Some("linearizable") => {
                let index = self.proposer.read_index().await?;
                self.raft
                    .wait(Some(Duration::from_millis(self.rpc_timeout_ms)))
                    .applied_index_at_least(Some(index), "linearizable read")
                    .await
                    .map_err(|e| {
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()).retry_after(1)
                    })?;
            }
            Some(other) => {
                return Err(ApiError::bad_request(
                    "consistency",
                    format!("consistency must be `local` or `linearizable`, not {other:?}"),
                ));
            }
        }
        Ok(self.machine.read().last_applied.as_ref().map_or(0, |id| id.index))
    }
}

/// A JSON response stamped with the applied index it was read at.
pub fn read_response<T: Serialize>(applied_index: u64, body: &T) -> Response {
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut().insert(
        HeaderName::from_static(APPLIED_INDEX_HEADER),
        HeaderValue::from(applied_index),
    );
    resp
}

/// For a tenant-scoped caller about to change a pipeline or job: that `tenant_of` finds it in
/// one of their tenants, judged after a linearizable barrier (a tenant never changes once
/// committed, so what this node then holds decides); else 404 saying `missing`, as for what
/// does not exist. Free for an unrestricted caller.
pub async fn admit_scoped(
    app: &AppState,
    scope: &crate::auth::TenantScope,
    tenant_of: impl Fn(&flotilla_state_machine::State, &flotilla_raft_store::DiskStore) -> Option<String>,
    missing: impl Fn() -> String,
) -> Result<(), ApiError> {
    if !scope.is_restricted() {
        return Ok(());
    }
    app.read_barrier(Some("linearizable")).await?;
    let data = app.machine.read();
    if tenant_of(&data.state, app.machine.disk()).is_some_and(|t| scope.admits(&t)) {
        Ok(())
    } else {
        Err(ApiError::not_found(missing()))
    }
}

/// A read of one item of the applied state, the shape of every `GET .../{id}`: the query's
/// consistency is honoured, then `render` answers from the state under its read lock and the
/// store of archived records (given the applied index for `read_response`), or gives `None`
/// for the error `missing` makes from the same state (404, or 410 for what retention removed).
pub async fn read_one(
    app: &AppState,
    raw_query: Option<String>,
    missing: impl FnOnce(&flotilla_state_machine::State, &flotilla_raft_store::DiskStore) -> ApiError,
    render: impl FnOnce(
        &flotilla_state_machine::State,
        &flotilla_raft_store::DiskStore,
        u64,
    ) -> Result<Option<Response>, ApiError>,
) -> Result<Response, ApiError> {
    let q: ReadQuery = parse_query(raw_query)?;
    let applied = app.read_barrier(q.consistency.as_deref()).await?;
    let data = app.machine.read();
    let disk = app.machine.disk();
    render(&data.state, disk, applied)?.ok_or_else(|| missing(&data.state, disk))
}

/// Removes the thing named `name` of the caller's tenant (a repository, a schedule, a
/// notifier) with the command `command(tenant, name)` makes; answers what it removed.
pub(crate) async fn remove_named(
    app: &AppState,
    scope: &crate::auth::TenantScope,
    headers: &axum::http::HeaderMap,
    name: String,
    command: impl FnOnce(String, String) -> flotilla_state_machine::Command,
) -> Result<Response, ApiError> {
    let tenant = scope.submission_tenant(pipelines::header(headers, crate::auth::scope::TENANT_HEADER)?)?;
    done(app.proposer.commit(command(tenant.clone(), name.clone())).await?)?;
    Ok(axum::Json(serde_json::json!({ "tenant": tenant, "name": name, "removed": true })).into_response())
}

/// Parses a numeric id from the path, with a JSON error on failure.
pub fn parse_id(field: &str, raw: &str) -> Result<u64, ApiError> {
    raw.trim_start_matches(['p', 'j'])
        .parse()
        .map_err(|_| ApiError::bad_request(field, format!("{raw:?} is not an id")))
}

/// Parses a `?state=` filter into one of the domain's state enums (case-insensitive).
pub fn parse_state<T: serde::de::DeserializeOwned>(raw: Option<&str>, allowed: &str) -> Result<Option<T>, ApiError> {
    raw.map(|s| serde_json::from_value(serde_json::Value::String(s.to_uppercase())))
        .transpose()
        .map_err(|_| ApiError::bad_request("state", format!("state must be one of {allowed}")))
}

impl<T: Serialize> Page<T> {
    /// Takes up to `page` items from `items` (already filtered to ids after `after`), and the
    /// cursor for the next page if more remain.
    pub fn collect(
        items: impl Iterator<Item = T>,
        page: usize,
        id_of: impl Fn(&T) -> u64,
        applied_index: u64,
    ) -> Page<T> {
        let mut items: Vec<T> = items.take(page + 1).collect();
        let next_after = (items.len() > page).then(|| id_of(&items[page - 1]));
        items.truncate(page);
        Page {
            items,
            next_after,
            applied_index,
        }
    }
}

/// The answer to a cancel command: the jobs it cancelled (a job cancel of a cancelled job
/// lists that job), or why it was refused.
pub fn cancelled(response: flotilla_state_machine::Response) -> Result<Response, ApiError> {
    match response {
        flotilla_state_machine::Response::Cancelled { jobs } => {
            Ok(axum::Json(serde_json::json!({ "cancelled": jobs })).into_response())
        }
        flotilla_state_machine::Response::Rejected(r) => Err(r.into()),
        other => Err(unexpected(other)),
    }
}

/// Whether a command answered `Done` changed anything; a refusal as its error.
pub fn done(response: flotilla_state_machine::Response) -> Result<bool, ApiError> {
    match response {
        flotilla_state_machine::Response::Done { changed } => Ok(changed),
        flotilla_state_machine::Response::Rejected(r) => Err(r.into()),
        other => Err(unexpected(other)),
    }
}

/// Commits `command`, which only the leader proposes (no client request a follower may
/// forward, `Command::is_client_request`), on this node if it leads, else answers a redirect
/// to the leader for `path`; whether it changed anything.
pub async fn commit_at_leader(
    app: &AppState,
    path: &str,
    command: flotilla_state_machine::Command,
) -> Result<bool, ApiError> {
    cluster::leader_redirect(app, path)?;
    done(app.proposer.commit(command).await?)
}

/// A response of the wrong kind for its command: a bug, reported as such.
pub fn unexpected(response: flotilla_state_machine::Response) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "unexpected",
        format!("unexpected response {response:?}"),
    )
}

#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
    pub applied_index: u64,
}
