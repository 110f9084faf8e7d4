//! REST client over several server addresses: a request goes to the first address that
//! answers; connection failures move on to the next one.

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// Redirects followed for one request (a follower names the leader; one is the usual case).
const MAX_REDIRECTS: usize = 3;

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

    /// GET saving the body into `dest` (created, never overwritten) while hashing it; returns
    /// the SHA-256 of what was saved and the digest the server announced, if it did.
    pub async fn download(&self, path: &str, dest: &std::path::Path) -> anyhow::Result<(String, Option<String>)> {
        use sha2::Digest;
        use std::io::Write;
        let long = Duration::from_secs(24 * 3600);
        let mut resp = self
            .send(|http, server| http.get(format!("{server}{path}")).timeout(long))
            .await?;
        let announced = resp
            .headers()
            .get("x-flotilla-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .with_context(|| format!("creating {}", dest.display()))?;
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = resp.chunk().await.context("reading the download")? {
            hasher.update(&chunk);
            file.write_all(&chunk)?;
        }
        file.sync_all()?;
        Ok((hex::encode(hasher.finalize()), announced))
    }

    /// GET returning the body as text, unparsed (job logs).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self.send(|http, server| http.get(format!("{server}{path}"))).await?;
        Ok(resp.text().await.unwrap_or_default())
    }
}
