//! What the workspace's other REST clients share with the `flotilla` CLI (the load generators
//! of `bench/` read `--server` the same way), and the CLI's idempotency keys.

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

/// A fresh idempotency key for one invocation of the CLI: `cli-` and 32 random hex digits.
pub fn invocation_key() -> String {
    format!("cli-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn invocation_keys_are_distinct_and_fit_the_key_limit() {
        let (a, b) = (super::invocation_key(), super::invocation_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(a.starts_with("cli-") && a[4..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn server_lists_become_base_urls() {
        assert_eq!(
            super::server_urls(" 127.0.0.1:1, http://h:2/ ,,https://h:3"),
            vec!["http://127.0.0.1:1", "http://h:2", "https://h:3"]
        );
        assert!(super::server_urls(" , ").is_empty());
    }
}
