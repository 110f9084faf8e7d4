//! Checkers: each reads the history (and what was collected after healing) and says whether a
//! promise held. Every one has a test that feeds it a violation and sees it fail.

pub mod acknowledged;
pub mod capacity;
pub mod convergence;
pub mod exactly_once;
pub mod healed;
pub mod linearizable;
pub mod monotonic_reads;
pub mod one_pipeline;
pub mod orphans;
pub mod poison;
pub mod stamped_time;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub checker: &'static str,
    pub valid: bool,
    /// What was checked (counts) and, when invalid, the first violations found.
    pub details: serde_json::Value,
}

impl Verdict {
    pub fn new(checker: &'static str, problems: Vec<String>, checked: serde_json::Value) -> Verdict {
        let valid = problems.is_empty();
        let shown: Vec<String> = problems.into_iter().take(20).collect();
        Verdict {
            checker,
            valid,
            details: serde_json::json!({ "checked": checked, "violations": shown }),
        }
    }
}
