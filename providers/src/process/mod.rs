//! The `process` provider: each worker is `sh` running the job's steps in its own directory on
//! this host. Everything the leader needs is in files, so a new leader on the same host adopts
//! running workers by reading them:
//!
//! ```text
//! <root>/j<job>-a<attempt>/
//!   run.sh  step-<n>.sh  work/      the wrapper, the steps, the working directory
//!   pid                             written by the wrapper when it starts
//!   steps.log                       "start <n>" / "end <n> <code>" lines
//!   output.log                      stdout and stderr of every step
//!   exit_code                       written (atomically) when the wrapper ends
//!   cluster-id                      the id of the cluster whose leader created it
//! ```
//!
//! A worker directory is prepared under a temporary name and renamed into place, so creating
//! is idempotent: only the caller whose rename succeeds starts the process. Jobs may run as
//! another user (`run_as.rs`); their secret files are on a tmpfs (`secret_files.rs`); the source
//! of a repository pipeline is unpacked into `work/` before it starts (`checkout.rs`).

mod artifacts;
mod checkout;
mod run_as;
mod secret_files;

pub use run_as::{RunAs, RunAsError};
pub use secret_files::{SecretFiles, default_secrets_dir, on_tmpfs};

use crate::provider::{ListedWorker, Observation, ProviderError, WorkerProvider, WorkerSpec};
use crate::tombstones::Tombstones;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

/// A worker directory with no `pid` this long after creation never started: it is lost.
const START_GRACE: Duration = Duration::from_secs(30);
/// The search path of a job's shell (the node's own environment is not passed on).
const JOB_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The file in a worker's directory that names the cluster that created it.
const CLUSTER_ID_FILE: &str = "cluster-id";
/// After SIGTERM, how long to wait before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

const WRAPPER: &str = r#"#!/bin/sh
cd "$(dirname "$0")" || exit 111
echo $$ > pid.tmp && mv pid.tmp pid
code=0
n=0
while [ -f "step-$n.sh" ]; do
  echo "start $n" >> steps.log
  printf '$ %s\n' "$(head -n 1 "step-$n.sh")" >> output.log
  (cd work && exec STEP_RUNNER "../step-$n.sh") >> output.log 2>&1
  code=$?
  echo "end $n $code" >> steps.log
  [ "$code" -ne 0 ] && break
  n=$((n + 1))
done
echo "$code" > exit_code.tmp && mv exit_code.tmp exit_code
exit "$code"
"#;

#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// Directory holding one subdirectory per worker; shared by the nodes of one host.
    pub root: PathBuf,
    /// Directory of the workers' secret files, on a tmpfs (`default_secrets_dir` of `root`
    /// unless the node names one).
    pub secrets_dir: PathBuf,
    /// The user jobs run as; `None`: the node's own.
    pub run_as: Option<RunAs>,
}

impl ProcessConfig {
    /// Workers in `root`, secret files in its default directory, jobs as the node's user.
    pub fn new(root: PathBuf) -> ProcessConfig {
        ProcessConfig {
            secrets_dir: default_secrets_dir(&root),
            root,
            run_as: None,
        }
    }
}

pub struct ProcessProvider {
    config: ProcessConfig,
    secret_files: SecretFiles,
    /// The wrapper script, with the command each step runs under.
    wrapper: String,
    /// `<root>/.removed/`: names of removed workers, never started again.
    tombstones: Tombstones,
}

/// How long a removed worker's name is remembered.
const TOMBSTONE_KEEP_MS: u64 = 7 * 24 * 3600 * 1000;

impl ProcessProvider {
    pub fn new(config: ProcessConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.root)?;
        make_private(&config.root)?;
        if config.run_as.is_some() {
            // The job's user may enter (to reach its `work/`), not list or write.
            run_as::set_mode(&config.root, 0o711)?;
        }
        let tombstones = Tombstones::new(config.root.join(".removed"), TOMBSTONE_KEEP_MS)?;
        tombstones.prune();
        let runner = config
            .run_as
            .as_ref()
            .map_or_else(|| "sh -e".to_string(), RunAs::step_runner);
        Ok(ProcessProvider {
            secret_files: SecretFiles::new(config.secrets_dir.clone()),
            wrapper: WRAPPER.replace("STEP_RUNNER", &runner),
            config,
            tombstones,
        })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.config.root.join(name)
    }
}

/// Makes sure the work directory is this user's own: a real directory (not a link), owned by
/// the user this process runs as, with no access for anyone else. The default lies under the
/// shared temporary directory, where another user could create it first and read or plant
/// workers' files; such a directory is refused instead of used.
fn make_private(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let refuse = |why: String| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{}: {why}", root.display()),
        )
    };
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.file_type().is_dir() {
        return Err(refuse("is not a directory (a symbolic link is refused)".into()));
    }
    // The owner of /proc/self is the user this process runs as.
    let me = std::fs::metadata("/proc/self")?.uid();
    if meta.uid() != me {
        return Err(refuse(format!(
            "is owned by uid {}, not by this user (uid {me}); choose another --process-work-dir",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// What a worker's directory says (all but `lost`), and the wrapper's pid once it started.
fn read_observation(dir: &Path) -> (Observation, Option<u32>) {
    let mut o = Observation {
        exists: true,
        ..Observation::default()
    };
    let pid: Option<u32> = read_trimmed(&dir.join("pid")).and_then(|s| s.parse().ok());
    o.started = pid.is_some();
    for line in std::fs::read_to_string(dir.join("steps.log"))
        .unwrap_or_default()
        .lines()
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["start", n] => o.step_started = n.parse().ok(),
            ["end", n, code] => {
                if let (Ok(n), Ok(code)) = (n.parse(), code.parse()) {
                    o.steps_finished.push((n, code));
                }
            }
            _ => {}
        }
    }
    o.output_bytes = std::fs::metadata(dir.join("output.log")).map_or(0, |m| m.len());
    o.exit_code = read_trimmed(&dir.join("exit_code")).and_then(|s| s.parse().ok());
    (o, pid)
}

/// Whether `pid` is a live process running this worker's wrapper.
fn alive(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy())
}

fn signal_group(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

impl WorkerProvider for ProcessProvider {
    async fn create(&self, spec: &WorkerSpec) -> Result<String, ProviderError> {
        if spec.image.is_some() {
            return Err(ProviderError::Unsupported(
                "the process provider cannot run container images".into(),
            ));
        }
        let name = spec.name();
        let buried =
            || ProviderError::Rejected(format!("worker {name} was removed before; an attempt never runs twice"));
        if self.tombstones.is_buried(&name) {
            return Err(buried());
        }
        let dir = self.dir(&name);
        let held = |dir: &Path| -> Result<String, ProviderError> {
            spec.refuse_foreign(read_trimmed(&dir.join(CLUSTER_ID_FILE)).as_deref())?;
            Ok(name.clone())
        };
        if dir.exists() {
            return held(&dir);
        }
        let tmp = self.config.root.join(format!(".tmp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)?;
        run_as::set_mode(&tmp, 0o700)?;
        std::fs::write(tmp.join("run.sh"), &self.wrapper)?;
        for (i, step) in spec.steps.iter().enumerate() {
            let path = tmp.join(format!("step-{i}.sh"));
            std::fs::write(&path, step)?;
            if let Some(user) = &self.config.run_as {
                user.share_read(&path)?;
            }
        }
        std::fs::write(tmp.join("output.log"), b"")?;
        if let Some(id) = &spec.cluster_id {
            std::fs::write(tmp.join(CLUSTER_ID_FILE), id)?;
        }
        std::fs::create_dir(tmp.join("work"))?;
        if let Some(archive) = &spec.checkout
            && let Err(e) = checkout::unpack(archive, &tmp.join("work"), self.config.run_as.as_ref())
        {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Err(e) = checkout::unpack_inputs(&spec.restored_blobs(), &tmp.join("work"), self.config.run_as.as_ref())
        {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if let Some(user) = &self.config.run_as {
            user.give(&tmp.join("work"), 0o700)?;
            // Entered, never listed or written, by the job's user.
            run_as::set_mode(&tmp, 0o711)?;
        }
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {}
            Err(_) if dir.exists() => {
                let _ = std::fs::remove_dir_all(&tmp);
                return held(&dir); // someone else created it first
            }
            Err(e) => return Err(e.into()),
        }
        // Checked again now that the directory is in place: a removal that buried the name
        // meanwhile is seen here, or it sees (and deletes) this directory.
        if self.tombstones.is_buried(&name) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(buried());
        }
        let secret_paths = match self
            .secret_files
            .write(&name, &spec.secret_files, self.config.run_as.as_ref())
        {
            Ok(paths) => paths,
            Err(e) => {
                // Never started: the attempt fails with the reason, and no file stays behind.
                let _ = self.secret_files.remove(&name);
                return Err(e);
            }
        };
        // By its path: a program named without one, with `PATH` set for the child, makes the
        // standard library fork the node (copying the page tables of its whole heap, with its
        // memory map locked: every thread that faults waits) instead of `posix_spawn`, which
        // shares the memory until the exec. At 200 jobs a second the forks took a quarter of
        // the node's CPU and the leader fell behind (`docs/benchmarks.md`, retention soak).
        let mut cmd = tokio::process::Command::new("/bin/sh");
        // Nothing of the node's environment (its credentials, its configuration) reaches a job:
        // only a search path, a home in the worker's directory, and the job's own variables
        // and secrets (in its environment, or in files on a tmpfs: never on a disk).
        cmd.arg(dir.join("run.sh"))
            .env_clear()
            .env("PATH", JOB_PATH)
            .env("HOME", dir.join("work"))
            .envs(&spec.env)
            .envs(spec.secret_env.iter().map(|(k, v)| (k, v.expose())))
            .envs(&secret_paths)
            .env("FLOTILLA_JOB_ID", spec.job.0.to_string())
            .env("FLOTILLA_ATTEMPT", spec.attempt.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = self.secret_files.remove(&name);
                return Err(e.into());
            }
        };
        // Reap it when it ends; if this node dies first, init adopts and reaps it.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(name)
    }

    async fn observe(&self, name: &str) -> Result<Observation, ProviderError> {
        let dir = self.dir(name);
        if !dir.exists() {
            return Ok(Observation::default());
        }
        let (mut o, pid) = read_observation(&dir);
        o.lost = match (o.exit_code, pid) {
            (Some(_), _) => false,
            // The wrapper writes its exit code and then exits, so everything is read again
            // once the process is seen dead: read only before, a job that ended between the
            // reads and the liveness check (a `true` step takes a millisecond) was reported
            // lost, and retried although it had run.
            (None, Some(pid)) if !alive(pid, &dir) => {
                let (again, _) = read_observation(&dir);
                o = again;
                o.exit_code.is_none()
            }
            (None, Some(_)) => false,
            (None, None) => {
                let age = std::fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                age.is_some_and(|a| a > START_GRACE)
            }
        };
        Ok(o)
    }

    async fn read_output(&self, name: &str, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        let mut f = std::fs::File::open(self.dir(name).join("output.log"))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(max_bytes.min(64 * 1024));
        f.take(max_bytes as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    async fn terminate(&self, name: &str) -> Result<bool, ProviderError> {
        let dir = self.dir(name);
        let Some(pid) = read_trimmed(&dir.join("pid")).and_then(|s| s.parse::<u32>().ok()) else {
            return Ok(true); // never started, or already removed
        };
        if !alive(pid, &dir) {
            return Ok(true);
        }
        signal_group(pid, "-TERM");
        let deadline = tokio::time::Instant::now() + TERM_GRACE;
        while tokio::time::Instant::now() < deadline {
            if !alive(pid, &dir) {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal_group(pid, "-KILL");
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(!alive(pid, &dir))
    }

    async fn collect_artifacts(
        &self,
        name: &str,
        request: &crate::ArtifactRequest,
    ) -> Result<crate::artifact_archive::Packed, ProviderError> {
        let work = self.dir(name).join("work");
        let request = request.clone();
        let run_as = self.config.run_as.clone();
        // At a lower priority than the node's own work (`background.rs`).
        crate::background::run_in_background("flotilla-pack", move || match &run_as {
            // The job ran as this user: reading as this user gives it nothing it had not.
            None => crate::artifact_archive::pack(&work, &request.paths, &request.dest, request.limits)
                .map_err(ProviderError::from),
            Some(user) => artifacts::pack_as(user, &work, &request),
        })
        .await
        .ok_or_else(|| ProviderError::Unavailable("packing the artifacts: the packing thread failed".into()))?
    }

    async fn remove(&self, name: &str) -> Result<(), ProviderError> {
        self.tombstones.bury(name)?;
        self.secret_files.remove(name)?;
        match std::fs::remove_dir_all(self.dir(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn list(&self) -> Result<Vec<ListedWorker>, ProviderError> {
        let mut listed = Vec::new();
        for entry in std::fs::read_dir(&self.config.root)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with('j') && name.contains("-a") {
                let cluster_id = read_trimmed(&self.dir(&name).join(CLUSTER_ID_FILE));
                listed.push(ListedWorker { name, cluster_id });
            }
        }
        listed.sort();
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_work_directory_is_made_private_and_a_foreign_one_refused() {
        let base = tempfile::tempdir().unwrap();
        let open_dir = base.path().join("open");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        make_private(&open_dir).unwrap();
        assert_eq!(
            std::fs::metadata(&open_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );

        let link = base.path().join("link");
        std::os::unix::fs::symlink(&open_dir, &link).unwrap();
        let err = make_private(&link).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");

        // Another user's directory (the tests run as root, which may give one away).
        let foreign = base.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        let err = make_private(&foreign).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }
}
