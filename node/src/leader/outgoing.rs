//! Posting what the state owes outside the cluster (commit statuses, notifications): at most
//! `POST_CONCURRENCY` at once, each destination behind a breaker. A destination that fails
//! rests, doubling from 1 s to 5 min (keyed by a forge's API root, or a receiver's URL), so
//! one that is down costs a request per pause and holds nothing else up.

use super::LeaderError;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Posts in flight at once.
const POST_CONCURRENCY: usize = 8;

/// Deadline of one post.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a forge's first failure, doubled per failure up to the most.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(300);
/// API roots whose pauses are remembered at most.
const MAX_PAUSED_FORGES: usize = 1024;

/// Forges (or notification receivers) that failed lately, by API root (or URL): how many times in a row, and until when they rest.
#[derive(Default)]
pub(super) struct ForgePauses {
    pauses: Mutex<HashMap<String, (u32, Instant)>>,
    /// The HTTP client, made at the first post.
    client: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl ForgePauses {
    /// The HTTP client every post uses, made the first time.
    pub(super) fn client(&self) -> Result<reqwest::Client, LeaderError> {
        self.client
            .get_or_init(|| crate::source::status::forge_client(POST_TIMEOUT))
            .clone()
            .map_err(|e| LeaderError::Statuses(format!("an HTTP client for outgoing posts: {e}")))
    }

    pub(super) fn resting(&self, api: &str) -> bool {
        self.pauses
            .lock()
            .expect("forge pauses")
            .get(api)
            .is_some_and(|(_, until)| Instant::now() < *until)
    }

    pub(super) fn failed(&self, api: &str) {
        let mut pauses = self.pauses.lock().expect("forge pauses");
        if pauses.len() >= MAX_PAUSED_FORGES && !pauses.contains_key(api) {
            let now = Instant::now();
            pauses.retain(|_, (_, until)| *until > now);
        }
        let entry = pauses.entry(api.to_string()).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        let pause = FIRST_PAUSE
            .saturating_mul(1 << entry.0.min(16).saturating_sub(1))
            .min(MAX_PAUSE);
        entry.1 = Instant::now() + pause;
    }

    pub(super) fn succeeded(&self, api: &str) {
        self.pauses.lock().expect("forge pauses").remove(api);
    }
}

/// One post: the breaker it counts against, where, the headers, the body.
#[derive(Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub breaker: String,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// What is owed, and its post; without a post it is cleared as done (nothing can take it).
pub(super) type Owed<K> = (K, Option<Outgoing>);

/// Posts each owed item whose destination is not resting; returns the keys of those taken
/// (a 2xx answer) and of those without a post. `what` names them in the logs.
pub(super) async fn post_each<K>(pauses: &ForgePauses, owed: Vec<Owed<K>>, what: &str) -> Result<Vec<K>, LeaderError> {
    let client = pauses.client()?;
    Ok(futures::stream::iter(owed)
        .map(|(key, post)| {
            let client = client.clone();
            async move {
                let Some(post) = post else { return Some(key) };
                if pauses.resting(&post.breaker) {
                    return None;
                }
                let sent = post
                    .headers
                    .iter()
                    .fold(client.post(&post.url), |r, (k, v)| r.header(*k, v))
                    .body(post.body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        pauses.succeeded(&post.breaker);
                        Some(key)
                    }
                    other => {
                        let why = other.map_or_else(|e| e.to_string(), |r| r.status().to_string());
                        tracing::warn!(destination = %post.breaker, error = %why, "posting a {what}");
                        pauses.failed(&post.breaker);
                        None
                    }
                }
            }
        })
        .buffer_unordered(POST_CONCURRENCY)
        .filter_map(|k| async move { k })
        .collect()
        .await)
}
