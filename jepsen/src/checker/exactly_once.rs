//! No job ran twice, and every job that succeeded ran. Each job's script appends its id to a
//! marker file; jobs are submitted without retries, so a job id may appear at most once.

use super::Verdict;
use std::collections::BTreeMap;

/// `markers`: job id → lines in the marker file; `final_states`: job id → state after healing.
pub fn check(markers: &BTreeMap<u64, u32>, final_states: &BTreeMap<u64, String>) -> Verdict {
    let mut problems = Vec::new();
    for (job, count) in markers {
        if *count > 1 {
            problems.push(format!("job {job} ran {count} times"));
        }
    }
    for (job, state) in final_states {
        if state == "SUCCEEDED" && !markers.contains_key(job) {
            problems.push(format!("job {job} SUCCEEDED without running"));
        }
    }
    let succeeded = final_states.values().filter(|s| *s == "SUCCEEDED").count();
    if !final_states.is_empty() && succeeded == 0 {
        problems.push(format!(
            "none of {} jobs succeeded: the run did not exercise execution",
            final_states.len()
        ));
    }
    let ran: u32 = markers.values().sum();
    Verdict::new(
        "no-job-run-twice",
        problems,
        serde_json::json!({ "markers": ran, "jobs": final_states.len() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_double_run_and_a_phantom_success_are_caught() {
        let states = BTreeMap::from([(1, "SUCCEEDED".to_string()), (2, "SUCCEEDED".to_string())]);
        assert!(check(&BTreeMap::from([(1, 1), (2, 1)]), &states).valid);
        assert!(!check(&BTreeMap::from([(1, 2), (2, 1)]), &states).valid);
        assert!(!check(&BTreeMap::from([(1, 1)]), &states).valid);
    }

    #[test]
    fn a_run_where_nothing_succeeded_proves_nothing_and_fails() {
        let states = BTreeMap::from([(1, "FAILED".to_string()), (2, "CANCELLED".to_string())]);
        assert!(!check(&BTreeMap::new(), &states).valid);
    }
}
