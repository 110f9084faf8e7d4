//! The audit trail of authenticated changes: for a proposal that names the token behind it
//! (`Proposal::actor`), `apply` adds one `Audited` event after the change's own events, naming
//! the token, the command's kind and what it changed. Refusals and no-ops (a repeated
//! submission, a drain of a draining pool) change nothing and are not recorded; a retried
//! request is answered from its session before anything is applied, so it is recorded once.

use crate::{Command, Event, Response, TokenId};

/// The `Audited` event of `command`, applied as `response`, by `token`; `None` when the
/// command changed nothing.
pub(crate) fn audited(token: TokenId, command: &Command, response: &Response) -> Option<Event> {
    let changed = match response {
        Response::Rejected(_) | Response::Done { changed: false } => false,
        Response::Submitted { duplicate, .. } => !duplicate,
        _ => true,
    };
    changed.then(|| Event::Audited {
        token,
        action: command.kind().to_string(),
        target: target(command, response),
    })
}

/// What a command changed, as an operator reads it: a pipeline or job id, a pool, a tenant,
/// a secret as `tenant/name`, a token id.
fn target(command: &Command, response: &Response) -> String {
    match (command, response) {
        (Command::SubmitPipeline { tenant, .. }, Response::Submitted { pipeline, .. }) => {
            format!("{tenant}/{pipeline}")
        }
        (Command::CancelPipeline { pipeline }, _) => pipeline.to_string(),
        (Command::CancelJob { job } | Command::ApproveJob { job, .. }, _) => job.to_string(),
        (Command::RegisterPool { spec }, _) => spec.name.clone(),
        (Command::SetPoolDraining { pool, .. } | Command::RemovePool { pool }, _) => pool.clone(),
        (Command::SetTenantQuota { tenant, .. }, _) => tenant.clone(),
        (Command::UpdateLimits { .. }, _) => "limits".to_string(),
        (Command::SetRetention { tenant, .. }, _) => tenant.clone().unwrap_or_else(|| "default".to_string()),
        (Command::CreateToken { .. }, Response::TokenCreated { id }) => id.to_string(),
        (Command::RevokeToken { id }, _) => id.to_string(),
        (Command::SetSecret { tenant, name, .. } | Command::DeleteSecret { tenant, name }, _) => {
            format!("{tenant}/{name}")
        }
        (Command::RotateDataKey { key }, _) => key.id.clone(),
        (Command::PutRepository { tenant, spec }, _) => format!("{tenant}/{}", spec.name),
        (Command::RemoveRepository { tenant, name }, _) => format!("{tenant}/{name}"),
        (Command::RecordDelivery { tenant, repository, .. }, _) => format!("{tenant}/{repository}"),
        (Command::PutSchedule { tenant, spec, .. }, _) => format!("{tenant}/{}", spec.name),
        (Command::RemoveSchedule { tenant, name }, _) => format!("{tenant}/{name}"),
        (Command::PutNotifier { tenant, spec }, _) => format!("{tenant}/{}", spec.name),
        (Command::RemoveNotifier { tenant, name }, _) => format!("{tenant}/{name}"),
        (Command::ClearCaches { tenant, key }, _) => format!("{tenant}/{}", key.as_deref().unwrap_or("*")),
        (Command::CreateJoinToken { .. }, _) => "join-token".to_string(),
        (Command::RedeemJoinToken { node, .. }, _) => format!("node {node}"),
        (other, _) => other.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobId, PipelineId, Rejection};

    #[test]
    fn only_changes_are_recorded_naming_what_changed() {
        let t = TokenId(4);
        let cancel = Command::CancelJob { job: JobId(12) };
        let done = Response::Done { changed: true };
        assert_eq!(
            audited(t, &cancel, &done),
            Some(Event::Audited {
                token: t,
                action: "cancel_job".into(),
                target: "j12".into()
            })
        );
        assert_eq!(audited(t, &cancel, &Response::Done { changed: false }), None);
        assert_eq!(
            audited(t, &cancel, &Response::Rejected(Rejection::UnknownJob(JobId(12)))),
            None
        );
        let submit = Command::SubmitPipeline {
            tenant: "web".into(),
            idempotency_key: None,
            spec: crate::PipelineSpec {
                name: "p".into(),
                jobs: Vec::new(),
            },
            source: None,
            rerun_of: None,
        };
        let submitted = |duplicate| Response::Submitted {
            pipeline: PipelineId(3),
            jobs: Vec::new(),
            duplicate,
        };
        assert!(
            matches!(audited(t, &submit, &submitted(false)), Some(Event::Audited { target, .. }) if target == "web/p3")
        );
        assert_eq!(audited(t, &submit, &submitted(true)), None);
    }
}
