//! A repository behind authentication, fetched over smart HTTP (`git http-backend`, as a forge
//! serves it): the repository's token (a tenant secret) opens it, and its job sees the
//! commit's files; a wrong token is refused with a clear error, and the token's value never
//! appears in an answer, a recorded delivery or a node's log.

mod common;
#[path = "common/git.rs"]
mod git;
use common::*;
use git::{GitHttpServer, commit, repository};
use serde_json::json;

const TOKEN: &str = "repo-read-token-7f3a91c2";
const WRONG: &str = "not-the-token-0000";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repository_behind_authentication_is_fetched_with_its_token_and_never_shows_it() {
    let root = tempfile::tempdir().unwrap();
    let work = repository(root.path());
    commit(
        &work,
        "first",
        &[
            (
                ".flotilla.yml",
                Some(
                    "name: ci\njobs:\n  - name: test\n    steps: [cat greeting.txt]\n    resources: { cpu_millis: 100, memory_mib: 64 }\n",
                ),
            ),
            ("greeting.txt", Some("fetched over authenticated http")),
        ],
    );
    let server = GitHttpServer::start(root.path(), "flotilla", TOKEN).await;

    let keys = tempfile::tempdir().unwrap();
    let c = Cluster::start(1, &["--secrets-key-file", &secrets_key_file(keys.path())]).await;
    c.register_pool(1).await;
    for (name, value) in [("hook", "shared-hook-secret"), ("fetch", TOKEN)] {
        let (s, v) = c
            .put(1, &format!("/v1/secrets/{name}"), json!({ "value": value }))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let body = json!({ "url": format!("{}/app.git", server.url), "forge": "git",
                       "webhook_secret": "hook", "credentials": "fetch" });
    let (s, v) = c.put(1, "/v1/repos/app", body).await;
    assert_eq!(s, 200, "{v}");

    let (s, v) = c.post(1, "/v1/repos/app/run", json!({ "branch": "main" })).await;
    assert_eq!(s, 201, "{v}\n{}", c.logs());
    let pipeline = v["pipeline"].as_u64().unwrap();
    let (_, p) = c
        .get(1, &format!("/v1/pipelines/{pipeline}?consistency=linearizable"))
        .await;
    let job = p["jobs"][0].as_u64().unwrap();
    let done = c
        .wait_get(1, &format!("/v1/jobs/{job}"), "the job finished", |s, v| {
            s == 200 && v["state"].as_str().is_some_and(|s| s == "SUCCEEDED" || s == "FAILED")
        })
        .await;
    let logs = c.get_text(1, &format!("/v1/jobs/{job}/logs")).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}\n{logs}\n{}", c.logs());
    assert!(logs.contains("fetched over authenticated http"), "{logs}");
    {
        let seen = server.seen.lock().unwrap();
        assert!(seen.admitted > 0, "no request carried the token: {seen:?}");
        assert!(seen.refused.is_empty(), "requests went without the token: {seen:?}");
    }

    // The wrong token: refused by the server, answered with a clear error that names the
    // repository, not the token.
    let (s, v) = c.put(1, "/v1/secrets/fetch", json!({ "value": WRONG })).await;
    assert_eq!(s, 200, "{v}");
    commit(&work, "second", &[("greeting.txt", Some("a newer commit"))]);
    let (s, v) = c.post(1, "/v1/repos/app/run", json!({ "branch": "main" })).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"]["code"], "fetch_failed", "{v}");
    let refused = server.seen.lock().unwrap().refused.len();
    assert!(refused > 0, "the server never saw the wrong token");

    let (_, repo) = c.get(1, "/v1/repos/app?consistency=linearizable").await;
    for text in [v.to_string(), repo.to_string(), c.logs()] {
        assert!(!text.contains(TOKEN) && !text.contains(WRONG), "a token leaked: {text}");
    }
    drop(server);
}
