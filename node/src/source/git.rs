//! The `git` program, run for one repository with nothing of the node's environment or
//! configuration: a search path, no prompts, no system or user configuration, only the
//! network transports a repository URL may name, a deadline, and bounded output. A fetch
//! token travels in the child's environment as an HTTP header, never on its command line
//! (which other users of the host can read) or in a URL.

use flotilla_providers::SecretValue;
use flotilla_state_machine::Forge;
use flotilla_state_machine::source::is_object_name;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Most bytes of a failing command's error output kept for its message.
const MAX_STDERR_BYTES: usize = 2048;

/// Why a git command failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git could not be started: {0} (install git on every node)")]
    Spawn(std::io::Error),
    #[error("git {what} took longer than {timeout_ms} ms")]
    Timeout { what: &'static str, timeout_ms: u64 },
    #[error("git {what} failed: {stderr}")]
    Failed { what: &'static str, stderr: String },
    #[error("{what} is larger than the limit of {max} bytes")]
    TooLarge { what: String, max: u64 },
    #[error("commit {0} is not in the repository")]
    NoSuchCommit(String),
    #[error("reading a git command's output: {0}")]
    Io(#[from] std::io::Error),
}

impl GitError {
    /// Whether trying again later may succeed (the server was down, slow, or busy).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GitError::Spawn(_) | GitError::Timeout { .. } | GitError::Failed { .. } | GitError::Io(_)
        )
    }
}

/// How to reach one repository.
#[derive(Clone)]
pub struct Remote {
    pub url: String,
    pub forge: Forge,
    /// A token sent as the password of HTTP basic authentication.
    pub token: Option<SecretValue>,
}

impl Remote {
    /// The user name each forge expects beside a token.
    fn user(&self) -> &'static str {
        match self.forge {
            Forge::Github => "x-access-token",
            Forge::Gitlab => "oauth2",
            Forge::Gitea | Forge::Git => "flotilla",
        }
    }
}

/// One bare repository on this node's disk, fetched into on demand.
pub struct GitDir {
    pub dir: PathBuf,
    pub timeout_ms: u64,
}

impl GitDir {
    fn command(&self, remote: Option<&Remote>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("GIT_ALLOW_PROTOCOL", "https:http:git")
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .arg("--git-dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = remote.and_then(|r| r.token.as_ref().map(|t| (r.user(), t))) {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", token.0, token.1.expose()));
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
        }
        cmd
    }

    /// Runs `args`, keeping at most `max_stdout` bytes of its output (more fails the command
    /// as `TooLarge`, named `what`). Returns the exit status and the output.
    async fn run(
        &self,
        what: &'static str,
        remote: Option<&Remote>,
        args: &[&str],
        max_stdout: u64,
    ) -> Result<(std::process::ExitStatus, Vec<u8>, String), GitError> {
        let mut child = self.command(remote).args(args).spawn().map_err(GitError::Spawn)?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = (&mut stdout).take(max_stdout + 1);
            let mut stderr = (&mut stderr).take(MAX_STDERR_BYTES as u64);
            let (o, e) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            o?;
            e?;
            if out.len() as u64 > max_stdout {
                return Err(GitError::TooLarge {
                    what: what.to_string(),
                    max: max_stdout,
                });
            }
            let status = child.wait().await?;
            Ok((status, out, String::from_utf8_lossy(&err).trim().to_string()))
        };
        let timeout = Duration::from_millis(self.timeout_ms);
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(GitError::Timeout {
                what,
                timeout_ms: self.timeout_ms,
            }),
        }
    }

    async fn ok(&self, what: &'static str, remote: Option<&Remote>, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let (status, out, stderr) = self.run(what, remote, args, 1 << 20).await?;
        if status.success() {
            Ok(out)
        } else {
            Err(GitError::Failed { what, stderr })
        }
    }

    /// Makes the bare repository if it is not there yet.
    pub async fn init(&self) -> Result<(), GitError> {
        if self.dir.join("HEAD").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let mut cmd = self.command(None);
        // `init` takes its directory as an argument; `--git-dir` names the same one.
        let out = tokio::time::timeout(
            Duration::from_millis(self.timeout_ms),
            cmd.args(["init", "--bare", "--quiet"]).arg(&self.dir).output(),
        )
        .await
        .map_err(|_| GitError::Timeout {
            what: "init",
            timeout_ms: self.timeout_ms,
        })?
        .map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::Failed {
                what: "init",
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// Whether `commit` is here.
    pub async fn has(&self, commit: &str) -> Result<bool, GitError> {
        let spec = format!("{commit}^{{commit}}");
        let (status, _, _) = self.run("cat-file", None, &["cat-file", "-e", &spec], 0).await?;
        Ok(status.success())
    }

    /// Fetches `commit` (shallow) from `remote`: by its id, and if the server does not give
    /// out commits by id, through `reference`, which must then lead to it.
    pub async fn fetch(&self, remote: &Remote, commit: &str, reference: Option<&str>) -> Result<(), GitError> {
        self.init().await?;
        if self.has(commit).await? {
            return Ok(());
        }
        let by_id = self
            .ok(
                "fetch",
                Some(remote),
                &[
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--depth",
                    "1",
                    "--",
                    &remote.url,
                    commit,
                ],
            )
            .await;
        if by_id.is_ok() && self.has(commit).await? {
            return Ok(());
        }
        let Some(reference) = reference else {
            return by_id.and(Err(GitError::NoSuchCommit(commit.to_string())));
        };
        let refspec = format!("+{reference}:refs/flotilla/fetched");
        self.ok(
            "fetch",
            Some(remote),
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--depth",
                "50",
                "--",
                &remote.url,
                &refspec,
            ],
        )
        .await?;
        if self.has(commit).await? {
            Ok(())
        } else {
            Err(GitError::NoSuchCommit(commit.to_string()))
        }
    }

    /// The commit `reference` of `remote` points at, if it has that ref.
    pub async fn ls_remote(&self, remote: &Remote, reference: &str) -> Result<Option<String>, GitError> {
        self.init().await?;
        let out = self
            .ok("ls-remote", Some(remote), &["ls-remote", "--", &remote.url, reference])
            .await?;
        Ok(String::from_utf8_lossy(&out).lines().find_map(|line| {
            let (commit, name) = line.split_once('\t')?;
            (name == reference && is_object_name(commit)).then(|| commit.to_string())
        }))
    }

    /// The file at `path` in `commit`, if it has one, up to `max_bytes`.
    pub async fn read_file(&self, commit: &str, path: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, GitError> {
        let object = format!("{commit}:{path}");
        let (status, _, _) = self.run("cat-file", None, &["cat-file", "-e", &object], 0).await?;
        if !status.success() {
            return Ok(None);
        }
        let (status, out, stderr) = self
            .run("cat-file", None, &["cat-file", "blob", &object], max_bytes)
            .await
            .map_err(|e| match e {
                GitError::TooLarge { max, .. } => GitError::TooLarge {
                    what: format!("{path} at {commit}"),
                    max,
                },
                other => other,
            })?;
        if !status.success() {
            return Err(GitError::Failed {
                what: "cat-file",
                stderr,
            });
        }
        Ok(Some(out))
    }

    /// The object id of `path` at `commit` (a digest of its contents), `None` if it has no
    /// such file. Nothing is read but the id.
    pub async fn object_id(&self, commit: &str, path: &str) -> Result<Option<String>, GitError> {
        let object = format!("{commit}:{path}");
        let (status, out, _) = self
            .run("rev-parse", None, &["rev-parse", "--verify", "--quiet", &object], 4096)
            .await?;
        Ok(status
            .success()
            .then(|| String::from_utf8_lossy(&out).trim().to_string())
            .filter(|id| !id.is_empty()))
    }

    /// Writes the files of `commit` as a tar archive to `dest`, refusing one larger than
    /// `max_bytes`. Written beside `dest` and renamed into place: a reader never sees half.
    pub async fn archive(&self, commit: &str, dest: &Path, max_bytes: u64) -> Result<(), GitError> {
        let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
        let result = async {
            let mut child = self
                .command(None)
                .args(["archive", "--format=tar", commit])
                .spawn()
                .map_err(GitError::Spawn)?;
            let mut stdout = child.stdout.take().expect("piped");
            let mut stderr = child.stderr.take().expect("piped");
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut limited = (&mut stdout).take(max_bytes + 1);
            let (copied, err) = tokio::join!(tokio::io::copy(&mut limited, &mut file), async {
                let mut err = Vec::new();
                (&mut stderr)
                    .take(MAX_STDERR_BYTES as u64)
                    .read_to_end(&mut err)
                    .await
                    .map(|_| err)
            });
            if copied? > max_bytes {
                return Err(GitError::TooLarge {
                    what: format!("the checkout of {commit}"),
                    max: max_bytes,
                });
            }
            let status = child.wait().await?;
            if !status.success() {
                return Err(GitError::Failed {
                    what: "archive",
                    stderr: String::from_utf8_lossy(&err?).trim().to_string(),
                });
            }
            file.sync_all().await?;
            tokio::fs::rename(&tmp, dest).await?;
            Ok(())
        };
        let outcome = match tokio::time::timeout(Duration::from_millis(self.timeout_ms), result).await {
            Ok(r) => r,
            Err(_) => Err(GitError::Timeout {
                what: "archive",
                timeout_ms: self.timeout_ms,
            }),
        };
        if outcome.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        outcome
    }

    /// How many shallow fetches this repository holds: past a bound, it is made anew.
    pub fn shallow_roots(&self) -> usize {
        std::fs::read_to_string(self.dir.join("shallow")).map_or(0, |s| s.lines().count())
    }
}
