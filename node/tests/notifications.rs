//! Outgoing notifications end to end: a receiver on loopback that checks each delivery's
//! signature as documented, fails at first, and still gets exactly one delivery per pipeline
//! state it asked for (deduplicated by delivery id), named so.

mod common;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SIGNING_SECRET: &str = "notify-secret-value-1";

/// Deliveries by id: the event header and the body. Answers 500 to the first `failures`, and
/// 401 (recording nothing) to any whose signature does not verify.
async fn receiver(failures: usize) -> (String, Arc<Mutex<BTreeMap<String, (String, Value)>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let got: Arc<Mutex<BTreeMap<String, (String, Value)>>> = Default::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let state = (got.clone(), calls);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (got, calls) = state.clone();
            async move {
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SIGNING_SECRET.as_bytes());
                let verified = header("x-flotilla-signature-256")
                    .strip_prefix("sha256=")
                    .and_then(|h| hex::decode(h).ok())
                    .is_some_and(|sig| ring::hmac::verify(&key, body.as_bytes(), &sig).is_ok());
                if !verified {
                    return StatusCode::UNAUTHORIZED;
                }
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                got.lock()
                    .unwrap()
                    .insert(header("x-flotilla-delivery"), (header("x-flotilla-event"), body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notifier_gets_each_state_it_asked_for_signed_once_though_it_fails_at_first() {
    let (url, got) = receiver(2).await;
    let keys = tempfile::tempdir().unwrap();
    let c = Cluster::start(3, &["--secrets-key-file", &secrets_key_file(keys.path())]).await;
    c.register_pool(1).await;
    let (s, v) = c.put(1, "/v1/secrets/sign", json!({ "value": SIGNING_SECRET })).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = c
        .put(
            2,
            "/v1/notifiers/chat",
            json!({ "url": url, "secret": "missing", "on": ["SUCCEEDED"] }),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (422, Some("secret")), "{v}");
    let (s, v) = c
        .put(
            2,
            "/v1/notifiers/chat",
            json!({ "url": url, "secret": "sign", "on": ["SUCCEEDED", "FAILED"] }),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let (_, v) = c.submit(1, "fine", None).await;
    let fine = v["pipeline"].as_u64().unwrap();
    let failing = json!({ "name": "broken", "jobs": [job_spec("build", json!({ "steps": ["exit 1"] }))] });
    let (_, v) = c.post(1, "/v1/pipelines", failing).await;
    let broken = v["pipeline"].as_u64().unwrap();

    let expected = [
        (format!("p{fine}-succeeded-chat"), "pipeline.succeeded"),
        (format!("p{broken}-failed-chat"), "pipeline.failed"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !expected.iter().all(|(id, _)| got.lock().unwrap().contains_key(id)) {
        assert!(
            Instant::now() < deadline,
            "deliveries: {:?}\n{}",
            got.lock().unwrap(),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let owed = c
        .wait_get(1, "/v1/notifiers?consistency=linearizable", "nothing owed", |s, v| {
            s == 200 && v["owed"] == 0
        })
        .await;
    assert_eq!(owed["items"][0]["name"], "chat");
    // The console lists it by its receiver's origin, never its path (often its credential).
    let page = c.get_text(1, "/ui/repos").await;
    let origin = url.strip_suffix("/hook").unwrap();
    assert!(
        page.contains("data-notifier=\"chat\"") && page.contains(origin),
        "{page}"
    );
    assert!(!page.contains(&url), "the receiver's path is shown: {page}");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2, "only the states asked for: {got:?}");
    for (id, event) in &expected {
        let (header, body) = &got[id];
        assert_eq!(header, event);
        assert_eq!(body["delivery"], id.as_str());
        assert_eq!(body["tenant"], "default");
    }
}
