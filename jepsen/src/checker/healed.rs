//! After the faults end, the cluster recovers: it elects a leader, its membership is made whole
//! again, and every acknowledged pipeline finishes. Every fault the harness injects is one a
//! correct cluster survives, so one that leaves it unable to recover is a violation, reported
//! here while the other checkers still judge the nodes that answer.

use super::Verdict;

/// `problems`: what the heal phase could not restore, in the order it met them.
pub fn check(problems: &[String]) -> Verdict {
    Verdict::new(
        "cluster-healed",
        problems.to_vec(),
        serde_json::json!({ "steps": ["leader", "membership", "acknowledged pipelines finished"] }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heal_that_could_not_restore_the_membership_is_a_violation() {
        assert!(check(&[]).valid);
        let v = check(&["could not restore the membership after healing: removing node 3 timed out".into()]);
        assert!(!v.valid);
        assert_eq!(v.checker, "cluster-healed");
        assert!(v.details["violations"][0].as_str().unwrap().contains("node 3"));
    }
}
