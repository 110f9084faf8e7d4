//! The status tick: posts the commit statuses the state owes (`status_outbox.rs`) to each
//! repository's forge and commits `StatusReported` for each one the forge took. A forge that
//! fails is left alone for a while (doubling from 1 s to 5 min per API root, as a circuit
//! breaker), so a forge that is down costs one request per pause, never the drive or the
//! placements, which run beside this loop. Statuses are reported at least once: a leader
//! that dies between the post and the commit posts again, which forges take as the same.

use super::{LeaderContext, LeaderError};
use crate::source::status::{StatusRequest, request};
use flotilla_state_machine::{Command, PipelineId, PipelineState, Proposal};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Owed statuses looked at per tick / posted per tick / posted at once.
const SCAN_PER_TICK: usize = 1024;
const POST_PER_TICK: usize = 64;
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

/// One owed status, ready to post (or, with no request, to clear: nothing can report it).
struct Post {
    pipeline: PipelineId,
    state: PipelineState,
    api: String,
    request: Option<StatusRequest>,
}

impl LeaderContext<'_> {
    /// Posts what is owed, in `term`. Returns how many statuses were reported.
    pub(super) async fn report_statuses(&self, term: u64, pauses: &ForgePauses) -> Result<usize, LeaderError> {
        let posts = self.owed_posts(pauses);
        if posts.is_empty() {
            return Ok(0);
        }
        let client = pauses.client()?;
        let reported: Vec<(PipelineId, PipelineState)> = futures::stream::iter(posts)
            .map(|post| {
                let client = client.clone();
                async move {
                    let Some(req) = &post.request else {
                        return Some((post.pipeline, post.state));
                    };
                    if pauses.resting(&post.api) {
                        return None;
                    }
                    let sent = req
                        .headers
                        .iter()
                        .fold(client.post(&req.url), |r, (k, v)| r.header(*k, v))
                        .body(req.body.to_string())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            pauses.succeeded(&post.api);
                            Some((post.pipeline, post.state))
                        }
                        Ok(r) => {
                            tracing::warn!(pipeline = %post.pipeline, status = %r.status(), api = %post.api, "the forge refused a commit status");
                            pauses.failed(&post.api);
                            None
                        }
                        Err(e) => {
                            tracing::warn!(pipeline = %post.pipeline, api = %post.api, error = %e, "posting a commit status");
                            pauses.failed(&post.api);
                            None
                        }
                    }
                }
            })
            .buffer_unordered(POST_CONCURRENCY)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        if reported.is_empty() {
            return Ok(0);
        }
        if !self.leadership.holds(term) {
            return Err(LeaderError::Deposed { term });
        }
        let count = reported.len();
        let commands = reported
            .into_iter()
            .map(|(pipeline, state)| Command::StatusReported { pipeline, state })
            .collect();
        self.proposer
            .commit_here(Proposal::new(self.proposer.now_ms(), Command::Batch { commands }))
            .await
            .map_err(|source| LeaderError::Propose {
                command: "status_reported",
                source,
            })?;
        Ok(count)
    }

    /// The owed statuses to post this tick, with their requests: the first `POST_PER_TICK`
    /// of the first `SCAN_PER_TICK` whose forge is not resting.
    fn owed_posts(&self, pauses: &ForgePauses) -> Vec<Post> {
        let data = self.machine.read();
        let state = &data.state;
        let mut posts = Vec::new();
        for (pipeline, due) in state.statuses().due_after(None, SCAN_PER_TICK) {
            if posts.len() >= POST_PER_TICK {
                break;
            }
            let repo = state
                .repository(&due.tenant, &due.repository)
                .filter(|r| r.spec.reports_statuses());
            let Some(repo) = repo else {
                // Removed, or changed so that it no longer reports: nothing to post to.
                posts.push(Post {
                    pipeline,
                    state: due.state,
                    api: String::new(),
                    request: None,
                });
                continue;
            };
            let api = repo.spec.status_api_root().unwrap_or_default();
            if pauses.resting(&api) {
                continue;
            }
            let token = match crate::source::token(state, self.keyring, repo) {
                Ok(token) => token,
                Err(e) => {
                    tracing::warn!(pipeline = %pipeline, error = %e, "the token of a commit status cannot be opened here");
                    continue;
                }
            };
            let Some(token) = token else { continue };
            posts.push(Post {
                pipeline,
                state: due.state,
                request: request(&repo.spec, due, pipeline.0, token.expose()),
                api,
            });
        }
        posts
    }
}
