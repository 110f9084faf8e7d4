//! The status tick: posts the commit statuses the state owes (`status_outbox.rs`) to each
//! repository's forge and commits `StatusReported` for each one the forge took. A forge that
//! fails is left alone for a while (`outgoing.rs`, per API root), so a forge that is down
//! costs one request per pause, never the drive or the placements, which run beside this
//! loop. Statuses are reported at least once: a leader
//! that dies between the post and the commit posts again, which forges take as the same.

use super::outgoing::{ForgePauses, Outgoing, Owed, post_each};
use super::{LeaderContext, LeaderError};
use crate::source::status::request;
use flotilla_state_machine::{Command, PipelineId, PipelineState, Proposal};

/// Owed statuses looked at per tick / posted per tick.
const SCAN_PER_TICK: usize = 1024;
const POST_PER_TICK: usize = 64;

impl LeaderContext<'_> {
    /// Posts what is owed, in `term`. Returns how many statuses were reported.
    pub(super) async fn report_statuses(&self, term: u64, pauses: &ForgePauses) -> Result<usize, LeaderError> {
        let posts = self.owed_posts(pauses);
        if posts.is_empty() {
            return Ok(0);
        }
        let reported = post_each(pauses, posts, "commit status").await?;
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
    fn owed_posts(&self, pauses: &ForgePauses) -> Vec<Owed<(PipelineId, PipelineState)>> {
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
                posts.push(((pipeline, due.state), None));
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
            let post = request(&repo.spec, due, pipeline.0, token.expose()).map(|req| Outgoing {
                breaker: api,
                url: req.url,
                headers: req.headers,
                body: req.body.to_string(),
            });
            posts.push(((pipeline, due.state), post));
        }
        posts
    }
}
