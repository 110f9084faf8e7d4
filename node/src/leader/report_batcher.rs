//! The leader's worker reports, committed many to an entry.
//!
//! Driving thousands of workers yields thousands of small commands per tick (created, started,
//! step, output, exit), and one Raft entry each would make the log the bottleneck: each entry
//! costs a replication round and an apply on every node. The drive loop's tasks hand their
//! commands to the batcher and wait for their own answer; the batcher proposes what has
//! gathered as one `Command::Batch` while the previous batch commits. There is no timer: an
//! idle leader commits a lone report at once, a busy one fills batches (as group commit does
//! for fsyncs). Each command is still accepted or refused on its own by `apply`.

use crate::observe::metrics::NodeMetrics;
use crate::raft::proposer::{ProposeError, Proposer, wall_clock_ms};
use flotilla_state_machine::{Command, MAX_BATCH_COMMANDS, Proposal, Response};
use tokio::sync::{mpsc, oneshot, watch};

/// Bounds of the batcher.
#[derive(Clone, Copy, Debug)]
pub struct BatcherConfig {
    /// Commands waiting for a batch at most; submitters wait for room beyond that.
    pub queue_commands: usize,
    /// Commands in one batch at most (capped at `MAX_BATCH_COMMANDS`).
    pub max_batch_commands: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            queue_commands: 4096,
            max_batch_commands: 1024,
        }
    }
}

/// Bytes of commands in one batch at most: half an entry, so the batch's own encoding and
/// the proposal around it stay within `proposer::MAX_ENTRY_BYTES` (output chunks are up to
/// `Limits::max_log_chunk_bytes` each; a thousand of them would not fit one entry).
const BATCH_BUDGET_BYTES: usize = crate::raft::proposer::MAX_ENTRY_BYTES / 2;

/// Splits what was gathered into batches of at most `budget_bytes` of encoded commands each,
/// in order. A command larger than the budget goes alone (`commit_here` bounds it).
fn by_bytes(gathered: Vec<Waiting>, budget_bytes: usize) -> Vec<Vec<Waiting>> {
    let mut groups: Vec<Vec<Waiting>> = Vec::new();
    let mut used = 0usize;
    for w in gathered {
        let bytes = flotilla_raft_store::encoded_len(&w.command).unwrap_or(usize::MAX);
        match groups.last_mut() {
            Some(group) if used.saturating_add(bytes) <= budget_bytes => {
                used += bytes;
                group.push(w);
            }
            _ => {
                used = bytes;
                groups.push(vec![w]);
            }
        }
    }
    groups
}

struct Waiting {
    command: Command,
    reply: oneshot::Sender<Result<Response, ProposeError>>,
}

/// The submitting side: cheap to share among the drive loop's tasks.
#[derive(Clone)]
pub struct ReportBatcher {
    tx: mpsc::Sender<Waiting>,
}

/// The committing side, run by the leader loop until it stops.
pub struct BatchLoop {
    rx: mpsc::Receiver<Waiting>,
    max_batch_commands: usize,
}

impl ReportBatcher {
    pub fn new(config: BatcherConfig) -> (ReportBatcher, BatchLoop) {
        let (tx, rx) = mpsc::channel(config.queue_commands.max(1));
        let max_batch_commands = config.max_batch_commands.clamp(1, MAX_BATCH_COMMANDS);
        (ReportBatcher { tx }, BatchLoop { rx, max_batch_commands })
    }

    /// Commits `command` in the next batch and returns `apply`'s answer to it.
    pub async fn commit(&self, command: Command) -> Result<Response, ProposeError> {
        let stopped = || ProposeError::Failed("the leader's report batcher stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send(Waiting { command, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl BatchLoop {
    pub async fn run(mut self, proposer: &Proposer, metrics: &NodeMetrics, mut stop: watch::Receiver<bool>) {
        loop {
            // Waits for one command, then takes whatever else is already queued.
            let mut batch = Vec::new();
            let received = tokio::select! {
                n = self.rx.recv_many(&mut batch, self.max_batch_commands) => n,
                _ = stop.changed() => return,
            };
            if received == 0 {
                return;
            }
            for group in by_bytes(batch, BATCH_BUDGET_BYTES) {
                metrics.leader_report_batch_commands.observe(group.len() as f64);
                commit_batch(proposer, group).await;
            }
        }
    }
}

/// Proposes one batch (a lone command as itself) and answers every submitter.
async fn commit_batch(proposer: &Proposer, mut batch: Vec<Waiting>) {
    if batch.len() == 1 {
        if let Some(Waiting { command, reply }) = batch.pop() {
            let _ = reply.send(proposer.commit_here(Proposal::new(wall_clock_ms(), command)).await);
        }
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|w| (w.command, w.reply)).unzip();
    let count = commands.len();
    let answers = match proposer
        .commit_here(Proposal::new(wall_clock_ms(), Command::Batch { commands }))
        .await
    {
        Ok(Response::Batch { responses }) if responses.len() == count => Ok(responses),
        Ok(other) => Err(ProposeError::Failed(format!(
            "a batch of {count} reports was answered {other:?}"
        ))),
        Err(e) => Err(e),
    };
    match answers {
        Ok(responses) => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_state_machine::{FencingToken, JobId};

    fn log_command(bytes: usize) -> Waiting {
        let fencing = FencingToken { term: 1, log_index: 1 };
        let command = Command::AppendLog {
            job: JobId(1),
            fencing,
            offset: 0,
            data: vec![b'x'; bytes],
        };
        Waiting {
            command,
            reply: oneshot::channel().0,
        }
    }

    /// A thousand output chunks of 256 KiB gathered at once become batches that each fit an
    /// entry, in order; small reports still share one batch.
    #[test]
    fn batches_are_cut_by_bytes() {
        let gathered: Vec<Waiting> = (0..1000).map(|_| log_command(256 * 1024)).collect();
        let groups = by_bytes(gathered, BATCH_BUDGET_BYTES);
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 1000);
        for g in &groups {
            let bytes: usize = g
                .iter()
                .map(|w| flotilla_raft_store::encoded_len(&w.command).unwrap())
                .sum();
            assert!(bytes <= BATCH_BUDGET_BYTES, "{bytes}");
        }
        assert!(groups.len() >= 1000 * 256 * 1024 / BATCH_BUDGET_BYTES);
        let small: Vec<Waiting> = (0..1000).map(|_| log_command(10)).collect();
        assert_eq!(by_bytes(small, BATCH_BUDGET_BYTES).len(), 1);
        let big = vec![log_command(BATCH_BUDGET_BYTES + 1), log_command(1)];
        assert_eq!(
            by_bytes(big, BATCH_BUDGET_BYTES)
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            vec![1, 1]
        );
    }
}
