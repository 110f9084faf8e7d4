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

/// Which of an attempt's two grants: the source grant opens what the attempt downloads (its
/// source, cache and inputs), the upload grant what it sends back; each is signed under its
/// own label, so neither opens what the other does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Source,
    Upload,
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::Source => "source",
            Scope::Upload => "upload",
        }
    }
}

/// What a grant of `scope` signs: the attempt and its fencing token.
fn message(scope: Scope, job: JobId, attempt: u32, fencing: FencingToken) -> String {
    format!(
        "flotilla-{}-grant-v1 job={} attempt={attempt} term={} index={}",
        scope.label(),
        job.0,
        fencing.term,
        fencing.log_index
    )
}

/// The grant of `scope` of assignment `a`'s attempt.
pub fn sign(keyring: &Keyring, scope: Scope, a: &Assignment) -> SecretValue {
    SecretValue::new(keyring.sign_grant(message(scope, a.job, a.attempt, a.fencing).as_bytes()))
}

/// Whether `presented` is the grant of `scope` of `a`'s attempt.
pub fn opens(keyring: &Keyring, scope: Scope, a: &Assignment, presented: &str) -> bool {
    keyring.verify_grant(message(scope, a.job, a.attempt, a.fencing).as_bytes(), presented)
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
        let grant = sign(&ring, Scope::Source, &a);
        assert!(opens(&ring, Scope::Source, &a, grant.expose()));
        for other in [
            assignment(8, 2, 3, 40),
            assignment(7, 3, 3, 40),
            assignment(7, 2, 4, 40),
            assignment(7, 2, 3, 41),
        ] {
            assert!(!opens(&ring, Scope::Source, &other, grant.expose()), "{other:?}");
        }
        assert!(!opens(&Keyring::new(&[[8; 32]]), Scope::Source, &a, grant.expose()));
        let upload = sign(&ring, Scope::Upload, &a);
        assert!(opens(&ring, Scope::Upload, &a, upload.expose()));
        assert!(
            !opens(&ring, Scope::Upload, &a, grant.expose()),
            "a source grant uploads nothing"
        );
        assert!(
            !opens(&ring, Scope::Source, &a, upload.expose()),
            "an upload grant reads nothing"
        );
        assert!(!opens(&ring, Scope::Upload, &assignment(7, 3, 3, 40), upload.expose()));
        assert_eq!(source_path(JobId(7), 2), "/v1/jobs/7/attempts/2/source");
    }
}
