//! No orphaned worker after healing: the process provider's work directory holds no worker
//! and no worker process runs.

use super::Verdict;

pub fn check(worker_dirs: &[String], worker_processes: &[String]) -> Verdict {
    let mut problems: Vec<String> = worker_dirs
        .iter()
        .map(|d| format!("worker directory left: {d}"))
        .collect();
    problems.extend(worker_processes.iter().map(|p| format!("worker process left: {p}")));
    Verdict::new(
        "no-orphaned-worker",
        problems,
        serde_json::json!({ "dirs": worker_dirs.len(), "processes": worker_processes.len() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_worker_is_caught() {
        assert!(check(&[], &[]).valid);
        assert!(!check(&["j1-a1".into()], &[]).valid);
        assert!(!check(&[], &["1234 sh run.sh".into()]).valid);
    }
}
