//! Running the process provider's jobs as another user of the host (`--process-run-as-user`).
//!
//! The wrapper stays the node's user, in a worker directory the job's user can enter but not
//! write; only each step switches user, through util-linux's `setpriv`, with no supplementary
//! groups (a `docker` group would be root on the host), no capabilities and no new privileges.
//! Every file the node reads back (`pid`, `steps.log`, `output.log`, `exit_code`) is in that
//! directory and opened by the wrapper before the switch, so a job can neither replace one with
//! a link to a file only the node may read (the node would commit its contents as output) nor
//! forge its own exit. The job's user owns `work/` and its secret files alone.

use std::path::Path;
use std::process::Command;

/// The user a process job runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// The name (or number) it was given as.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// Why a user cannot run jobs.
#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    #[error("--process-run-as-user {user:?}: no such user ({detail})")]
    UnknownUser { user: String, detail: String },
    #[error(
        "--process-run-as-user {user:?} is root: jobs would run with every right on the host; omit the flag or name an unprivileged user"
    )]
    Root { user: String },
    #[error("--process-run-as-user needs the node to run as root (it runs as uid {uid}) to switch users")]
    NotRoot { uid: u32 },
    #[error("--process-run-as-user needs util-linux's setpriv on the PATH: {0}")]
    NoSetpriv(String),
}

impl RunAs {
    /// Looks `user` up (a name or a number, through the host's user database) and checks that
    /// this node can switch to it.
    pub fn resolve(user: &str) -> Result<RunAs, RunAsError> {
        // The owner of /proc/self is the user this process runs as.
        let me = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| std::os::unix::fs::MetadataExt::uid(&m));
        if me != 0 {
            return Err(RunAsError::NotRoot { uid: me });
        }
        let id = |flag: &str| -> Result<u32, RunAsError> {
            let unknown = |detail: String| RunAsError::UnknownUser {
                user: user.to_string(),
                detail,
            };
            let out = Command::new("id")
                .args([flag, "--", user])
                .output()
                .map_err(|e| unknown(format!("running id: {e}")))?;
            if !out.status.success() {
                return Err(unknown(String::from_utf8_lossy(&out.stderr).trim().to_string()));
            }
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|e| unknown(format!("id printed no number: {e}")))
        };
        let (uid, gid) = (id("-u")?, id("-g")?);
        if uid == 0 {
            return Err(RunAsError::Root { user: user.to_string() });
        }
        match Command::new("setpriv").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(RunAsError::NoSetpriv(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
            Err(e) => return Err(RunAsError::NoSetpriv(e.to_string())),
        }
        Ok(RunAs {
            user: user.to_string(),
            uid,
            gid,
        })
    }

    /// The command the wrapper runs a step file with, in place of `sh -e`.
    pub fn step_runner(&self) -> String {
        format!(
            "setpriv --reuid={} --regid={} --clear-groups --inh-caps=-all --no-new-privs sh -e",
            self.uid, self.gid
        )
    }

    /// Gives `path` to the job's user with `mode`.
    pub fn give(&self, path: &Path, mode: u32) -> std::io::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))?;
        set_mode(path, mode)
    }

    /// Lets the job's group read `path` (a step file), which stays the node's.
    pub fn share_read(&self, path: &Path) -> std::io::Result<()> {
        std::os::unix::fs::chown(path, None, Some(self.gid))?;
        set_mode(path, 0o640)
    }
}

pub(super) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_user_and_root_are_refused_and_nobody_is_found() {
        let err = RunAs::resolve("no-such-user-flotilla").unwrap_err();
        assert!(matches!(err, RunAsError::UnknownUser { .. }), "{err}");
        let err = RunAs::resolve("root").unwrap_err();
        assert!(matches!(err, RunAsError::Root { .. }), "{err}");
        // The tests run as root on a Debian host, which has `nobody` (65534).
        let nobody = RunAs::resolve("nobody").unwrap();
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        assert!(
            nobody
                .step_runner()
                .contains("--reuid=65534 --regid=65534 --clear-groups")
        );
        assert_eq!(RunAs::resolve("65534").unwrap().uid, 65534);
    }
}
