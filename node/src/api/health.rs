//! Liveness and readiness, each saying why in its body.
//!
//! `live` answers 200 only while Raft runs: its core answers a query within
//! `LIVE_PROBE_TIMEOUT_MS` and has not stopped on a fatal error (a storage failure, a panic in
//! the state machine). A supervisor restarts a node that is not live; a node whose Raft stopped
//! would otherwise keep serving stale reads. `ready` answers 200 when the node is live, is a
//! member, sees a leader, and has applied to within `READY_MAX_LAG_ENTRIES` of the commit index
//! it knows: a load balancer sends reads only to nodes whose answers are current.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use std::time::Duration;

/// How long the Raft core may take to answer the liveness probe.
pub const LIVE_PROBE_TIMEOUT_MS: u64 = 2_000;
/// Most committed entries a ready node may have left to apply.
pub const READY_MAX_LAG_ENTRIES: u64 = 10_000;

/// Why Raft is not running, if it is not.
async fn raft_problem(app: &AppState) -> Option<String> {
    if let Err(fatal) = &crate::raft::metrics(&app.raft).running_state {
        return Some(format!("raft stopped: {fatal}"));
    }
    match tokio::time::timeout(
        Duration::from_millis(LIVE_PROBE_TIMEOUT_MS),
        app.raft.with_raft_state(|_| ()),
    )
    .await
    {
        Ok(Ok(())) => None,
        Ok(Err(fatal)) => Some(format!("raft stopped: {fatal}")),
        Err(_) => Some(format!("raft did not answer within {LIVE_PROBE_TIMEOUT_MS} ms")),
    }
}

fn unavailable(status: &str, reason: String) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": status, "reason": reason })),
    )
}

#[utoipa::path(get, path = "/v1/health/live", tag = "health",
    responses((status = 200, description = "Raft runs on this node"), (status = 503, description = "Raft stopped or does not answer; the body says why")))]
pub async fn live(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    match raft_problem(&app).await {
        None => (StatusCode::OK, Json(json!({ "status": "live" }))),
        Some(reason) => unavailable("not_live", reason),
    }
}

#[utoipa::path(get, path = "/v1/health/ready", tag = "health",
    responses((status = 200, description = "a live member that sees a leader and has applied what it knows committed"),
              (status = 503, description = "not ready; the body says why")))]
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    if let Some(reason) = raft_problem(&app).await {
        return unavailable("not_ready", reason);
    }
    let m = crate::raft::metrics(&app.raft);
    if m.membership_config.membership().get_node(&app.id).is_none() {
        return unavailable("not_ready", "not a cluster member yet".into());
    }
    let Some(leader) = m.current_leader else {
        return unavailable("not_ready", "no leader".into());
    };
    let committed = m.local_committed.as_ref().map_or(0, |id| id.index);
    let applied = m.last_applied.as_ref().map_or(0, |id| id.index);
    let lag = committed.saturating_sub(applied);
    if lag > READY_MAX_LAG_ENTRIES {
        return unavailable(
            "not_ready",
            format!("{lag} committed entries not applied yet (at most {READY_MAX_LAG_ENTRIES})"),
        );
    }
    (
        StatusCode::OK,
        Json(json!({ "status": "ready", "leader": leader, "applied_index": applied, "lag_entries": lag })),
    )
}

/// Prometheus metrics of this node (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "metrics in OpenMetrics text format")))]
pub async fn metrics(axum::extract::State(app): axum::extract::State<super::AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = app.metrics.scrape(&app.raft, &app.machine, &app.providers);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
