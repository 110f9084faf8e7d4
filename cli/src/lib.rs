//! What the workspace's other REST clients share with the `flotilla` CLI (the load generators
//! of `bench/` read `--server` the same way).

/// A `--server` list (comma-separated `host:port` or URLs) as base URLs, in order: `http://`
/// where no scheme is given, no trailing slash, empty items skipped.
pub fn server_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with("http") {
                s.trim_end_matches('/').to_string()
            } else {
                format!("http://{s}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_lists_become_base_urls() {
        assert_eq!(
            super::server_urls(" 127.0.0.1:1, http://h:2/ ,,https://h:3"),
            vec!["http://127.0.0.1:1", "http://h:2", "https://h:3"]
        );
        assert!(super::server_urls(" , ").is_empty());
    }
}
