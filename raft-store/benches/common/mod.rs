//! What the memory benches share: log entries, the process's resident memory, arguments, and
//! running one mode in a fresh process (so no mode inherits another's heap).

#![allow(dead_code)]

use flotilla_raft_store::{Entry, LogId};
use flotilla_state_machine::{Command, Proposal};
use openraft::EntryPayload;
use openraft::impls::leader_id_adv::LeaderId;

pub fn entry(index: u64, command: Command) -> Entry {
    Entry {
        log_id: LogId {
            leader_id: LeaderId { term: 1, node_id: 1 },
            index,
        },
        payload: EntryPayload::Normal(Proposal::new(1_000 + index, command)),
    }
}

pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The number after `name` in `args`, else `default`.
pub fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse().unwrap_or_else(|_| panic!("{name} takes a number"))
        })
}

/// Runs this bench again as `--mode mode` with `flags` (name and number), in a fresh
/// process, and returns the fields of the `result` line it prints.
pub fn child(mode: &str, flags: &[(&str, u64)]) -> Vec<(String, f64)> {
    let exe = std::env::current_exe().expect("current exe");
    let mut args = vec!["--mode".to_string(), mode.to_string()];
    for (name, value) in flags {
        args.push((*name).to_string());
        args.push(value.to_string());
    }
    let out = std::process::Command::new(exe)
        .args(&args)
        .output()
        .expect("run a child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{mode} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("result "))
        .unwrap_or_else(|| panic!("{mode} printed no result: {text}"));
    line.split_whitespace()
        .skip(2)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().expect("a number")))
        .collect()
}

pub fn field(fields: &[(String, f64)], name: &str) -> f64 {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v).expect("field")
}
