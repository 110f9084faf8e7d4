//! `CancelPipeline` and `CancelJob`. Cancelling is idempotent: cancelling what is already
//! cancelled succeeds and changes nothing.

use super::{EntryContext, Handled};
use crate::{JobId, JobState, PipelineId, Rejection, Response, State};

impl State {
    pub(crate) fn cancel_pipeline(&mut self, cx: &mut EntryContext, pipeline: PipelineId) -> Handled {
        let Some(p) = self.pipelines.get(&pipeline) else {
            // A settled pipeline has nothing left to cancel, as a finished one before it.
            return match self.archive.contains(pipeline) {
                true => Ok(Response::Cancelled { jobs: Vec::new() }),
                false => Err(Rejection::UnknownPipeline(pipeline)),
            };
        };
        let ids = p.jobs.clone();
        let mut cancelled = Vec::new();
        for id in ids {
            // Cancelling one job may cancel its dependants, so re-read each state.
            if !self.jobs[&id].state.is_terminal() {
                cancelled.extend(self.cancel_with_dependants(cx, id));
            }
        }
        Ok(Response::Cancelled { jobs: cancelled })
    }

    pub(crate) fn cancel_job(&mut self, cx: &mut EntryContext, job: JobId) -> Handled {
        let j = self.jobs.get(&job).ok_or(Rejection::UnknownJob(job))?;
        match j.state {
            // Already cancelled: answered with the job, as the cancel that did it was. A cancel
            // whose answer was lost (a leader killed after the commit) and that the proposer
            // retried would otherwise tell its client that nothing was cancelled.
            JobState::Cancelled => Ok(Response::Cancelled { jobs: vec![job] }),
            s @ (JobState::Succeeded | JobState::Failed | JobState::Skipped) => {
                Err(Rejection::AlreadyFinished { job, state: s })
            }
            _ => Ok(Response::Cancelled {
                jobs: self.cancel_with_dependants(cx, job),
            }),
        }
    }

    /// Cancels `job` (and, through the DAG, its pending dependants); returns every job cancelled.
    fn cancel_with_dependants(&mut self, cx: &mut EntryContext, job: JobId) -> Vec<JobId> {
        let before = cx.events.len();
        self.cancel(cx, job);
        cx.events[before..]
            .iter()
            .filter_map(|e| match e {
                crate::Event::JobCancelled { job, .. } => Some(*job),
                _ => None,
            })
            .collect()
    }
}
