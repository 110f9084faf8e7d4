//! REST client over several server addresses: a request goes to the first address that
//! answers; connection failures move on to the next one.

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

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

impl Client {
    pub fn new(servers: &str) -> anyhow::Result<Client> {
        let servers: Vec<String> = servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| if s.starts_with("http") { s.trim_end_matches('/').to_string() } else { format!("http://{s}") })
            .collect();
        if servers.is_empty() {
            bail!("no server address given (use --server or FLOTILLA_ADDR)");
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        Ok(Client { servers, http })
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>, headers: &[(&str, String)]) -> anyhow::Result<Value> {
        let mut last_err = None;
        for server in &self.servers {
            let mut req = self.http.request(method.clone(), format!("{server}{path}"));
            if let Some(b) = body {
                req = req.json(b);
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            match req.send().await {
                Err(e) if e.is_connect() || e.is_timeout() => {
                    last_err = Some(anyhow::anyhow!("{server}: {e}"));
                    continue;
                }
                Err(e) => return Err(e).context(format!("request to {server} failed")),
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    if status.is_success() {
                        return Ok(body);
                    }
                    return Err(ApiFailure { status, body }.into());
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no server answered")).context("no server could be reached"))
    }

    /// POST with a body already encoded as `content_type` (a pipeline file as written).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str, headers: &[(&str, String)]) -> anyhow::Result<Value> {
        let mut last_err = None;
        for server in &self.servers {
            let mut req = self.http.post(format!("{server}{path}")).header("content-type", content_type).body(body.clone());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            match req.send().await {
                Err(e) if e.is_connect() || e.is_timeout() => last_err = Some(anyhow::anyhow!("{server}: {e}")),
                Err(e) => return Err(e).context(format!("request to {server} failed")),
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    if status.is_success() {
                        return Ok(body);
                    }
                    return Err(ApiFailure { status, body }.into());
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no server answered")).context("no server could be reached"))
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
        let mut last_err = None;
        for server in &self.servers {
            let request = self.http.get(format!("{server}{path}")).timeout(Duration::from_secs(24 * 3600));
            match request.send().await {
                Err(e) if e.is_connect() => last_err = Some(anyhow::anyhow!("{server}: {e}")),
                Err(e) => return Err(e).context(format!("request to {server} failed")),
                Ok(mut resp) => {
                    let status = resp.status();
                    if !status.is_success() {
                        let text = resp.text().await.unwrap_or_default();
                        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                        return Err(ApiFailure { status, body }.into());
                    }
                    let mut out = std::io::stdout();
                    while let Some(chunk) = resp.chunk().await.context("reading the log stream")? {
                        out.write_all(&chunk)?;
                        out.flush()?;
                    }
                    return Ok(());
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no server answered")).context("no server could be reached"))
    }

    /// GET returning the body as text, unparsed (job logs).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let mut last_err = None;
        for server in &self.servers {
            match self.http.get(format!("{server}{path}")).send().await {
                Err(e) if e.is_connect() || e.is_timeout() => last_err = Some(anyhow::anyhow!("{server}: {e}")),
                Err(e) => return Err(e).context(format!("request to {server} failed")),
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(text);
                    }
                    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    return Err(ApiFailure { status, body }.into());
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no server answered")).context("no server could be reached"))
    }
}
