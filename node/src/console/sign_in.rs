//! Signing in to the console with a token, and out again.
//!
//! The token is checked exactly as the API's gate checks a bearer token (live, known, of a
//! role that may read); a good one is answered with the session cookie
//! (`auth::session_cookie`) and a redirect to the page asked for. The form posts the token
//! once; no script ever sees it afterwards. Signing out needs the session's CSRF value (a form
//! field here, as a plain form cannot send headers).

use crate::api::AppState;
use crate::auth::{Permission, TokenSecret, session_cookie};
use axum::Form;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_state_machine::Role;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

/// Longest `next` path a sign-in returns to.
const MAX_NEXT_BYTES: usize = 512;

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// Where to go after signing in: a console path of this node, never another site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.starts_with("/ui//")
                && n.len() <= MAX_NEXT_BYTES
                && !n.contains(['\\', '\r', '\n'])
                && !n.starts_with("/ui/sign-") =>
        {
            n.to_string()
        }
        _ => "/ui/pipelines".to_string(),
    }
}

fn form_page(next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (super::layout::head("Sign in", html! {}))
            body {
                main #main.sign-in {
                    h1 { "Flotilla" }
                    form method="post" action="/ui/sign-in" {
                        @if let Some(e) = error { p.error role="alert" #sign-in-error { (e) } }
                        label for="token" { "API token" }
                        input #token name="token" type="password" autocomplete="off" required
                            pattern="flt_[0-9a-f]{64}" aria-describedby="token-help";
                        p #token-help.small { "A token from " code { "flotilla token create" } " (any role may read; actions need their role)." }
                        input type="hidden" name="next" value=(next);
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

pub async fn form(RawQuery(raw): RawQuery) -> Response {
    let q: SignInQuery = crate::api::parse_query(raw).unwrap_or_default();
    form_page(&safe_next(q.next.as_deref()), None).into_response()
}

/// Whether a form post comes from a page of this node: its `Origin`, when the browser sends one,
/// names the host it was sent to. Another site's page cannot sign a browser in with a token of
/// its choosing (login CSRF).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && origin_host == host
}

pub async fn sign_in(State(app): State<AppState>, headers: HeaderMap, Form(form): Form<SignInForm>) -> Response {
    let next = safe_next(form.next.as_deref());
    let refuse = |status: StatusCode, message: &str| (status, form_page(&next, Some(message))).into_response();
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, "Sign in from this node's own sign-in page.");
    }
    let Some(secret) = TokenSecret::parse(form.token.trim()) else {
        return refuse(StatusCode::UNAUTHORIZED, "That is not a token: flt_ and 64 hex digits.");
    };
    if let Err(e) = crate::auth::gate::secret_caller(&app, &secret, Permission::AtLeast(Role::Viewer)) {
        return refuse(e.status(), e.message());
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, next.as_str())]).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie::set_cookie(&secret, app.tls.is_some()),
    );
    response
}

pub async fn sign_out(State(app): State<AppState>, headers: HeaderMap, Form(form): Form<SignOutForm>) -> Response {
    if let Some(Ok(secret)) = session_cookie::presented(&headers) {
        use subtle::ConstantTimeEq;
        let expected = session_cookie::csrf_value(&secret);
        if !bool::from(form.csrf.as_bytes().ct_eq(expected.as_bytes())) {
            return crate::api::ApiError::new(StatusCode::FORBIDDEN, "csrf", "sign-out needs the session's csrf field")
                .field("csrf")
                .into_response();
        }
    }
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/sign-in")]).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie::clear_cookie(app.tls.is_some()));
    response
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn a_sign_in_posted_from_another_origin_is_refused() {
        use axum::http::{HeaderMap, HeaderValue, header};
        let headers = |origin: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8101"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            h
        };
        assert!(super::same_origin(&headers(None)));
        assert!(super::same_origin(&headers(Some("https://127.0.0.1:8101"))));
        assert!(!super::same_origin(&headers(Some("https://127.0.0.1:9999"))));
        assert!(!super::same_origin(&headers(Some("https://evil.example"))));
        assert!(!super::same_origin(&headers(Some("null"))));
    }

    #[test]
    fn sign_in_returns_only_to_console_paths() {
        assert_eq!(safe_next(Some("/ui/jobs/3")), "/ui/jobs/3");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil.example",
            "/v1/tokens",
            "/ui/sign-in",
            "/ui/\\evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/pipelines", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/pipelines");
        assert_eq!(safe_next(Some(&format!("/ui/{}", "a".repeat(600)))), "/ui/pipelines");
    }
}
