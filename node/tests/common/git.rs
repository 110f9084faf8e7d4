//! A git server on loopback for the tests of pipelines from source: `git daemon` (the git
//! protocol, no authentication) or `git http-backend` behind a small HTTP server that asks
//! for a token (smart HTTP, as forges serve it); and a work tree that commits and pushes.

#![allow(dead_code)]

use super::common::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// `git daemon` serving `root` on a loopback port; stopped by its PID when dropped.
pub struct GitServer {
    child: Child,
    port: u16,
}

impl GitServer {
    pub fn start(root: &Path) -> GitServer {
        let port = free_port();
        // The daemon itself, not `git daemon`: git would run it as a child of its own, and
        // stopping git by its PID would leave the daemon running.
        let exec_path = git(root, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", root.display()),
            ])
            .arg(root)
            .spawn()
            .expect("git daemon starts (apt-get install git)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon never listened on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        GitServer { child, port }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Ada",
            "-c",
            "user.email=ada@example.test",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository `app.git` under `root`, pushed to from a work tree; returns the work tree.
pub fn repository(root: &Path) -> PathBuf {
    repository_at(root, "app.git")
}

/// A bare repository at `path` under `root`, pushed to from a work tree; returns the work tree.
pub fn repository_at(root: &Path, path: &str) -> PathBuf {
    let bare = root.join(path);
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "--bare", "--quiet"]);
    git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet"]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    work
}

/// Commits `files` (path, content; `None` deletes) and pushes to `main`; returns the commit.
pub fn commit(work: &Path, message: &str, files: &[(&str, Option<&str>)]) -> String {
    for (path, content) in files {
        let full = work.join(path);
        match content {
            Some(text) => {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, text).unwrap();
            }
            None => {
                let _ = std::fs::remove_file(&full);
            }
        }
    }
    git(work, &["add", "-A"]);
    git(work, &["commit", "--quiet", "-m", message]);
    git(work, &["push", "--quiet", "origin", "HEAD:refs/heads/main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// What a `GitHttpServer` saw: requests that carried the expected credentials, and those
/// refused (with the `Authorization` header they carried, if any).
#[derive(Debug, Default)]
pub struct HttpSeen {
    pub admitted: usize,
    pub refused: Vec<Option<String>>,
}

/// `git http-backend` (smart HTTP) serving the repositories under `root` on a loopback port,
/// behind basic authentication as forges ask for it: a request without `user:password`
/// answers 401. The backend runs as CGI, one process per request, bounded by a deadline.
pub struct GitHttpServer {
    pub url: String,
    pub seen: std::sync::Arc<std::sync::Mutex<HttpSeen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHttpServer {
    pub async fn start(root: &Path, user: &str, password: &str) -> GitHttpServer {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::{IntoResponse, Response};
        use base64::Engine;
        use std::sync::{Arc, Mutex};

        #[derive(Clone)]
        struct Backend {
            root: PathBuf,
            program: PathBuf,
            expected: String,
            seen: Arc<Mutex<HttpSeen>>,
        }

        async fn serve(
            State(b): State<Backend>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if auth.as_deref() != Some(b.expected.as_str()) {
                b.seen.lock().unwrap().refused.push(auth);
                return (
                    StatusCode::UNAUTHORIZED,
                    [("www-authenticate", "Basic realm=\"git\"")],
                    "authentication required",
                )
                    .into_response();
            }
            b.seen.lock().unwrap().admitted += 1;
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let mut child = tokio::process::Command::new(&b.program)
                .env_clear()
                .env("GIT_PROJECT_ROOT", &b.root)
                .env("GIT_HTTP_EXPORT_ALL", "1")
                .env("PATH_INFO", uri.path())
                .env("QUERY_STRING", uri.query().unwrap_or(""))
                .env("REQUEST_METHOD", method.as_str())
                .env("CONTENT_TYPE", header("content-type"))
                .env("CONTENT_LENGTH", body.len().to_string())
                .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
                .env("GIT_PROTOCOL", header("git-protocol"))
                .env("REMOTE_USER", "git")
                .env("REMOTE_ADDR", "127.0.0.1")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("git http-backend starts");
            let mut stdin = child.stdin.take().expect("piped");
            let feed = async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&body).await;
            };
            let run = async { tokio::join!(feed, child.wait_with_output()).1 };
            let Ok(Ok(out)) = tokio::time::timeout(Duration::from_secs(30), run).await else {
                return (StatusCode::GATEWAY_TIMEOUT, "git http-backend took too long").into_response();
            };
            // CGI: headers, a blank line, the body.
            let split = out.stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
            let split = split.or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
            let Some((at, gap)) = split else {
                return (StatusCode::BAD_GATEWAY, "git http-backend answered no headers").into_response();
            };
            let mut response = Response::new(axum::body::Body::from(out.stdout[at + gap..].to_vec()));
            for line in String::from_utf8_lossy(&out.stdout[..at]).lines() {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("status") {
                    let code = value.split(' ').next().and_then(|c| c.parse().ok()).unwrap_or(500);
                    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
                } else if let (Ok(n), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(name.trim().as_bytes()),
                    axum::http::HeaderValue::from_str(value),
                ) {
                    response.headers_mut().append(n, v);
                }
            }
            response
        }

        let exec_path = git(root, &["--exec-path"]);
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let seen: Arc<Mutex<HttpSeen>> = Default::default();
        let backend = Backend {
            root: root.to_path_buf(),
            program: Path::new(&exec_path).join("git-http-backend"),
            expected,
            seen: seen.clone(),
        };
        let app = axum::Router::new().fallback(serve).with_state(backend);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GitHttpServer {
            url: format!("http://{addr}"),
            seen,
            task,
        }
    }
}
