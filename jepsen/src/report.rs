//! The run's report: `summary.json` (operation counts, faults, latency percentiles,
//! availability in each fault window, checker verdicts) and `timeline.svg` (latency of every
//! completed operation over time, fault windows shaded).

use crate::checker::Verdict;
use crate::history::{Op, OpType, pair};
use crate::nemesis::NEMESIS;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write;

/// A fault the nemesis did not inject (no leader to aim at, a membership an earlier fault left
/// short): its `start-` op carries `skipped` with the reason.
fn skipped(op: &Op) -> bool {
    op.value.get("skipped").is_some()
}

/// `(fault, node, start_ms, end_ms)` of each fault window; skipped faults have none.
pub fn windows(ops: &[Op]) -> Vec<(String, Option<u64>, f64, f64)> {
    let end = ops.last().map_or(0.0, |o| o.time_ms);
    let mut open: Vec<(String, Option<u64>, f64)> = Vec::new();
    let mut out = Vec::new();
    for op in ops.iter().filter(|o| o.process == NEMESIS && !skipped(o)) {
        if let Some(kind) = op.f.strip_prefix("start-") {
            open.push((kind.to_string(), op.node, op.time_ms));
        } else if let Some(kind) = op.f.strip_prefix("stop-")
            && let Some(i) = open.iter().position(|(k, _, _)| k == kind)
        {
            let (k, node, start) = open.remove(i);
            out.push((k, node, start, op.time_ms));
        }
    }
    out.extend(open.into_iter().map(|(k, node, start)| (k, node, start, end)));
    out
}

pub fn summary(ops: &[Op], verdicts: &[Verdict], config: Value) -> Value {
    let completed = pair(ops);
    let mut counts: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut latency: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for c in completed.iter().filter(|c| c.invoke.process != NEMESIS) {
        let kind = match c.done.kind {
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
            OpType::Invoke => "invoke",
        };
        *counts.entry(c.invoke.f.clone()).or_default().entry(kind).or_default() += 1;
        if c.done.kind == OpType::Ok {
            let h = latency
                .entry(c.invoke.f.clone())
                .or_insert_with(|| Histogram::new(3).expect("histogram"));
            let _ = h.record(((c.done.time_ms - c.invoke.time_ms) * 1000.0).max(1.0) as u64);
        }
    }
    let latency: BTreeMap<String, Value> = latency
        .into_iter()
        .map(|(f, h)| {
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            (f, json!({ "count": h.len(), "p50_ms": ms(0.5), "p95_ms": ms(0.95), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0 }))
        })
        .collect();
    let wins = windows(ops);
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for (kind, ..) in &wins {
        *faults.entry(kind.as_str()).or_default() += 1;
    }
    let mut skipped_faults: BTreeMap<&str, u64> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.process == NEMESIS && skipped(o)) {
        if let Some(kind) = op.f.strip_prefix("start-") {
            *skipped_faults.entry(kind).or_default() += 1;
        }
    }
    let availability: Vec<Value> = wins
        .iter()
        .map(|(kind, node, start, end)| {
            let inside: Vec<_> = completed.iter().filter(|c| c.invoke.process != NEMESIS && c.invoke.time_ms >= *start && c.invoke.time_ms < *end).collect();
            let ok = inside.iter().filter(|c| c.done.kind == OpType::Ok).count();
            let ratio = if inside.is_empty() { Value::Null } else { json!(ok as f64 / inside.len() as f64) };
            json!({ "fault": kind, "node": node, "start_ms": start, "end_ms": end, "ops": inside.len(), "ok": ok, "availability": ratio })
        })
        .collect();
    json!({
        "config": config,
        "valid": verdicts.iter().all(|v| v.valid),
        "ops": counts,
        "faults": faults,
        "skipped_faults": skipped_faults,
        "latency": latency,
        "availability": availability,
        "checkers": verdicts,
    })
}

/// A Markdown table of several runs' summaries: nodes, faults, seed, seconds, verdict, the
/// faults injected and skipped, acknowledged submissions, and the checkers that failed.
pub fn matrix_table(runs: &[(std::path::PathBuf, Value)]) -> String {
    let counts = |v: &Value| {
        let text: Vec<String> = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if text.is_empty() {
            "-".to_string()
        } else {
            text.join(", ")
        }
    };
    let mut out = String::from(
        "| run | nodes | faults | separate hosts | seed | s | verdict | injected | skipped | submissions ok | failed checkers |\n|---|---:|---|---|---:|---:|---|---|---|---:|---|\n",
    );
    for (dir, s) in runs {
        let c = &s["config"];
        let faults: Vec<&str> = c["faults"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let failed: Vec<&str> = s["checkers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v["valid"] != true)
            .filter_map(|v| v["checker"].as_str())
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            dir.file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            c["nodes"],
            faults.join(", "),
            if c["separate_hosts"] == true { "yes" } else { "no" },
            c["seed"],
            c["time_limit_s"],
            if s["valid"] == true { "VALID" } else { "INVALID" },
            counts(&s["faults"]),
            counts(&s["skipped_faults"]),
            s["ops"]["submit"]["ok"].as_u64().unwrap_or(0),
            if failed.is_empty() {
                "-".to_string()
            } else {
                failed.join(", ")
            },
        );
    }
    out
}

/// Latency (log scale) of each completed client operation against time; fault windows shaded.
pub fn timeline_svg(ops: &[Op]) -> String {
    let (w, h, left, bottom) = (1200.0, 500.0, 60.0, 40.0);
    let end = ops.last().map_or(1.0, |o| o.time_ms).max(1.0);
    let x = |t: f64| left + (t / end) * (w - left - 10.0);
    let (lo, hi) = (0.0f64, 5.0f64); // log10 of 1 ms .. 100 s
    let y = |ms: f64| {
        let l = ms.max(1.0).log10().clamp(lo, hi);
        (h - bottom) - (l - lo) / (hi - lo) * (h - bottom - 10.0)
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let colours = [
        ("kill", "#f4a6a6"),
        ("pause", "#a6c8f4"),
        ("partition", "#f4dfa6"),
        ("halves", "#d8a6f4"),
        ("restart-all", "#bbbbbb"),
        ("membership", "#a6f4c8"),
    ];
    for (kind, node, start, stop) in windows(ops) {
        let fill = colours.iter().find(|(k, _)| *k == kind).map_or("#dddddd", |(_, c)| c);
        let label = node.map_or(kind.clone(), |n| format!("{kind} n{n}"));
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="10" width="{:.1}" height="{:.1}" fill="{fill}" opacity="0.6"/><text x="{:.1}" y="22">{label}</text>"#,
            x(start),
            (x(stop) - x(start)).max(1.0),
            h - bottom - 10.0,
            x(start) + 2.0
        );
    }
    for c in pair(ops).into_iter().filter(|c| c.invoke.process != NEMESIS) {
        let colour = match c.done.kind {
            OpType::Ok => "#2a7a2a",
            OpType::Fail => "#c02020",
            _ => "#e08000",
        };
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{colour}"/>"#,
            x(c.invoke.time_ms),
            y(c.done.time_ms - c.invoke.time_ms)
        );
    }
    for decade in 0..=5 {
        let ms = 10f64.powi(decade);
        let label = if ms >= 1000.0 {
            format!("{} s", ms / 1000.0)
        } else {
            format!("{ms} ms")
        };
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#eeeeee"/><text x="4" y="{:.1}">{label}</text>"##,
            w - 10.0,
            y(ms),
            y(ms),
            y(ms) + 4.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{}">time (s) 0 .. {:.0}; green ok, red fail, orange unknown</text></svg>"#,
        h - 12.0,
        end / 1000.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_windows_pair_starts_and_stops() {
        let op = |f: &str, t: f64| Op {
            process: NEMESIS,
            kind: OpType::Info,
            f: f.into(),
            node: Some(2),
            value: Value::Null,
            time_ms: t,
        };
        let ops = vec![
            op("start-kill", 1.0),
            op("stop-kill", 5.0),
            op("start-pause", 7.0),
            op("stop-pause", 9.0),
        ];
        let w = windows(&ops);
        assert_eq!(
            w,
            vec![("kill".into(), Some(2), 1.0, 5.0), ("pause".into(), Some(2), 7.0, 9.0)]
        );
        let s = summary(&ops, &[], Value::Null);
        assert_eq!(s["faults"]["kill"], 1);
        assert!(timeline_svg(&ops).contains("kill n2"));
    }

    #[test]
    fn the_matrix_names_each_run_its_verdict_and_its_failed_checkers() {
        let summary = |valid: bool, failed: &str| {
            serde_json::json!({
                "config": { "nodes": 5, "faults": ["lost-disk-quorum"], "separate_hosts": false, "seed": 24, "time_limit_s": 40 },
                "valid": valid,
                "faults": { "lost-disk-quorum": 3 },
                "skipped_faults": {},
                "ops": { "submit": { "ok": 120 } },
                "checkers": [ { "checker": failed, "valid": valid }, { "checker": "replicas-identical", "valid": true } ],
            })
        };
        let table = matrix_table(&[
            ("r/5n-4".into(), summary(true, "acknowledged-submissions-kept")),
            ("r/5n-5".into(), summary(false, "acknowledged-submissions-kept")),
        ]);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(
            rows[0],
            "| 5n-4 | 5 | lost-disk-quorum | no | 24 | 40 | VALID | lost-disk-quorum 3 | - | 120 | - |"
        );
        assert_eq!(
            rows[1],
            "| 5n-5 | 5 | lost-disk-quorum | no | 24 | 40 | INVALID | lost-disk-quorum 3 | - | 120 | acknowledged-submissions-kept |"
        );
    }

    #[test]
    fn skipped_faults_are_counted_apart_and_have_no_window() {
        let op = |f: &str, value: Value, t: f64| Op {
            process: NEMESIS,
            kind: OpType::Info,
            f: f.into(),
            node: None,
            value,
            time_ms: t,
        };
        let ops = vec![
            op(
                "start-lost-disk",
                serde_json::json!({ "skipped": "membership not whole" }),
                1.0,
            ),
            op("stop-lost-disk", serde_json::json!({}), 5.0),
        ];
        assert!(windows(&ops).is_empty());
        let s = summary(&ops, &[], Value::Null);
        assert!(s["faults"].get("lost-disk").is_none());
        assert_eq!(s["skipped_faults"]["lost-disk"], 1);
    }
}
