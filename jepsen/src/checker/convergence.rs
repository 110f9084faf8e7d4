//! After healing, every node holds the same state: at the same applied index, the same digest.

use super::Verdict;
use std::collections::BTreeMap;

/// `digests`: node → (applied index, state digest), read once the cluster is quiet.
pub fn check(digests: &BTreeMap<u64, (u64, String)>) -> Verdict {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<&(u64, String), Vec<u64>> = BTreeMap::new();
    for (node, d) in digests {
        seen.entry(d).or_default().push(*node);
    }
    if seen.len() > 1 {
        problems.push(format!(
            "nodes disagree: {:?}",
            seen.iter()
                .map(|((i, d), n)| format!("nodes {n:?} at {i}: {d}"))
                .collect::<Vec<_>>()
        ));
    }
    if digests.is_empty() {
        problems.push("no node could be read after healing".into());
    }
    Verdict::new(
        "replicas-identical",
        problems,
        serde_json::json!({ "nodes": digests.len() }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_replicas_are_caught() {
        let same = BTreeMap::from([(1, (9, "ab".to_string())), (2, (9, "ab".to_string()))]);
        assert!(check(&same).valid);
        let differ = BTreeMap::from([(1, (9, "ab".to_string())), (2, (9, "cd".to_string()))]);
        assert!(!check(&differ).valid);
        let behind = BTreeMap::from([(1, (9, "ab".to_string())), (2, (8, "ab".to_string()))]);
        assert!(!check(&behind).valid);
    }
}
