//! A process worker's artifacts. Without `--process-run-as-user` the job ran as the node's
//! own user and its files are packed in the node (`artifact_archive::pack`). With it, the job
//! ran as another user, whose processes may outlive the steps (a daemon, `setsid`) and swap a
//! directory for a link while the files are read; so the files are read by `tar` running as
//! that user (the same `setpriv` as the steps), and the node only re-packs the stream it
//! writes (`artifact_archive::repack`): whatever the job's processes do, nothing its user
//! cannot read is ever read.

use super::RunAs;
use crate::artifact_archive::{Packed, archive_name, repack, resolve};
use crate::provider::{ArtifactRequest, ProviderError};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// Most bytes of `tar`'s error output kept for the message.
const MAX_STDERR_BYTES: u64 = 4096;

/// Packs `request.paths` of `work` as `user`.
pub(super) fn pack_as(user: &RunAs, work: &Path, request: &ArtifactRequest) -> Result<Packed, ProviderError> {
    // Named here first, for a message that names a missing path; read below as the user.
    resolve(work, &request.paths)?;
    let names: Vec<String> = request
        .paths
        .iter()
        .filter_map(|p| archive_name(p))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut child = Command::new("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .args(["--clear-groups", "--inh-caps=-all", "--no-new-privs"])
        .args(["tar", "--create", "--file=-", "--no-xattrs", "--directory"])
        .arg(work)
        .arg("--")
        .args(&names)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ProviderError::Unavailable(format!("starting tar as {}: {e}", user.user)))?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.take(MAX_STDERR_BYTES).read_to_string(&mut text);
        text
    });
    let stdout = child.stdout.take().expect("piped");
    let packed = repack(std::io::BufReader::new(stdout), &request.dest, request.limits);
    if packed.is_err() {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let errors = errors.join().unwrap_or_default();
    let packed = packed?;
    if !status.success() {
        let line = errors.lines().next().unwrap_or("no message");
        return Err(ProviderError::Rejected(format!(
            "reading the artifacts as {} failed: {line}",
            user.user
        )));
    }
    Ok(packed)
}
