//! End to end through the binaries: `flotilla dev` starts a 3-node cluster, the other commands
//! talk to it, Ctrl-C (SIGINT) stops it.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn flotilla() -> &'static str {
    env!("CARGO_BIN_EXE_flotilla")
}

/// `flotilla-node` is built into the same directory by `cargo test --workspace`.
fn node_binary() -> std::path::PathBuf {
    let path = std::path::Path::new(flotilla()).with_file_name("flotilla-node");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// What a command is run with: a token (none when empty) and the cluster CA to trust.
#[derive(Clone, Default)]
struct Creds {
    token: String,
    ca_file: Option<std::path::PathBuf>,
}

impl Creds {
    /// The admin token and the CA `flotilla dev` keeps in its data directory, once written.
    fn of_dev(dir: &std::path::Path) -> Creds {
        let file = dir.join("admin-token");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file)
                && text.ends_with('\n')
            {
                return Creds {
                    token: text.trim().to_string(),
                    ca_file: Some(dir.join("tls").join("ca.crt")),
                };
            }
            assert!(Instant::now() < deadline, "flotilla dev wrote no {}", file.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The same CA, no token.
    fn anonymous(&self) -> Creds {
        Creds {
            token: String::new(),
            ca_file: self.ca_file.clone(),
        }
    }
}

/// `flotilla --server SERVER ARGS...` with the token as FLOTILLA_TOKEN and the CA as
/// FLOTILLA_CA_FILE.
fn run(creds: &Creds, server: &str, args: &[&str]) -> Output {
    let mut command = Command::new(flotilla());
    // No saved login: the user's own (~/.config/flotilla) must not leak into the test.
    command
        .args(["--server", server])
        .args(args)
        .env_remove("FLOTILLA_TOKEN")
        .env_remove("FLOTILLA_CA_FILE")
        .env("FLOTILLA_CONFIG", "/nonexistent/flotilla-test-config.json");
    if !creds.token.is_empty() {
        command.env("FLOTILLA_TOKEN", &creds.token);
    }
    if let Some(ca) = &creds.ca_file {
        command.env("FLOTILLA_CA_FILE", ca);
    }
    command.output().expect("run flotilla")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A running `flotilla dev`, interrupted (Ctrl-C) when dropped: a failing assertion must not
/// leave it and its nodes running.
struct Dev(Option<std::process::Child>);

impl Dev {
    /// Sends SIGINT and waits for the exit.
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        child.wait().ok()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.interrupt();
    }
}

#[test]
fn dev_cluster_serves_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    // Below the ephemeral range (32768+), apart from the other test's ports.
    let base = 12_000 + (std::process::id() % 3_000) as u16;
    let mut dev = Dev(Some(
        Command::new(flotilla())
            .args(["dev", "--base-port", &base.to_string(), "--data-dir"])
            .arg(dir.path())
            .arg("--node-binary")
            .arg(node_binary())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    ));
    let servers: Vec<String> = (1..=3).map(|n| format!("127.0.0.1:{}", base + 1000 + n)).collect();
    let all = servers.join(",");
    let token = Creds::of_dev(dir.path());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("admin-token")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the admin token file is the user's alone");

    // Wait for `flotilla dev` to report the cluster ready (it registers the pool last).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let o = run(&token, &all, &["pool", "list"]);
        if o.status.success() && stdout(&o).contains("local") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dev cluster never came up: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let status = run(&token, &all, &["cluster", "status"]);
    assert!(status.status.success());
    let text = stdout(&status);
    assert_eq!(
        text.matches("127.0.0.1:").count(),
        6,
        "three members with two addresses each:\n{text}"
    );
    assert!(text.contains("leader"), "{text}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.json");
    // Submitted to a list whose first address is dead: the client moves on.
    let dead_first = format!("127.0.0.1:1,{all}");
    let o = run(
        &token,
        &dead_first,
        &["pipeline", "submit", "-f", example, "--idempotency-key", "readme"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout(&o).contains("greet") && stdout(&o).contains("count"),
        "{}",
        stdout(&o)
    );
    let again = run(
        &token,
        &all,
        &["pipeline", "submit", "-f", example, "--idempotency-key", "readme"],
    );
    assert!(stdout(&again).contains("already submitted"), "{}", stdout(&again));

    let list = run(
        &token,
        &servers[2],
        &["-o", "json", "pipeline", "list", "--linearizable"],
    );
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json output");
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["items"][0]["name"], "hello");

    // Events: what the node holds, filtered, as a table and as JSON lines; the first address
    // of the list is dead and the command moves on. The pipeline finishes meanwhile.
    let deadline = Instant::now() + Duration::from_secs(90);
    let finished = loop {
        let o = run(
            &token,
            &dead_first,
            &[
                "-o",
                "json",
                "events",
                "--pipeline",
                "1",
                "--type",
                "JobCompleted,PipelineCompleted",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let lines: Vec<serde_json::Value> = stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
            .collect();
        if lines.iter().any(|e| e["type"] == "PipelineCompleted") {
            break lines;
        }
        assert!(Instant::now() < deadline, "the pipeline never completed: {lines:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        finished.iter().filter(|e| e["type"] == "JobCompleted").count(),
        2,
        "{finished:?}"
    );
    let table = run(&token, &servers[1], &["events", "--job", "1"]);
    assert!(table.status.success());
    assert!(
        stdout(&table).starts_with("ID") && stdout(&table).contains("JobRequested"),
        "{}",
        stdout(&table)
    );
    let bad = run(&token, &all, &["events", "--type", "Nope"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("field type"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Without the token the cluster refuses, and says what it needs.
    let anonymous = run(&token.anonymous(), &all, &["pool", "list"]);
    assert!(!anonymous.status.success());
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("needs a token"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    // A leader-only command sent to a follower follows the redirect, token and all.
    let o = run(&token, &all, &["-o", "json", "cluster", "status"]);
    let view: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json status");
    let leader = view["leader"].as_u64().expect("a leader");
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let via = &servers[(followers[0] - 1) as usize];
    let moved = run(&token, via, &["cluster", "transfer-leader", &followers[1].to_string()]);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    // A saved login: checked, kept with mode 0600, used when no flag or variable says
    // otherwise, and forgotten by logout.
    let config = dir.path().join("login").join("config.json");
    let saved = |args: &[&str]| {
        Command::new(flotilla())
            .args(args)
            .env_remove("FLOTILLA_TOKEN")
            .env_remove("FLOTILLA_ADDR")
            .env_remove("FLOTILLA_CA_FILE")
            .env("FLOTILLA_CONFIG", &config)
            .output()
            .unwrap()
    };
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, format!("flt_{}\n", "0".repeat(64))).unwrap();
    let ca = token.ca_file.clone().unwrap();
    let ca = ca.to_str().unwrap();
    let refused = saved(&[
        "--server",
        &all,
        "--ca-file",
        ca,
        "login",
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    assert!(
        !refused.status.success() && !config.exists(),
        "a token the cluster refuses is not saved"
    );
    let token_file = dir.path().join("admin-token");
    // Without the CA the client trusts no node, and says which flag gives it.
    let untrusted = saved(&["--server", &all, "login", "--token-file", token_file.to_str().unwrap()]);
    assert!(!untrusted.status.success() && !config.exists());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("--ca-file"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    let logged = saved(&[
        "--server",
        &all,
        "--ca-file",
        ca,
        "login",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(logged.status.success(), "{}", String::from_utf8_lossy(&logged.stderr));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let pools = saved(&["pool", "list"]);
    assert!(
        pools.status.success() && stdout(&pools).contains("local"),
        "{}",
        String::from_utf8_lossy(&pools.stderr)
    );
    assert!(saved(&["logout"]).status.success());
    let after = saved(&["pool", "list"]);
    assert!(!after.status.success(), "the token is forgotten, the servers kept: 401");
    assert!(
        String::from_utf8_lossy(&after.stderr).contains("needs a token"),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );

    // `token generate` makes a secret here and sends it nowhere.
    let generated = run(&Creds::default(), "127.0.0.1:1", &["token", "generate"]);
    assert!(generated.status.success());
    let secret = stdout(&generated).trim().to_string();
    assert!(secret.len() == 68 && secret.starts_with("flt_"), "{secret}");

    // Errors: a clear message and a non-zero exit.
    let missing = run(&token, &all, &["pipeline", "get", "999"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    let bad_file = run(&token, &all, &["pipeline", "submit", "-f", "/nonexistent.json"]);
    assert!(!bad_file.status.success());
    let nobody = run(&token, "127.0.0.1:1", &["cluster", "status"]);
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no server could be reached"));

    // Quotas, limits and pool draining, through whichever node is asked.
    let ok = |o: Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    };
    ok(run(
        &token,
        &servers[2],
        &[
            "tenant",
            "set-quota",
            "web",
            "--cpu-millis",
            "1000",
            "--memory-mib",
            "512",
            "--max-running-jobs",
            "2",
            "--max-priority",
            "-5",
        ],
    ));
    let tenants = ok(run(&token, &all, &["tenant", "list"]));
    assert!(
        tenants.contains("web") && tenants.contains("0/2") && tenants.contains("-5"),
        "{tenants}"
    );
    ok(run(&token, &servers[1], &["tenant", "clear-quota", "web"]));
    let limits = ok(run(&token, &all, &["limits", "show"]));
    assert!(limits.contains("max_jobs_per_pipeline"), "{limits}");
    assert!(ok(run(&token, &servers[2], &["limits", "set", "max_retries=5"])).contains("limits changed"));
    let unknown = run(&token, &all, &["limits", "set", "max_colour=1"]);
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("no limit is called"));
    ok(run(&token, &servers[1], &["pool", "drain", "local"]));
    // `pool list` reads the node's applied state: the change reaches it a moment later.
    let pools_show = |word: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = stdout(&run(&token, &all, &["pool", "list"]));
            if listed.contains(word) {
                return;
            }
            assert!(Instant::now() < deadline, "pool list never showed {word}: {listed}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    pools_show("draining");
    // A job submitted to the drained pool waits, and `job why` says why.
    let submitted = ok(run(&token, &all, &["-o", "json", "pipeline", "submit", "-f", example]));
    let submitted: serde_json::Value = serde_json::from_str(&submitted).expect("json output");
    let waiting = submitted["jobs"][0]["id"].as_u64().expect("a job id").to_string();
    let why = ok(run(&token, &servers[1], &["job", "why", &waiting]));
    assert!(
        why.contains("no pool of 1 fits it now") && why.contains("pool local is draining"),
        "{why}"
    );
    let missing = run(&token, &all, &["job", "why", "99999"]);
    assert!(!missing.status.success(), "job why of an unknown job succeeded");
    ok(run(&token, &servers[2], &["pool", "drain", "local", "--undo"]));
    pools_show("active");

    // A manual job waits for `job approve`; a job whose condition is false is skipped, and
    // `job get` says why.
    let gated = dir.path().join("gated.yaml");
    let resources = "    resources: { cpu_millis: 100, memory_mib: 64 }\n";
    std::fs::write(
        &gated,
        format!(
            "name: gated\njobs:\n  - name: ship\n    manual: true\n    script: [echo shipped]\n{resources}  - name: docs\n    if: $FLOTILLA_BRANCH == \"main\"\n    script: [echo docs]\n{resources}"
        ),
    )
    .unwrap();
    let gated = gated.to_str().unwrap();
    let submitted = ok(run(&token, &all, &["-o", "json", "pipeline", "submit", "-f", gated]));
    let submitted: serde_json::Value = serde_json::from_str(&submitted).expect("json output");
    let id = |i: usize| submitted["jobs"][i]["id"].as_u64().expect("a job id").to_string();
    let (ship, docs) = (id(0), id(1));
    let approved = ok(run(&token, &all, &["job", "approve", &ship]));
    assert!(approved.contains(&format!("job {ship} approved by ")), "{approved}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = stdout(&run(&token, &all, &["job", "get", &docs]));
        if shown.contains("skipped: if: $FLOTILLA_BRANCH == \"main\" is false") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job get never said why it was skipped: {shown}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let not_manual = run(&token, &all, &["job", "approve", &docs]);
    assert!(!not_manual.status.success(), "a skipped job was approved");

    // Ctrl-C stops the dev cluster and its nodes.
    let status = dev.interrupt().expect("flotilla dev was running");
    assert!(status.success(), "flotilla dev exited with {status}");
    assert!(
        !run(&token, &all, &["cluster", "status"]).status.success(),
        "nodes still answer after dev stopped"
    );
}

#[test]
fn dev_run_executes_the_example_and_prints_its_logs() {
    let dir = tempfile::tempdir().unwrap();
    let base = 17_000 + (std::process::id() % 3_000) as u16;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello.yaml");
    let out = Command::new(flotilla())
        .args(["dev", "--base-port", &base.to_string(), "--run", example, "--data-dir"])
        .arg(dir.path())
        .arg("--node-binary")
        .arg(node_binary())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("pipeline 1 SUCCEEDED"), "{text}");
    assert!(
        text.contains("--- greet (job 1) ---\n$ echo hello from flotilla\nhello from flotilla\n"),
        "{text}"
    );
    assert!(text.contains("$ seq 1 3\n1\n2\n3\n"), "{text}");
    // The cluster was stopped afterwards.
    let servers = format!("127.0.0.1:{}", base + 1001);
    assert!(
        !run(&Creds::of_dev(dir.path()), &servers, &["cluster", "status"])
            .status
            .success()
    );
}
