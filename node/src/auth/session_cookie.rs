//! The console's session cookie: how a browser presents a token without script ever holding it.
//!
//! Signing in to the console (`POST /ui/sign-in`) checks the token against the replicated token
//! table and answers with a cookie that carries it: `HttpOnly` (no script reads it),
//! `SameSite=Strict` (no other site's page sends it), `Secure` over TLS, `Path=/`, and no
//! `Max-Age` (the browser keeps it for its session; the token's own expiry and revocation still
//! hold, checked on every request by every node, so revoking a token signs its console sessions
//! out everywhere at once). Cookies are not scoped by port, so a page served by one node of a
//! cluster on one host reaches the others with the same cookie, which is what lets it resume its
//! event stream elsewhere when its node dies.
//!
//! A request authenticated by the cookie that changes anything (any method but GET and HEAD)
//! must also carry `X-Flotilla-Csrf`: an HMAC-SHA256 of a fixed label keyed by the token's
//! secret, which the console's pages embed. Another page on the same host (another port counts
//! as the same site) cannot read our pages, so it cannot learn the value; the cookie alone
//! changes nothing.

use super::TokenSecret;
use axum::http::{HeaderMap, HeaderValue, Method, header};

/// The cookie's name.
pub const COOKIE: &str = "flotilla_session";
/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-flotilla-csrf";
/// Most bytes of `Cookie` headers read looking for the session (a request's headers are bounded
/// by the server too; this keeps the scan short).
pub const MAX_COOKIE_HEADER_BYTES: usize = 8 * 1024;

const CSRF_LABEL: &[u8] = b"flotilla console csrf v1";

/// The session cookie's token in `headers`: `None` without the cookie, an error when its value
/// is not a token's shape.
pub fn presented(headers: &HeaderMap) -> Option<Result<TokenSecret, ()>> {
    let mut scanned = 0usize;
    for value in headers.get_all(header::COOKIE) {
        scanned += value.len();
        if scanned > MAX_COOKIE_HEADER_BYTES {
            return None;
        }
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name.trim() == COOKIE
            {
                return Some(TokenSecret::parse(value.trim().trim_matches('"')).ok_or(()));
            }
        }
    }
    None
}

/// The CSRF value of a session signed in with `secret` (64 hex digits).
pub fn csrf_value(secret: &TokenSecret) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.reveal().as_bytes());
    ring::hmac::sign(&key, CSRF_LABEL)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a request of `method` authenticated by the cookie of `secret` may proceed: reads
/// always, changes only with the session's `X-Flotilla-Csrf` (compared in constant time).
pub fn csrf_admits(method: &Method, headers: &HeaderMap, secret: &TokenSecret) -> bool {
    if matches!(*method, Method::GET | Method::HEAD) {
        return true;
    }
    let Some(sent) = headers.get(CSRF_HEADER) else {
        return false;
    };
    use subtle::ConstantTimeEq;
    bool::from(sent.as_bytes().ct_eq(csrf_value(secret).as_bytes()))
}

/// What signs a browser in with `secret`.
pub fn set_cookie(secret: &TokenSecret, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
        secret.reveal()
    ))
    .expect("a token secret is visible ASCII")
}

/// What signs a browser out.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    ))
    .expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_session_is_found_among_other_cookies_and_a_malformed_one_is_an_error() {
        let secret = TokenSecret::generate();
        let h = headers(&[
            ("cookie", "theme=dark"),
            ("cookie", &format!("a=b; {COOKIE}={}; c=d", secret.reveal())),
        ]);
        assert_eq!(presented(&h), Some(Ok(secret)));
        assert_eq!(presented(&headers(&[("cookie", "a=b")])), None);
        assert_eq!(
            presented(&headers(&[("cookie", &format!("{COOKIE}=nope"))])),
            Some(Err(()))
        );
        assert_eq!(presented(&HeaderMap::new()), None);
    }

    #[test]
    fn a_change_needs_the_sessions_own_csrf_value() {
        let secret = TokenSecret::generate();
        let other = TokenSecret::generate();
        let value = csrf_value(&secret);
        assert_eq!(value.len(), 64);
        assert_ne!(value, csrf_value(&other));
        assert!(csrf_admits(&Method::GET, &HeaderMap::new(), &secret));
        assert!(!csrf_admits(&Method::POST, &HeaderMap::new(), &secret));
        assert!(!csrf_admits(
            &Method::POST,
            &headers(&[(CSRF_HEADER, &csrf_value(&other))]),
            &secret
        ));
        assert!(csrf_admits(
            &Method::DELETE,
            &headers(&[(CSRF_HEADER, &value)]),
            &secret
        ));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict_and_secure_over_tls() {
        let secret = TokenSecret::generate();
        let set = set_cookie(&secret, true);
        let text = set.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(text.contains(part), "{text}");
        }
        assert!(!set_cookie(&secret, false).to_str().unwrap().contains("Secure"));
        assert!(clear_cookie(false).to_str().unwrap().contains("Max-Age=0"));
    }
}
