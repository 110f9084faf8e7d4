//! Source grants: how a worker that cannot read the leader's disk (a Kubernetes pod) gets its
//! checkout. The leader signs, for one attempt, a grant naming the job, the attempt and the
//! assignment's fencing token; the pod's source container presents it to
//! `GET /v1/jobs/{id}/attempts/{attempt}/source` on any node, which checks it against the
//! state: the grant opens that attempt's source while the attempt is the job's live one, and
//! nothing else, ever.
//!
//! Why a signature rather than a token in the state: no command per attempt (a grant costs
//! no Raft entry), nothing to expire or clean up (the assignment's end is the grant's), and
//! no credential in the replicated state or its snapshots. The key is derived from the nodes'
//! `--secrets-key-file` (`Keyring::sign_grant`), which every node of a cluster holds.

use crate::secrets::Keyring;
use flotilla_providers::SecretValue;
use flotilla_state_machine::{Assignment, FencingToken, JobId};

/// What a source grant signs: the attempt and its fencing token.
fn message(job: JobId, attempt: u32, fencing: FencingToken) -> String {
    format!(
        "flotilla-source-grant-v1 job={} attempt={attempt} term={} index={}",
        job.0, fencing.term, fencing.log_index
    )
}

/// What an upload grant signs: the same attempt under another label, so that neither grant
/// opens what the other does.
fn upload_message(job: JobId, attempt: u32, fencing: FencingToken) -> String {
    format!(
        "flotilla-upload-grant-v1 job={} attempt={attempt} term={} index={}",
        job.0, fencing.term, fencing.log_index
    )
}

/// The upload grant of assignment `a`'s attempt: it opens the attempt's uploads alone.
pub fn sign_upload(keyring: &Keyring, a: &Assignment) -> SecretValue {
    SecretValue::new(keyring.sign_grant(upload_message(a.job, a.attempt, a.fencing).as_bytes()))
}

/// Whether `presented` is the upload grant of `a`'s attempt.
pub fn opens_upload(keyring: &Keyring, a: &Assignment, presented: &str) -> bool {
    keyring.verify_grant(upload_message(a.job, a.attempt, a.fencing).as_bytes(), presented)
}

/// The grant of assignment `a`'s attempt.
pub fn sign(keyring: &Keyring, a: &Assignment) -> SecretValue {
    SecretValue::new(keyring.sign_grant(message(a.job, a.attempt, a.fencing).as_bytes()))
}

/// Whether `presented` is the grant of `a`'s attempt.
pub fn opens(keyring: &Keyring, a: &Assignment, presented: &str) -> bool {
    keyring.verify_grant(message(a.job, a.attempt, a.fencing).as_bytes(), presented)
}

/// The path of attempt `attempt` of `job`'s source on a node's API.
pub fn source_path(job: JobId, attempt: u32) -> String {
    format!("/v1/jobs/{}/attempts/{attempt}/source", job.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(job: u64, attempt: u32, term: u64, log_index: u64) -> Assignment {
        Assignment {
            job: JobId(job),
            attempt,
            pool: "pods".into(),
            tenant: "default".into(),
            resources: flotilla_state_machine::Resources::new(100, 64, 0),
            fencing: FencingToken { term, log_index },
            worker_id: None,
            releasing: false,
            created_at_ms: 0,
            worker_host: None,
        }
    }

    #[test]
    fn a_grant_opens_its_own_attempt_and_no_other() {
        let ring = Keyring::new(&[[7; 32]]);
        let a = assignment(7, 2, 3, 40);
        let grant = sign(&ring, &a);
        assert!(opens(&ring, &a, grant.expose()));
        for other in [
            assignment(8, 2, 3, 40),
            assignment(7, 3, 3, 40),
            assignment(7, 2, 4, 40),
            assignment(7, 2, 3, 41),
        ] {
            assert!(!opens(&ring, &other, grant.expose()), "{other:?}");
        }
        assert!(!opens(&Keyring::new(&[[8; 32]]), &a, grant.expose()));
        let upload = sign_upload(&ring, &a);
        assert!(opens_upload(&ring, &a, upload.expose()));
        assert!(
            !opens_upload(&ring, &a, grant.expose()),
            "a source grant uploads nothing"
        );
        assert!(!opens(&ring, &a, upload.expose()), "an upload grant reads nothing");
        assert!(!opens_upload(&ring, &assignment(7, 3, 3, 40), upload.expose()));
        assert_eq!(source_path(JobId(7), 2), "/v1/jobs/7/attempts/2/source");
    }
}
