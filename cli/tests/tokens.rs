//! `flotilla cluster init`, `flotilla token ...` and `--token` against one real node started
//! with `--auth tokens`.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn flotilla() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla")
}

/// Stops the node when the test ends, passed or not.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The cluster CA the test's node is given and the CLI trusts (`flotilla tls ca-create`).
static CA_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

fn run(server: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(flotilla());
    // No saved login (`flotilla login`) of the user's may stand in for a missing token.
    cmd.args(["--server", server])
        .args(args)
        .env_remove("FLOTILLA_TOKEN")
        .env("FLOTILLA_CONFIG", "/nonexistent/flotilla-test-config.json");
    if let Some(dir) = CA_DIR.get() {
        cmd.env("FLOTILLA_CA_FILE", dir.join("ca.crt"));
    }
    if let Some(t) = token {
        cmd.env("FLOTILLA_TOKEN", t);
    }
    cmd.output().expect("run flotilla")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `flt_` secret a command printed.
fn secret(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("flt_"))
        .unwrap_or_else(|| panic!("no secret printed: {}", text(o)))
        .to_string()
}

#[test]
fn init_hands_out_the_admin_token_and_roles_bind_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (raft, api) = (free_port(), free_port());
    let node_binary = std::path::Path::new(flotilla()).with_file_name("flotilla-node");
    assert!(
        node_binary.exists(),
        "{} is missing: run cargo test --workspace",
        node_binary.display()
    );
    let ca_dir = dir.path().join("tls");
    let made = run(
        "127.0.0.1:1",
        None,
        &["tls", "ca-create", "--out", ca_dir.to_str().unwrap()],
    );
    assert!(made.status.success(), "{}", text(&made));
    CA_DIR.set(ca_dir.clone()).unwrap();
    let _node = Node(
        Command::new(&node_binary)
            .args(["--id", "1", "--auth", "tokens"])
            .arg("--tls-ca-file")
            .arg(ca_dir.join("ca.crt"))
            .arg("--tls-ca-key-file")
            .arg(ca_dir.join("ca.key"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--raft-addr", &format!("127.0.0.1:{raft}")])
            .args(["--api-addr", &format!("127.0.0.1:{api}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server = format!("127.0.0.1:{api}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run(&server, None, &["cluster", "status"]).status.success() {
        assert!(Instant::now() < deadline, "the node never answered");
        std::thread::sleep(Duration::from_millis(100));
    }

    let init = run(&server, None, &["cluster", "init"]);
    assert!(init.status.success(), "{}", text(&init));
    let admin = secret(&init);

    let refused = run(&server, None, &["pool", "list"]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("needs a token"), "{}", text(&refused));
    let listed = run(&server, Some(&admin), &["pool", "list"]);
    assert!(listed.status.success(), "{}", text(&listed));

    let created = run(
        &server,
        Some(&admin),
        &["token", "create", "--name", "dash", "--role", "viewer"],
    );
    assert!(created.status.success(), "{}", text(&created));
    let viewer = secret(&created);
    let forbidden = run(
        &server,
        Some(&viewer),
        &[
            "pool",
            "register",
            "--name",
            "p",
            "--cpu-millis",
            "1000",
            "--memory-mib",
            "64",
            "--max-workers",
            "1",
        ],
    );
    assert!(!forbidden.status.success());
    assert!(text(&forbidden).contains("403"), "{}", text(&forbidden));

    let tokens = run(&server, Some(&admin), &["token", "list"]);
    let shown = text(&tokens);
    assert!(
        tokens.status.success() && shown.contains("dash") && shown.contains("viewer"),
        "{shown}"
    );
    assert!(
        !shown.contains(&viewer[4..]) && !shown.contains(&admin[4..]),
        "a secret was listed: {shown}"
    );

    let id = shown
        .lines()
        .find(|l| l.contains("dash"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the token's id")
        .to_string();
    let revoked = run(&server, Some(&admin), &["token", "revoke", &id]);
    assert!(revoked.status.success(), "{}", text(&revoked));
    let gone = run(&server, Some(&viewer), &["pool", "list"]);
    assert!(
        !gone.status.success() && text(&gone).contains("revoked"),
        "{}",
        text(&gone)
    );

    let again = run(&server, None, &["token", "bootstrap"]);
    assert!(
        !again.status.success() && text(&again).contains("409"),
        "{}",
        text(&again)
    );

    // The retention commands: set, shown, refused with the option named, cleared.
    let none = run(&server, Some(&admin), &["retention", "show"]);
    assert!(
        none.status.success() && text(&none).contains("no retention policy"),
        "{}",
        text(&none)
    );
    let set = run(
        &server,
        Some(&admin),
        &["retention", "set", "--max-age", "30d", "--output-max-age", "7d"],
    );
    assert!(set.status.success(), "{}", text(&set));
    let own = run(
        &server,
        Some(&admin),
        &["retention", "set", "--tenant", "web", "--max-pipelines", "50"],
    );
    assert!(own.status.success(), "{}", text(&own));
    let shown = run(&server, Some(&admin), &["retention", "show"]);
    let table = text(&shown);
    assert!(
        shown.status.success() && table.contains("(default)") && table.contains("30d") && table.contains("7d"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("web") && l.contains("50")),
        "{table}"
    );
    let empty = run(&server, Some(&admin), &["retention", "set"]);
    assert!(!empty.status.success(), "a policy with no bound: {}", text(&empty));
    let bad = run(&server, Some(&admin), &["retention", "set", "--max-age", "30 parsecs"]);
    assert!(
        !bad.status.success() && text(&bad).contains("max_age_ms"),
        "{}",
        text(&bad)
    );
    let cleared = run(&server, Some(&admin), &["retention", "clear", "--tenant", "web"]);
    assert!(cleared.status.success(), "{}", text(&cleared));
    let after = text(&run(&server, Some(&admin), &["retention", "show"]));
    assert!(!after.lines().any(|l| l.starts_with("web")), "{after}");
}
