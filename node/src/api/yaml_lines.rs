//! Finds the line of a pipeline file that a validation error's field path points at, so an
//! error in a YAML submission says where to look: `jobs[build].resources.cpu_millis` → line 9.
//!
//! Validation works on the parsed spec and knows nothing of lines; this module parses the
//! source again into a tree of nodes carrying their line (yaml-rust2's marked events) and
//! follows the path through it. `jobs[<name>]` selects the job with that name, and a job made
//! by matrix expansion leads back to the job that declares the matrix. Field names may be
//! written in the file with their short aliases (`script` for `steps`, `timeout` for
//! `timeout_ms`...). If the path cannot be followed to the end, the deepest node reached
//! gives the line.

use std::collections::BTreeMap;
use yaml_rust2::Event;
use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Debug)]
enum Node {
    Scalar(String),
    Seq(Vec<(usize, Node)>),
    Map(Vec<(String, usize, Node)>),
}

/// An open collection while the tree is built: (line, node, the map key waiting for its value
/// with the key's line).
type OpenCollection = (usize, Node, Option<(String, usize)>);

/// Builds the document's tree from parser events; every node keeps its 1-based line.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<OpenCollection>,
    root: Option<(usize, Node)>,
}

impl TreeBuilder {
    fn push_value(&mut self, line: usize, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some((line, node)),
            Some((_, Node::Seq(items), _)) => items.push((line, node)),
            Some((_, Node::Map(entries), pending)) => match pending.take() {
                Some((key, key_line)) => entries.push((key, key_line, node)),
                None => {
                    // A key; only scalar keys can be named by a field path.
                    let key = match node {
                        Node::Scalar(s) => s,
                        _ => String::new(),
                    };
                    *pending = Some((key, line));
                }
            },
            Some((_, Node::Scalar(_), _)) => {}
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => self.push_value(line, Node::Scalar(value)),
            Event::SequenceStart(..) => self.stack.push((line, Node::Seq(Vec::new()), None)),
            Event::MappingStart(..) => self.stack.push((line, Node::Map(Vec::new()), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((line, node, _)) = self.stack.pop() {
                    self.push_value(line, node);
                }
            }
            Event::Alias(_) => self.push_value(line, Node::Scalar(String::new())),
            _ => {}
        }
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Named(String),
}

/// `jobs[build].env.A_B` → `[Key(jobs), Named(build), Key(env), Key(A_B)]`.
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        if end > 0 {
            out.push(Step::Key(rest[..end].to_string()));
        }
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').unwrap_or(after.len());
            let inner = &after[..close];
            out.push(
                inner
                    .parse()
                    .map_or_else(|_| Step::Named(inner.to_string()), Step::Index),
            );
            rest = after.get(close + 1..).unwrap_or("");
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    out
}

/// The names a field may have in a file.
fn spellings(key: &str) -> &[&str] {
    match key {
        "steps" => &["steps", "script"],
        "constraints" => &["constraints", "labels"],
        "timeout_ms" => &["timeout_ms", "timeout"],
        "max_retries" => &["max_retries", "max"],
        "backoff_base_ms" => &["backoff_base_ms", "backoff"],
        "backoff_max_ms" => &["backoff_max_ms", "max_backoff"],
        _ => &[],
    }
}

fn entry<'a>(entries: &'a [(String, usize, Node)], key: &str) -> Option<(usize, &'a Node)> {
    let names = spellings(key);
    entries
        .iter()
        .find(|(k, _, _)| k == key || names.contains(&k.as_str()))
        // A key's own line, not its value's: a block value starts on the next line.
        .map(|(_, line, node)| (*line, node))
}

fn named<'a>(items: &'a [(usize, Node)], name: &str) -> Option<(usize, &'a Node)> {
    items
        .iter()
        .find(|(_, n)| matches!(n, Node::Map(e) if e.iter().any(|(k, _, v)| k == "name" && matches!(v, Node::Scalar(s) if s == name))))
        .map(|(line, node)| (*line, node))
}

/// The line `field` points at in `source`; `origin` maps matrix-expanded job names back to
/// the job that declared them.
pub fn line_of(source: &str, field: &str, origin: &BTreeMap<String, String>) -> Option<usize> {
    let mut builder = TreeBuilder::default();
    Parser::new_from_str(source).load(&mut builder, false).ok()?;
    let (mut line, root) = builder.root?;
    let mut node = &root;
    for step in steps(field) {
        let next = match (&step, node) {
            (Step::Key(k), Node::Map(entries)) => entry(entries, k),
            (Step::Index(i), Node::Seq(items)) => items.get(*i).map(|(l, n)| (*l, n)),
            (Step::Named(name), Node::Seq(items)) => named(items, name).or_else(|| named(items, origin.get(name)?)),
            _ => None,
        };
        match next {
            Some((l, n)) => (line, node) = (l, n),
            None => break,
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "name: demo
jobs:
  - name: build
    script:
      - make
      - make test
    resources:
      cpu_millis: 0
      memory_mib: 64
  - name: test
    matrix:
      os: [linux, '']
    timeout: 10m
    resources: { cpu_millis: 100, memory_mib: 64 }
";

    #[test]
    fn paths_lead_to_their_lines() {
        let none = BTreeMap::new();
        assert_eq!(line_of(FILE, "name", &none), Some(1));
        assert_eq!(line_of(FILE, "jobs[build].resources.cpu_millis", &none), Some(8));
        assert_eq!(
            line_of(FILE, "jobs[build].steps[1]", &none),
            Some(6),
            "aliases are followed"
        );
        assert_eq!(line_of(FILE, "jobs[1].name", &none), Some(10));
        assert_eq!(line_of(FILE, "jobs[test].matrix.os[1]", &none), Some(12));
        assert_eq!(line_of(FILE, "jobs[test].timeout_ms", &none), Some(13));
        assert_eq!(line_of(FILE, "jobs[test].resources.memory_mib", &none), Some(14));
        let origin = BTreeMap::from([("test-linux".to_string(), "test".to_string())]);
        assert_eq!(
            line_of(FILE, "jobs[test-linux].resources.cpu_millis", &origin),
            Some(14),
            "expanded jobs lead to their declaration"
        );
        assert_eq!(
            line_of(FILE, "jobs[build].needs", &none),
            Some(3),
            "a missing field points at its job"
        );
        assert_eq!(line_of("a: [", "a", &none), None, "unparsable text has no lines");
    }

    #[test]
    fn field_paths_split_into_steps() {
        assert_eq!(
            steps("jobs[build].env.A_B"),
            vec![
                Step::Key("jobs".into()),
                Step::Named("build".into()),
                Step::Key("env".into()),
                Step::Key("A_B".into())
            ]
        );
        assert_eq!(
            steps("jobs[2].steps[0]"),
            vec![
                Step::Key("jobs".into()),
                Step::Index(2),
                Step::Key("steps".into()),
                Step::Index(0)
            ]
        );
    }
}
