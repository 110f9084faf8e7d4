//! Where the Docker provider reaches its engine: the local socket, or an engine's TCP address
//! that every node of the cluster reaches (then a new leader on another host still sees the
//! workers an old one created). The parsing is here so that the node refuses a bad value at
//! start with a message, and knows whether its Docker workers live on its host (`is_shared`).

use crate::provider::ProviderError;
use bollard::Docker;
use std::fmt;
use std::path::PathBuf;

/// The files of a TLS client, as Docker's `DOCKER_CERT_PATH` holds them.
pub const TLS_FILES: [&str; 3] = ["ca.pem", "cert.pem", "key.pem"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerEndpoint {
    /// The engine's Unix socket on this host (`/var/run/docker.sock` or `unix:///...`).
    Unix(String),
    /// An engine's TCP address `host:port` (`tcp://host:port`), over TLS with the client
    /// certificate in `tls_dir` (`ca.pem`, `cert.pem`, `key.pem`), or plain HTTP without.
    Tcp { addr: String, tls_dir: Option<PathBuf> },
}

impl DockerEndpoint {
    /// Reads `--docker-socket`: a socket path, `unix://PATH`, or `tcp://HOST:PORT`.
    pub fn parse(text: &str, tls_dir: Option<PathBuf>) -> Result<DockerEndpoint, String> {
        let endpoint = if let Some(addr) = text.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| format!("docker endpoint {text:?}: tcp:// needs HOST:PORT"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("docker endpoint {text:?}: tcp:// needs HOST:PORT"));
            }
            DockerEndpoint::Tcp {
                addr: addr.to_string(),
                tls_dir,
            }
        } else {
            let path = text.strip_prefix("unix://").unwrap_or(text);
            if !path.starts_with('/') {
                return Err(format!(
                    "docker endpoint {text:?}: give the socket's absolute path, unix:///PATH or tcp://HOST:PORT"
                ));
            }
            if tls_dir.is_some() {
                return Err("--docker-cert-path is for a tcp:// endpoint, not a socket".into());
            }
            DockerEndpoint::Unix(path.to_string())
        };
        if let DockerEndpoint::Tcp { tls_dir: Some(dir), .. } = &endpoint {
            for file in TLS_FILES {
                if !dir.join(file).is_file() {
                    return Err(format!("--docker-cert-path {}: {file} is missing", dir.display()));
                }
            }
        }
        Ok(endpoint)
    }

    /// Whether every node can reach this engine by the same name: a TCP address. A Unix socket
    /// is one host's.
    pub fn is_shared(&self) -> bool {
        matches!(self, DockerEndpoint::Tcp { .. })
    }

    /// Whether requests travel unencrypted over a network (a TCP address without TLS).
    pub fn is_plain_tcp(&self) -> bool {
        matches!(self, DockerEndpoint::Tcp { tls_dir: None, .. })
    }

    pub fn connect(&self, timeout_s: u64) -> Result<Docker, ProviderError> {
        let connected = match self {
            DockerEndpoint::Unix(path) => Docker::connect_with_unix(path, timeout_s, bollard::API_DEFAULT_VERSION),
            DockerEndpoint::Tcp { addr, tls_dir: None } => {
                Docker::connect_with_http(&format!("http://{addr}"), timeout_s, bollard::API_DEFAULT_VERSION)
            }
            DockerEndpoint::Tcp {
                addr,
                tls_dir: Some(dir),
            } => Docker::connect_with_ssl(
                &format!("https://{addr}"),
                &dir.join("key.pem"),
                &dir.join("cert.pem"),
                &dir.join("ca.pem"),
                timeout_s,
                bollard::API_DEFAULT_VERSION,
            ),
        };
        connected.map_err(|e| ProviderError::Unavailable(format!("docker at {self}: {e}")))
    }
}

impl fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerEndpoint::Unix(path) => write!(f, "unix://{path}"),
            DockerEndpoint::Tcp { addr, .. } => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_tcp_addresses_parse_and_the_rest_is_refused() {
        assert_eq!(
            DockerEndpoint::parse("/var/run/docker.sock", None),
            Ok(DockerEndpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            DockerEndpoint::parse("unix:///run/docker.sock", None),
            Ok(DockerEndpoint::Unix("/run/docker.sock".into()))
        );
        let tcp = DockerEndpoint::parse("tcp://builder.internal:2375", None).unwrap();
        assert!(tcp.is_shared() && tcp.is_plain_tcp());
        assert_eq!(tcp.to_string(), "tcp://builder.internal:2375");
        assert!(!DockerEndpoint::parse("/var/run/docker.sock", None).unwrap().is_shared());
        for bad in [
            "docker.sock",
            "tcp://builder",
            "tcp://:2375",
            "tcp://h:port",
            "http://h:1",
        ] {
            assert!(DockerEndpoint::parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tls_directory_must_hold_the_three_files_and_goes_with_tcp_only() {
        let dir = tempfile::tempdir().unwrap();
        let e = DockerEndpoint::parse("tcp://h:2376", Some(dir.path().into())).unwrap_err();
        assert!(e.contains("ca.pem is missing"), "{e}");
        for file in TLS_FILES {
            std::fs::write(dir.path().join(file), "x").unwrap();
        }
        let tls = DockerEndpoint::parse("tcp://h:2376", Some(dir.path().into())).unwrap();
        assert!(tls.is_shared() && !tls.is_plain_tcp());
        let e = DockerEndpoint::parse("/var/run/docker.sock", Some(dir.path().into())).unwrap_err();
        assert!(e.contains("tcp://"), "{e}");
    }
}
