//! The user's saved login (`flotilla login`): the servers, the cluster CA and the token the CLI
//! uses when neither `--server`/`FLOTILLA_ADDR`, `--ca-file`/`FLOTILLA_CA_FILE` nor
//! `--token`/`FLOTILLA_TOKEN` is given. One JSON file,
//! `$FLOTILLA_CONFIG`, else `$XDG_CONFIG_HOME/flotilla/config.json`, else
//! `~/.config/flotilla/config.json`; it holds a secret, so it is written with mode 0600 in a
//! directory of mode 0700, and a file others may read is refused rather than used.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The servers the CLI asks when nothing else names any.
pub const DEFAULT_SERVERS: &str = "127.0.0.1:8101,127.0.0.1:8102,127.0.0.1:8103";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Comma-separated API addresses, as `--server` takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The cluster CA's certificates (PEM), as `--ca-file` names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// What the CLI connects with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub server: String,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// Where the login is kept.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FLOTILLA_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("neither FLOTILLA_CONFIG nor HOME is set")?).join(".config")
        }
    };
    Ok(base.join("flotilla").join("config.json"))
}

/// The saved login at `path`; none when there is no file.
pub fn load(path: &Path) -> anyhow::Result<Login> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Login::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} holds a token and is readable by others (mode {mode:03o}): chmod 600 it, or log in again",
            path.display()
        );
    }
    if meta.len() > 64 * 1024 {
        bail!("{} is larger than a login can be (64 KiB)", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a flotilla login file", path.display()))
}

/// Saves `login` at `path` (mode 0600; its directory is made with mode 0700).
pub fn save(path: &Path, login: &Login) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("making {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(login)? + "\n";
    flotilla_cli::write_private(path, &text).with_context(|| format!("writing {}", path.display()))
}

/// What the CLI uses: the flag or environment, else the saved login, else the default.
pub fn resolve(given: Login, saved: &Login) -> Resolved {
    let server = given
        .server
        .filter(|s| !s.trim().is_empty())
        .or_else(|| saved.server.clone())
        .unwrap_or_else(|| DEFAULT_SERVERS.to_string());
    Resolved {
        server,
        token: given.token.or_else(|| saved.token.clone()),
        ca_file: given
            .ca_file
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| saved.ca_file.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_login_is_saved_privately_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("config.json");
        assert_eq!(load(&path).unwrap(), Login::default(), "no file: no login");
        let login = Login {
            server: Some("10.0.0.1:8001".into()),
            token: Some("flt_x".into()),
            ca_file: Some("/etc/flotilla/ca.crt".into()),
        };
        save(&path, &login).unwrap();
        assert_eq!(load(&path).unwrap(), login);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "{\"colour\": 1}").unwrap();
        assert!(load(&path).is_err());
    }

    #[test]
    fn flags_and_environment_come_before_the_saved_login() {
        let saved = Login {
            server: Some("saved:1".into()),
            token: Some("saved-token".into()),
            ca_file: Some("saved.crt".into()),
        };
        let resolved = |server: Option<&str>, token: Option<&str>, ca: Option<&str>| Resolved {
            server: server.unwrap_or(DEFAULT_SERVERS).into(),
            token: token.map(Into::into),
            ca_file: ca.map(Into::into),
        };
        assert_eq!(
            resolve(Login::default(), &saved),
            resolved(Some("saved:1"), Some("saved-token"), Some("saved.crt"))
        );
        let given = Login {
            server: Some("flag:1".into()),
            token: Some("flag-token".into()),
            ca_file: Some("flag.crt".into()),
        };
        assert_eq!(
            resolve(given, &saved),
            resolved(Some("flag:1"), Some("flag-token"), Some("flag.crt"))
        );
        assert_eq!(resolve(Login::default(), &Login::default()), resolved(None, None, None));
    }
}
