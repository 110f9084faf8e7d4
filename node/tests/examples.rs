//! Every example pipeline, and the example in docs/pipeline.md, parses and validates.

use flotilla_state_machine::{Limits, PipelineSpec};
use std::path::Path;

fn check(what: &str, spec: PipelineSpec) {
    let expanded = spec
        .expand_matrix(&Limits::DEFAULT)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    expanded
        .spec
        .validate(&Limits::DEFAULT)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

#[test]
fn example_pipelines_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let spec: PipelineSpec = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml") => serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            Some("json") => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            _ => continue,
        };
        check(&path.display().to_string(), spec);
        seen += 1;
    }
    assert!(seen >= 4, "only {seen} examples found in {}", dir.display());
}

#[test]
fn the_documented_pipeline_is_valid() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pipeline.md")).unwrap();
    let start = doc
        .find("```yaml\nname:")
        .expect("a full pipeline example in docs/pipeline.md")
        + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let spec: PipelineSpec = serde_norway::from_str(&doc[start..end]).unwrap();
    assert_eq!(spec.jobs.len(), 2);
    assert_eq!(spec.jobs[0].timeout_ms, 30 * 60 * 1000);
    check("docs/pipeline.md", spec);
}
