//! Artifacts and caches in an S3-compatible object store (`--artifact-store`), against a real
//! S3 server started here (moto's, from PyPI; `.ci/run` installs it, and without it this test
//! fails saying so): a job's files reach the job that needs it through the bucket, a cache
//! too, the bucket holds each blob once under its digest, and a node that never had a blob on
//! its disk serves it from the bucket, checked against its digest.

mod common;
use common::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "flotilla-blobs";

/// A moto S3 server on a loopback port, stopped by its PID when dropped.
struct S3Server {
    child: Child,
    url: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn s3_server() -> S3Server {
    let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = free_port();
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} (pip install 'moto[server]') could not start: {e}"));
    let server = S3Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // The bucket, made with a plain request (moto checks no signature).
    loop {
        match http.put(format!("{}/{BUCKET}", server.url)).send().await {
            Ok(r) if r.status().is_success() => break,
            other => {
                assert!(Instant::now() < deadline, "the S3 server did not come up: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    server
}

/// The keys of the bucket's objects under `prefix`.
async fn objects(s3: &S3Server, prefix: &str) -> Vec<String> {
    let body = reqwest::get(format!("{}/{BUCKET}?list-type=2&prefix={prefix}", s3.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_and_caches_go_through_the_bucket() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s3 = s3_server().await;
    let store = format!("s3://{BUCKET}/ci");
    let mut c = Cluster::spawn(
        3,
        &[
            "--artifact-store",
            &store,
            "--artifact-store-endpoint",
            &s3.url,
            "--leader-tick-ms",
            "100",
        ],
    )
    .await;
    // Credentials for the server (any will do for moto); without them the client would ask
    // a cloud metadata service.
    for id in 1..=3 {
        let node = c.node_mut(id);
        node.kill9();
        node.env = vec![
            ("AWS_ACCESS_KEY_ID".into(), "flotilla".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "flotilla-secret".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ];
        node.spawn();
    }
    for id in 1..=3 {
        c.wait_http(id).await;
    }
    c.form().await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;

    let spec = json!({ "name": "through-s3", "jobs": [
        job_spec("build", json!({ "steps": ["mkdir -p out deps && yes s3 | head -c 300000 > out/bin && echo dep > deps/d"],
            "artifacts": { "paths": ["out"] }, "cache": { "key": "deps", "paths": ["deps"] } })),
        job_spec("test", json!({ "needs": ["build"], "steps": ["test \"$(wc -c < out/bin)\" -eq 300000 && echo read-back"] })),
    ]});
    let (s, v) = c.post(1, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let (build, test) = (
        v["jobs"][0]["id"].as_u64().unwrap(),
        v["jobs"][1]["id"].as_u64().unwrap(),
    );
    let done = c
        .wait_get(2, &format!("/v1/jobs/{test}"), "the consumer ended", |s, v| {
            s == 200 && matches!(v["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
        })
        .await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}\n{}", c.logs());
    let (s, artifact) = c
        .get(1, &format!("/v1/jobs/{build}/artifacts?consistency=linearizable"))
        .await;
    assert_eq!(s, 200, "{artifact}");
    let digest = artifact["digest"].as_str().unwrap().to_string();
    let (_, caches) = c.get(1, "/v1/caches?consistency=linearizable").await;
    let cache_digest = caches["items"][0]["digest"]
        .as_str()
        .expect("the cache was saved")
        .to_string();

    // The bucket holds each blob once, under its digest.
    let keys = objects(&s3, "ci/sha256/").await;
    assert!(keys.contains(&format!("ci/sha256/{digest}")), "{keys:?}");
    assert!(keys.contains(&format!("ci/sha256/{cache_digest}")), "{keys:?}");

    // A node whose disk lacks the blob serves it from the bucket, checked on the way.
    let node = (1..=3)
        .find(|id| !c.node(*id).data_dir.join("artifacts/sha256").join(&digest).exists())
        .unwrap_or_else(|| {
            // Every node has it (the leader packed it, the others delivered or served it):
            // drop one node's copy.
            std::fs::remove_file(c.node(3).data_dir.join("artifacts/sha256").join(&digest)).unwrap();
            3
        });
    let bytes = c
        .authorized(
            c.http
                .get(c.node(node).url(&format!("/v1/jobs/{build}/artifacts/archive"))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.status(), 200, "node {node}");
    let body = bytes.bytes().await.unwrap();
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&body)),
        digest,
        "node {node} sent other bytes"
    );

    // The next pipeline restores the cache from the bucket.
    let spec = json!({ "name": "warm", "jobs": [job_spec("again", json!({ "steps": ["cat deps/d"],
        "cache": { "key": "deps", "paths": ["deps"], "policy": "pull" } }))] });
    let (s, v) = c.post(2, "/v1/pipelines", spec).await;
    assert_eq!(s, 201, "{v}");
    let id = v["jobs"][0]["id"].as_u64().unwrap();
    let done = c
        .wait_get(1, &format!("/v1/jobs/{id}"), "the warm job ended", |s, v| {
            s == 200 && matches!(v["state"].as_str(), Some("SUCCEEDED" | "FAILED"))
        })
        .await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    assert_eq!(
        done["attempts"][0]["cache"]["restored"],
        cache_digest.as_str(),
        "{done}"
    );
}
