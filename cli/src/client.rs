//! REST client over several server addresses: a request goes to the first address that
//! answers; connection failures move on to the next one.

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// Redirects followed for one request (a follower names the leader; one is the usual case).
const MAX_REDIRECTS: usize = 3;
/// Rounds over the servers a download is tried in before it fails (a node that stops
/// mid-way, a leader change): each try starts the file again, from the next server.
const DOWNLOAD_ROUNDS: u32 = 3;

pub struct Client {
    servers: Vec<String>,
    http: reqwest::Client,
}

/// A non-2xx answer, with the server's JSON error when it sent one.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub body: Value,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.body["error"];
        match (e["message"].as_str(), e["field"].as_str()) {
            (Some(m), Some(field)) => write!(f, "{} (field {field}): {m}", self.status),
            (Some(m), None) => write!(f, "{}: {m}", self.status),
            _ => write!(f, "{}: {}", self.status, self.body),
        }
    }
}

impl std::error::Error for ApiFailure {}

/// The body as JSON when it is JSON, else as a string.
fn parse_body(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// Writes `resp`'s body over `dest` while hashing it: `(sha256, announced digest)`.
async fn save(mut resp: reqwest::Response, dest: &std::path::Path) -> anyhow::Result<(String, Option<String>)> {
    use sha2::Digest;
    use std::io::Write;
    let announced = resp
        .headers()
        .get("x-flotilla-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let expected = resp.content_length();
    let mut file = std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = resp.chunk().await.context("reading the download")? {
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        file.write_all(&chunk)?;
    }
    if let Some(expected) = expected.filter(|n| *n != bytes) {
        bail!("{bytes} bytes arrived of {expected}");
    }
    file.sync_all()?;
    Ok((hex::encode(hasher.finalize()), announced))
}

impl Client {
    /// A client of `servers` sending `token`, trusting the cluster CA in `ca_file`.
    pub fn new(servers: &str, token: Option<&str>, ca_file: Option<&std::path::Path>) -> anyhow::Result<Client> {
        let servers = flotilla_cli::server_urls(servers);
        if servers.is_empty() {
            bail!("no server address given (use --server or FLOTILLA_ADDR)");
        }
        let headers = flotilla_cli::token_headers(token)?;
        // Redirects to the leader are followed in `send`, token and all: reqwest's own policy
        // drops the Authorization header whenever the port changes.
        let http = flotilla_cli::http_client_builder(ca_file)?
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()?;
        Ok(Client { servers, http })
    }

    /// The server base URLs, in the order they are tried.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends the request `build` makes for each server in turn until one answers; a non-2xx
    /// answer is returned as an `ApiFailure`.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let mut last_err = None;
        for server in &self.servers {
            match self.following(&build, server).await {
                Err(e) if flotilla_cli::is_untrusted_certificate(&e) => {
                    return Err(e).context(format!(
                        "{server} presented a certificate of no CA this client trusts: give the cluster CA's certificate with --ca-file or FLOTILLA_CA_FILE (`flotilla login --ca-file` saves it)"
                    ));
                }
                Err(e) if e.is_connect() || e.is_timeout() => last_err = Some(anyhow::anyhow!("{server}: {e}")),
                Err(e) => return Err(e).context(format!("request to {server} failed")),
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let body = parse_body(resp.text().await.unwrap_or_default());
                    return Err(ApiFailure { status, body }.into());
                }
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow::anyhow!("no server answered"))
            .context("no server could be reached"))
    }

    /// Sends what `build` makes for `server`, and again to the node a `307`/`308` names (the
    /// leader, for membership changes), at most `MAX_REDIRECTS` times.
    async fn following(
        &self,
        build: &impl Fn(&reqwest::Client, &str) -> RequestBuilder,
        server: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let mut base = server.to_string();
        let mut redirects = 0;
        loop {
            let resp = build(&self.http, &base).send().await?;
            let redirected = matches!(
                resp.status(),
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            );
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| reqwest::Url::parse(l).ok());
            match next {
                Some(url) if redirected && redirects < MAX_REDIRECTS => {
                    base = url.origin().ascii_serialization();
                    redirects += 1;
                }
                _ => return Ok(resp),
            }
        }
    }

    async fn json(resp: reqwest::Response) -> anyhow::Result<Value> {
        Ok(parse_body(resp.text().await.unwrap_or_default()))
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let resp = self
            .send(|http, server| {
                let mut req = http.request(method.clone(), format!("{server}{path}"));
                if let Some(b) = body {
                    req = req.json(b);
                }
                headers.iter().fold(req, |r, (k, v)| r.header(*k, v))
            })
            .await?;
        Self::json(resp).await
    }

    /// POST with a body already encoded as `content_type` (a pipeline file as written).
    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let resp = self
            .send(|http, server| {
                let req = http
                    .post(format!("{server}{path}"))
                    .header("content-type", content_type)
                    .body(body.clone());
                headers.iter().fold(req, |r, (k, v)| r.header(*k, v))
            })
            .await?;
        Self::json(resp).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.request(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.request(Method::POST, path, Some(body), &[]).await
    }

    /// GET streaming the body to stdout as it arrives (followed logs).
    pub async fn stream_to_stdout(&self, path: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let follow = Duration::from_secs(24 * 3600);
        let mut resp = self
            .send(|http, server| http.get(format!("{server}{path}")).timeout(follow))
            .await?;
        let mut out = std::io::stdout();
        while let Some(chunk) = resp.chunk().await.context("reading the log stream")? {
            out.write_all(&chunk)?;
            out.flush()?;
        }
        Ok(())
    }

    /// GET saving the body into `dest` (the caller's own scratch file: written over on each
    /// try) while hashing it; returns the SHA-256 of what was saved and the digest the server
    /// announced, if it did. A download that breaks, or a server that cannot serve it now
    /// (5xx, 429, unreachable), is tried again from the next server, `DOWNLOAD_ROUNDS` times
    /// over the list; an answer that says no (4xx) ends it at once.
    pub async fn download(&self, path: &str, dest: &std::path::Path) -> anyhow::Result<(String, Option<String>)> {
        let long = Duration::from_secs(24 * 3600);
        let mut last = None;
        for round in 0..DOWNLOAD_ROUNDS {
            if round > 0 {
                tokio::time::sleep(Duration::from_secs(u64::from(round))).await;
            }
            for server in &self.servers {
                let resp = match self
                    .following(&|http, base| http.get(format!("{base}{path}")).timeout(long), server)
                    .await
                {
                    Err(e) if flotilla_cli::is_untrusted_certificate(&e) => {
                        return Err(e).context(format!("{server} presented a certificate of no CA this client trusts"));
                    }
                    Err(e) => {
                        last = Some(anyhow::anyhow!("{server}: {e}"));
                        continue;
                    }
                    Ok(resp) if resp.status().is_success() => resp,
                    Ok(resp) => {
                        let status = resp.status();
                        let body = parse_body(resp.text().await.unwrap_or_default());
                        let failure = ApiFailure { status, body };
                        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                            last = Some(anyhow::anyhow!("{server}: {failure}"));
                            continue;
                        }
                        return Err(failure.into());
                    }
                };
                match save(resp, dest).await {
                    Ok(saved) => return Ok(saved),
                    Err(e) => {
                        eprintln!("the download from {server} broke ({e:#}); starting it again");
                        last = Some(e);
                    }
                }
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no server answered"))
            .context(format!("downloading {path}")))
    }

    /// GET returning the body as text, unparsed (job logs).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self.send(|http, server| http.get(format!("{server}{path}"))).await?;
        Ok(resp.text().await.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::Client;
    use sha2::Digest;
    use std::io::{Read, Write};

    /// Serves `connections` requests on loopback: the first answer stops after `cut` bytes of
    /// the body, the others send it whole, announcing its digest.
    fn flaky_server(body: Vec<u8>, cut: usize, connections: usize) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let digest = hex::encode(sha2::Sha256::digest(&body));
        let handle = std::thread::spawn(move || {
            for (i, stream) in listener.incoming().take(connections).enumerate() {
                let mut s = stream.unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && request.len() < 64 * 1024 {
                    if s.read(&mut byte).unwrap_or(0) == 0 {
                        break;
                    }
                    request.push(byte[0]);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-flotilla-digest: {digest}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).unwrap();
                let end = if i == 0 { cut } else { body.len() };
                let _ = s.write_all(&body[..end]);
            }
        });
        (format!("http://{addr}"), handle)
    }

    #[tokio::test]
    async fn a_download_that_breaks_is_started_again_and_ends_whole() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (url, server) = flaky_server(body.clone(), 50_000, 2);
        let client = Client::new(&url, None, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("archive.part");
        let (digest, announced) = client.download("/v1/jobs/1/artifacts/archive", &dest).await.unwrap();
        assert_eq!(digest, hex::encode(sha2::Sha256::digest(&body)));
        assert_eq!(announced.as_deref(), Some(digest.as_str()));
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            body,
            "the second try wrote over the first"
        );
        server.join().unwrap();
    }
}
