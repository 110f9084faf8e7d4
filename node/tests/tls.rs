//! TLS: the Raft port requires a certificate of the cluster CA naming a current member (a
//! caller without one, with one from another CA, with a removed member's, or with one naming
//! no member is refused); the API serves HTTPS only, with a certificate clients verify against
//! the CA; a node refuses to start with neither TLS nor the development flag; and plain TCP
//! works behind that flag alone.

mod common;
use common::*;
use flotilla_node::raft::network::Channels;
use flotilla_node::raft::pb::Blob;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// A Raft client that trusts `trusted` and presents `identity` (a certificate chain and its
/// key), or no certificate at all.
fn raft_channels(trusted: &[CertificateDer<'static>], identity: Option<flotilla_pki::Issued>) -> Channels {
    let roots = flotilla_pki::ClientTls::new(trusted.to_vec()).root_store();
    assert_eq!(roots.len(), trusted.len(), "every certificate is a trust anchor");
    let builder = rustls::ClientConfig::builder_with_provider(flotilla_pki::client::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(issued) => builder.with_client_auth_cert(issued.chain, issued.key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Channels::new(2_000, None, Some(Arc::new(config)))
}

/// A certificate for node `id` from `ca`.
fn node_cert(ca: &flotilla_pki::ClusterCa, id: u64) -> flotilla_pki::Issued {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let request = flotilla_pki::NodeCertRequest {
        node_id: id,
        api_names: Vec::new(),
        lifetime_ms: 3_600_000,
    };
    ca.issue(&request, now_ms).unwrap()
}

/// What node `target`'s Raft port answers an unaddressed vote from `channels`: `Ok(code)` of
/// the refusal, which for a caller the certificate check admits is the addressing check's
/// FailedPrecondition.
async fn vote_answer(c: &Cluster, channels: &Channels, target: u64) -> tonic::Code {
    let mut client = channels.client(target, &c.node(target).raft_addr).unwrap();
    let vote = flotilla_raft_store::encode(&()).unwrap();
    match client.vote(tonic::Request::new(Blob { data: vote })).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raft_port_hears_current_members_of_the_cluster_ca_alone() {
    let c = Cluster::start(3, &[]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let ca = &test_ca().ca;
    let trusted = ca.trusted().to_vec();
    let target = if leader == 1 { 2 } else { 1 };
    let removed = (1..=3).find(|id| *id != leader && *id != target).unwrap();

    // A member's certificate gets past TLS to the next check (this vote is unaddressed).
    let member = raft_channels(&trusted, Some(node_cert(ca, removed)));
    assert_eq!(vote_answer(&c, &member, target).await, tonic::Code::FailedPrecondition);

    // No certificate, or one of another CA: the handshake fails; nothing is answered.
    let anonymous = raft_channels(&trusted, None);
    let code = vote_answer(&c, &anonymous, target).await;
    assert!(
        !matches!(code, tonic::Code::Ok | tonic::Code::FailedPrecondition),
        "a caller without a certificate got {code:?}"
    );
    let (other_cert, other_key) = new_ca("another cluster");
    let other = flotilla_pki::ClusterCa::from_pem(&other_cert, &other_key, "another CA").unwrap();
    let stranger = raft_channels(&trusted, Some(node_cert(&other, removed)));
    let code = vote_answer(&c, &stranger, target).await;
    assert!(
        !matches!(code, tonic::Code::Ok | tonic::Code::FailedPrecondition),
        "a certificate of another CA got {code:?}"
    );

    // A certificate of the CA naming a node that is no member.
    let outsider = raft_channels(&trusted, Some(node_cert(ca, 9)));
    assert_eq!(vote_answer(&c, &outsider, target).await, tonic::Code::PermissionDenied);

    // A removed member's certificate, still valid, is refused once the removal is applied.
    let (s, body) = c.delete(leader, &format!("/v1/cluster/members/{removed}")).await;
    assert_eq!(s, 200, "remove {removed}: {body}");
    c.wait_get(target, "/v1/cluster", "the removal applied", |_, v| {
        v["members"].as_array().is_some_and(|m| m.len() == 2)
    })
    .await;
    let fresh = raft_channels(&trusted, Some(node_cert(ca, removed)));
    assert_eq!(vote_answer(&c, &fresh, target).await, tonic::Code::PermissionDenied);

    // The two members left keep committing over mutual TLS.
    c.register_pool(leader).await;
    let (s, body) = c.submit(leader, "after-the-removal", None).await;
    assert_eq!(s, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_that_clients_verify_against_the_ca() {
    let c = Cluster::start(1, &[]).await;
    c.wait_leader_among(&[1]).await;
    let (s, _) = c.get(1, "/v1/pools").await;
    assert_eq!(s, 200, "HTTPS with the test CA");
    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::builder()
        .tls_backend_preconfigured(flotilla_pki::ClientTls::new(Vec::new()).rustls_config())
        .build()
        .unwrap();
    let url = format!("http://{}/v1/health/live", c.node(1).api_addr);
    assert!(plain.get(&url).send().await.is_err(), "plain HTTP was answered");
    // A client trusting another CA refuses the node's certificate.
    let (other_cert, _) = new_ca("another cluster");
    let other = flotilla_pki::parse_certificates(&other_cert, "another CA").unwrap();
    let wary = reqwest::Client::builder()
        .tls_backend_preconfigured(flotilla_pki::ClientTls::new(other).rustls_config())
        .build()
        .unwrap();
    let e = wary.get(c.node(1).url("/v1/health/live")).send().await.unwrap_err();
    assert!(flotilla_cli::is_untrusted_certificate(&e), "{e:?}");
}

#[test]
fn a_node_without_tls_or_the_development_flag_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla-node"))
        .args(["--id", "1", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-ca-file") && stderr.contains("--insecure-plaintext"),
        "{stderr}"
    );
    // A CA key every user may read is refused too.
    let (cert, key) = new_ca("loose");
    std::fs::write(dir.path().join("ca.crt"), cert).unwrap();
    std::fs::write(dir.path().join("ca.key"), key).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path().join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla-node"))
        .args(["--id", "1", "--raft-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--api-addr", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-ca-file")
        .arg(dir.path().join("ca.crt"))
        .arg("--tls-ca-key-file")
        .arg(dir.path().join("ca.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_works_behind_the_development_flag_and_says_so() {
    let c = Cluster::start(3, &["--insecure-plaintext"]).await;
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    assert!(c.node(leader).url("/").starts_with("http://"));
    c.register_pool(leader).await;
    let (s, body) = c.submit(leader, "in-the-clear", None).await;
    assert_eq!(s, 201, "{body}");
    let follower = if leader == 1 { 2 } else { 1 };
    let (s, body) = c.submit(follower, "forwarded-in-the-clear", None).await;
    assert_eq!(s, 201, "a follower forwards over plain TCP: {body}");
    assert!(c.logs().contains("--insecure-plaintext"), "the flag is not logged");
}

/// Rotating the cluster CA without downtime, one node at a time: trust the new CA beside the
/// old, then issue from the new, then drop the old. The cluster commits between every restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_ca_rotates_node_by_node_without_downtime() {
    use std::os::unix::fs::PermissionsExt;
    let old = test_ca();
    let old_cert = std::fs::read_to_string(&old.ca_file).unwrap();
    let (new_cert, new_key) = new_ca("rotated");
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.to_string_lossy().into_owned()
    };
    let both = write("both.crt", &format!("{old_cert}{new_cert}"));
    let only_new = write("new.crt", &new_cert);
    let new_key = write("new.key", &new_key);
    let old_key = old.ca_key_file.to_string_lossy().into_owned();

    let mut c = Cluster::start(3, &[]).await;
    let mut trusted = old.ca.trusted().to_vec();
    trusted.extend(flotilla_pki::parse_certificates(&new_cert, "the new CA").unwrap());
    c.trust(trusted);
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    c.register_pool(leader).await;
    let phases = [
        ("trust both, issue from the old", both.clone(), old_key),
        ("trust both, issue from the new", both, new_key.clone()),
        ("trust the new alone", only_new, new_key),
    ];
    let mut writes = 0;
    for (phase, certs, key) in phases {
        for id in 1..=3u64 {
            let node = c.node_mut(id);
            let mut args: Vec<String> = Vec::new();
            let mut skip = 0;
            for a in &node.extra_args {
                if skip > 0 {
                    skip -= 1;
                } else if a == "--tls-ca-file" || a == "--tls-ca-key-file" {
                    skip = 1;
                } else {
                    args.push(a.clone());
                }
            }
            args.extend([
                "--tls-ca-file".into(),
                certs.clone(),
                "--tls-ca-key-file".into(),
                key.clone(),
            ]);
            node.extra_args = args;
            assert!(node.terminate(), "node {id} stops cleanly ({phase})");
            node.spawn();
            c.wait_http(id).await;
            let leader = c.wait_leader_among(&[1, 2, 3]).await;
            writes += 1;
            let (s, body) = c.submit(leader, &format!("rotation-{writes}"), None).await;
            assert_eq!(s, 201, "{phase}, node {id} restarted: {body}");
            c.wait_get(id, "/v1/health/ready", "the restarted node to be ready", |s, _| {
                s == 200
            })
            .await;
        }
    }
    // Every node now presents a certificate of the new CA alone: a client trusting only the
    // old one refuses it.
    let old_only = reqwest::Client::builder()
        .tls_backend_preconfigured(flotilla_pki::ClientTls::new(old.ca.trusted().to_vec()).rustls_config())
        .build()
        .unwrap();
    let e = old_only.get(c.node(1).url("/v1/health/live")).send().await.unwrap_err();
    assert!(flotilla_cli::is_untrusted_certificate(&e), "{e:?}");
}
