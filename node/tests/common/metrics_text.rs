//! Reading `/metrics` in tests: the OpenMetrics text parsed strictly, by series.

use super::Cluster;
use std::collections::BTreeMap;

/// Parses the text format strictly enough to catch malformed output: every sample line is
/// `name{labels} value` with a float value; `# TYPE`/`# HELP`/`# EOF` comments only.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("TYPE ")
                    || comment.starts_with("HELP ")
                    || comment.starts_with("UNIT ")
                    || comment == "EOF",
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

pub async fn scrape(c: &Cluster) -> BTreeMap<String, f64> {
    let r = c.http.get(c.node(1).url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    parse(&r.text().await.unwrap())
}
