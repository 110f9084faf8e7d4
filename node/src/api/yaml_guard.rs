//! A bounded first pass over a YAML body, before serde sees it.
//!
//! Two YAML features make a small body expensive: aliases (a 67 KB file whose steps are
//! aliases of one 64 KiB anchored string became an 84 MB pipeline) and nesting (a 200 KB
//! body nested 100,000 deep took up to 90 s to refuse, because the deserializer's work grows
//! faster than linearly with depth). This pass reads the body's events with yaml-rust2's
//! parser, which keeps its own stack instead of recursing, and stops at the first bound it
//! passes: nesting deeper than `max_depth`, more than `max_events` events, or a document that
//! would expand, with every alias replaced by what it names, to more than `max_expanded_bytes`.
//! Only a body that passes is deserialized, so the deserializer's cost is bounded too.

use yaml_rust2::Event;
use yaml_rust2::parser::Parser;

/// Bounds of the first pass.
#[derive(Clone, Copy, Debug)]
pub struct YamlBounds {
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most parser events (scalars, aliases, collection starts and ends) in one body.
    pub max_events: usize,
    /// Largest size of the document with every alias expanded, counting each scalar's bytes
    /// plus `NODE_OVERHEAD_BYTES` per node.
    pub max_expanded_bytes: u64,
}

impl YamlBounds {
    pub const DEFAULT: YamlBounds = YamlBounds {
        max_depth: 64,
        max_events: 1_000_000,
        max_expanded_bytes: 4 * 1024 * 1024,
    };
}

/// What each node adds to the expanded size beside its scalar bytes.
const NODE_OVERHEAD_BYTES: u64 = 16;

/// Why a body was refused, with the 1-based line where the pass stopped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum YamlGuardError {
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
    #[error("line {line}: nested deeper than {max} levels")]
    TooDeep { line: usize, max: usize },
    #[error("line {line}: more than {max} YAML nodes")]
    TooManyNodes { line: usize, max: usize },
    #[error("line {line}: with its aliases expanded the document takes more than {max} bytes")]
    ExpandsTooFar { line: usize, max: u64 },
}

impl YamlGuardError {
    pub fn line(&self) -> usize {
        match self {
            YamlGuardError::Malformed { line, .. }
            | YamlGuardError::TooDeep { line, .. }
            | YamlGuardError::TooManyNodes { line, .. }
            | YamlGuardError::ExpandsTooFar { line, .. } => *line,
        }
    }
}

/// Checks `text` against `bounds`; returns the expanded size in bytes when it passes.
pub fn check(text: &str, bounds: &YamlBounds) -> Result<u64, YamlGuardError> {
    let mut parser = Parser::new_from_str(text);
    // Expanded size of each anchored node, by anchor id (ids are small and dense).
    let mut anchors: Vec<u64> = Vec::new();
    // Open collections: (anchor id, expanded size so far).
    let mut open: Vec<(usize, u64)> = Vec::new();
    let mut total: u64 = 0;
    for _ in 0..=bounds.max_events {
        let (event, mark) = parser.next_token().map_err(|e| {
            let line = e.marker().line();
            // The scanner keeps its own bound on nesting too (flow collections, block scalars).
            if e.info().contains("recursion limit") {
                YamlGuardError::TooDeep {
                    line,
                    max: bounds.max_depth,
                }
            } else {
                YamlGuardError::Malformed {
                    line,
                    message: e.info().to_string(),
                }
            }
        })?;
        let line = mark.line();
        let done = |size: u64, anchor: usize, anchors: &mut Vec<u64>| {
            if anchor > 0 {
                if anchors.len() <= anchor {
                    anchors.resize(anchor + 1, 0);
                }
                anchors[anchor] = size;
            }
            size
        };
        let finished = match event {
            Event::StreamEnd => return Ok(total),
            Event::Nothing | Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => None,
            Event::Scalar(value, _, anchor, _) => {
                Some(done(NODE_OVERHEAD_BYTES + value.len() as u64, anchor, &mut anchors))
            }
            Event::Alias(anchor) => Some(anchors.get(anchor).copied().unwrap_or(NODE_OVERHEAD_BYTES)),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() >= bounds.max_depth {
                    return Err(YamlGuardError::TooDeep {
                        line,
                        max: bounds.max_depth,
                    });
                }
                open.push((anchor, NODE_OVERHEAD_BYTES));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => open.pop().map(|(anchor, size)| done(size, anchor, &mut anchors)),
        };
        if let Some(size) = finished {
            let sum = match open.last_mut() {
                Some((_, parent)) => {
                    *parent = parent.saturating_add(size);
                    *parent
                }
                None => {
                    total = total.saturating_add(size);
                    total
                }
            };
            // A collection's size only grows until it ends, so a partial sum past the bound
            // already decides.
            if sum > bounds.max_expanded_bytes || total > bounds.max_expanded_bytes {
                return Err(YamlGuardError::ExpandsTooFar {
                    line,
                    max: bounds.max_expanded_bytes,
                });
            }
        }
    }
    Err(YamlGuardError::TooManyNodes {
        line: parser_line(text),
        max: bounds.max_events,
    })
}

/// The last line of `text`, for a refusal that has no better place to point at.
fn parser_line(text: &str) -> usize {
    text.lines().count().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_pipeline_passes_with_its_size() {
        let text = "name: p\njobs:\n  - name: a\n    script: [echo hi]\n";
        let size = check(text, &YamlBounds::DEFAULT).unwrap();
        assert!(size > 20 && size < 400, "{size}");
    }

    #[test]
    fn an_alias_bomb_is_refused_before_deserializing() {
        // The review's shape: one 64 KiB anchored string, aliased in many steps.
        let mut text = format!(
            "name: p\nanchor: &big {}\njobs:\n  - name: a\n    script:\n",
            "x".repeat(64 * 1024)
        );
        for _ in 0..1000 {
            text.push_str("      - *big\n");
        }
        let err = check(&text, &YamlBounds::DEFAULT).unwrap_err();
        assert!(matches!(err, YamlGuardError::ExpandsTooFar { .. }), "{err}");
        // The classic billion laughs: each level aliases the one before ten times.
        let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            laughs.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert!(matches!(
            check(&laughs, &YamlBounds::DEFAULT),
            Err(YamlGuardError::ExpandsTooFar { .. })
        ));
    }

    #[test]
    fn a_few_aliases_within_the_bound_pass() {
        let text = "defaults: &d {cpu_millis: 100, memory_mib: 64}\njobs:\n  - resources: *d\n  - resources: *d\n";
        assert!(check(text, &YamlBounds::DEFAULT).is_ok());
    }

    #[test]
    fn deep_nesting_stops_at_the_bound_quickly() {
        let indented: String = (0..100)
            .map(|i| format!("{}a:\n", " ".repeat(2 * i)))
            .collect::<String>()
            + &" ".repeat(200)
            + "x";
        for text in [
            "[".repeat(100_000),
            "- ".repeat(100_000) + "x",
            "{a: ".repeat(100_000),
            indented,
        ] {
            let err = check(&text, &YamlBounds::DEFAULT).unwrap_err();
            assert!(matches!(err, YamlGuardError::TooDeep { max: 64, .. }), "{err}");
        }
        let ok = "[".repeat(60) + &"]".repeat(60);
        assert!(check(&ok, &YamlBounds::DEFAULT).is_ok());
    }

    #[test]
    fn too_many_nodes_and_malformed_text_are_refused() {
        let bounds = YamlBounds {
            max_events: 100,
            ..YamlBounds::DEFAULT
        };
        let text = format!("[{}]", vec!["1"; 200].join(", "));
        assert!(matches!(
            check(&text, &bounds),
            Err(YamlGuardError::TooManyNodes { .. })
        ));
        assert!(matches!(
            check("a: [1, 2\nb: }", &YamlBounds::DEFAULT),
            Err(YamlGuardError::Malformed { .. })
        ));
    }
}
