//! The web console: live pages served by every node on the API port under `/ui`, with their
//! data from a backend-for-frontend under `/ui/api/`.
//!
//! Pages are rendered on the server (maud templates, escaped by default) from this node's
//! applied state, and say how fresh that is; a small hand-written script embedded in the binary
//! follows `/v1/events` and refreshes the page's live region in place, resuming from its last
//! event id on another member when this node stops answering. No build chain, no CDN: the
//! stylesheet and script are `include_str!`ed.
//!
//! Access: under `--auth tokens` every page and BFF route needs a viewer's session (the cookie
//! set by signing in, `auth::session_cookie`) or a bearer token; a browser without one is sent
//! to the sign-in page. Actions on the pages call the REST API with the session's CSRF value and
//! appear only for roles the API would admit.

pub mod bff;
pub mod dag;
pub mod fleet_pages;
pub mod layout;
pub mod sign_in;
pub mod source_pages;
pub mod view;
pub mod work_pages;

use crate::api::AppState;
use crate::auth::{AuthMode, Permission, session_cookie};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use flotilla_state_machine::Role;
use layout::Viewer;
use maud::html;

const CONSOLE_CSS: &str = include_str!("assets/console.css");
const CONSOLE_JS: &str = include_str!("assets/console.js");
/// Most bytes of an error body a page turns into its HTML error page.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// The console's routes, merged into the API's router (same port, limits and overload shedding).
pub fn routes(app: AppState) -> Router<AppState> {
    let gated = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/pipelines") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/pipelines") }))
        .route("/ui/pipelines", get(work_pages::pipelines))
        .route("/ui/pipelines/{id}", get(work_pages::pipeline))
        .route("/ui/jobs/{id}", get(work_pages::job))
        .route("/ui/cluster", get(fleet_pages::cluster))
        .route("/ui/pools", get(fleet_pages::pools))
        .route("/ui/repos", get(source_pages::sources))
        .route("/ui/events", get(fleet_pages::events))
        .route("/ui/api/pipelines", get(bff::pipelines))
        .route("/ui/api/pipelines/{id}", get(bff::pipeline))
        .route("/ui/api/jobs/{id}", get(bff::job))
        .route("/ui/api/cluster", get(bff::cluster))
        .route("/ui/api/pools", get(bff::pools))
        .route_layer(middleware::from_fn_with_state(app, require_viewer));
    Router::new()
        .route("/ui/sign-in", get(sign_in::form).post(sign_in::sign_in))
        .route("/ui/sign-out", post(sign_in::sign_out))
        .route("/ui/assets/console.css", get(css))
        .route("/ui/assets/console.js", get(js))
        .merge(gated)
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CONSOLE_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", CONSOLE_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Finds who is looking (a session cookie or a bearer token), sends a browser without one to
/// sign in, and turns a page's errors into HTML. The BFF's errors stay JSON.
async fn require_viewer(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let is_api = path.starts_with("/ui/api/");
    let viewer = if app.auth == AuthMode::None {
        Viewer {
            caller: None,
            csrf: None,
        }
    } else {
        match crate::auth::gate::caller(&app, request.headers(), Permission::AtLeast(Role::Viewer)) {
            Ok(caller) => Viewer {
                caller: Some(caller),
                csrf: session_cookie::presented(request.headers())
                    .and_then(Result::ok)
                    .map(|s| session_cookie::csrf_value(&s)),
            },
            Err(e) if e.status() == StatusCode::UNAUTHORIZED && !is_api => {
                let next = request.uri().path_and_query().map_or("/ui/pipelines", |p| p.as_str());
                let to = format!("/ui/sign-in?next={}", layout::percent_encode(next));
                return Redirect::to(&to).into_response();
            }
            Err(e) => {
                return if is_api {
                    e.into_response()
                } else {
                    error_page(e.status(), e.message())
                };
            }
        }
    };
    request.extensions_mut().insert(viewer);
    let response = next.run(request).await;
    if is_api || response.status().is_success() || response.status().is_redirection() {
        return response;
    }
    // A page's error arrives as the API's JSON body: show its message as a page.
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ERROR_BODY_BYTES)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    error_page(status, &message)
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = html! {
        (maud::DOCTYPE)
        html lang="en" {
            (layout::head(&status.as_u16().to_string(), html! {}))
            body {
                main #main {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.error role="alert" { (message) }
                    p { a href="/ui/pipelines" { "Pipelines" } }
                }
            }
        }
    };
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Lets the console's pages served by one member read `GET` routes of the others (their event
/// stream, their pages' live regions) with the session cookie: the answer names the asking
/// origin as allowed, with credentials, when that origin is a member's API address. Any other
/// origin gets no CORS headers, so browsers keep its pages from reading ours.
pub async fn member_cors(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let is_read = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let mut response = next.run(request).await;
    if let Some(origin) = origin.filter(|_| is_read)
        && layout::member_origins(&app).contains(&origin)
        && let Ok(value) = HeaderValue::from_str(&origin)
    {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}
