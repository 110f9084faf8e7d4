//! No pool is ever oversubscribed: in every pool listing read from any node during the run,
//! allocated resources stay within capacity and live workers within `max_workers`.

use super::Verdict;
use crate::history::{Op, OpType, pair};

pub fn check(ops: &[Op]) -> Verdict {
    let mut problems = Vec::new();
    let mut samples = 0;
    for c in pair(ops)
        .into_iter()
        .filter(|c| c.invoke.f == "pools" && c.done.kind == OpType::Ok)
    {
        for pool in c.done.value["items"].as_array().into_iter().flatten() {
            samples += 1;
            let name = pool["spec"]["name"].as_str().unwrap_or("?");
            for dim in ["cpu_millis", "memory_mib", "gpus"] {
                let (used, cap) = (
                    pool["allocated"][dim].as_u64().unwrap_or(0),
                    pool["spec"]["capacity"][dim].as_u64().unwrap_or(0),
                );
                if used > cap {
                    problems.push(format!(
                        "{:.0} ms, node {:?}: pool {name} has {used} {dim} allocated of {cap}",
                        c.done.time_ms, c.done.node
                    ));
                }
            }
            let (workers, max) = (
                pool["workers"].as_u64().unwrap_or(0),
                pool["spec"]["max_workers"].as_u64().unwrap_or(0),
            );
            if workers > max {
                problems.push(format!(
                    "{:.0} ms, node {:?}: pool {name} has {workers} workers of {max}",
                    c.done.time_ms, c.done.node
                ));
            }
        }
    }
    Verdict::new(
        "no-pool-oversubscribed",
        problems,
        serde_json::json!({ "pool_samples": samples }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(workers: u64, cpu: u64) -> Vec<Op> {
        let pool = json!({ "spec": { "name": "p", "capacity": { "cpu_millis": 1000, "memory_mib": 100, "gpus": 0 }, "max_workers": 2 },
                           "allocated": { "cpu_millis": cpu, "memory_mib": 10, "gpus": 0 }, "workers": workers });
        vec![
            Op {
                process: 1,
                kind: OpType::Invoke,
                f: "pools".into(),
                node: Some(1),
                value: json!(null),
                time_ms: 0.0,
            },
            Op {
                process: 1,
                kind: OpType::Ok,
                f: "pools".into(),
                node: Some(1),
                value: json!({ "items": [pool] }),
                time_ms: 1.0,
            },
        ]
    }

    #[test]
    fn over_capacity_and_over_max_workers_are_caught() {
        assert!(check(&listing(2, 1000)).valid);
        assert!(!check(&listing(3, 100)).valid);
        assert!(!check(&listing(1, 1001)).valid);
    }
}
