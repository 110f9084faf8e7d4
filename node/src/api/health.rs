//! Liveness (the process answers) and readiness (the node is in a cluster that has a leader).

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;

#[utoipa::path(get, path = "/v1/health/live", tag = "health", responses((status = 200, description = "the process answers")))]
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

#[utoipa::path(get, path = "/v1/health/ready", tag = "health",
    responses((status = 200, description = "a member of a cluster with a leader"), (status = 503, description = "not ready")))]
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let m = crate::metrics(&app.raft);
    let member = m.membership_config.membership().get_node(&app.id).is_some();
    match (m.current_leader, member) {
        (Some(leader), true) => (StatusCode::OK, Json(json!({ "status": "ready", "leader": leader }))),
        (_, false) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "not_ready", "reason": "not a cluster member yet" }))),
        (None, _) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "not_ready", "reason": "no leader" }))),
    }
}

/// Prometheus metrics of this node (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "metrics in OpenMetrics text format")))]
pub async fn metrics(axum::extract::State(app): axum::extract::State<super::AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = app.metrics.scrape(&app.raft, &app.state, &app.providers);
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}
