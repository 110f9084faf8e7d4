//! Cache keys from a repository's files: a pipeline file's `cache.files` (lock files) are
//! looked up at the pipeline's commit when the file is read, and their contents' digest is
//! appended to the job's `cache.key`, so a job whose dependencies changed starts from a fresh
//! cache and every job of the same lock files shares one. Only the files' git object ids are
//! read (digests git already keeps), never their contents.

use flotilla_state_machine::PipelineSpec;
use sha2::{Digest, Sha256};

/// Hex digits of the files' digest appended to a key.
pub const KEY_DIGEST_HEX: usize = 16;

/// `key` with the digest of `files` (each path and its object id, `None` for a file the
/// commit lacks) appended: `key-<16 hex digits>`.
pub fn resolved_key(key: &str, files: &[(String, Option<String>)]) -> String {
    let mut h = Sha256::new();
    for (path, id) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(id.as_deref().unwrap_or("-").as_bytes());
        h.update([0]);
    }
    let digest = hex::encode(h.finalize());
    format!("{key}-{}", &digest[..KEY_DIGEST_HEX])
}

/// Every `(job index, path)` whose object id the spec's keys need, after checking the paths.
pub fn wanted(spec: &PipelineSpec) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::new();
    for (i, job) in spec.jobs.iter().enumerate() {
        let Some(cache) = job.cache.as_deref() else { continue };
        cache
            .validate_files(&|f| format!("jobs[{}].{f}", job.name))
            .map_err(|e| e.to_string())?;
        out.extend(cache.files.iter().map(|p| (i, p.to_string())));
    }
    Ok(out)
}

/// Puts the resolved keys in place in `spec` (and empties `cache.files`), given the object
/// id of each wanted path, in `wanted`'s order.
pub fn apply(spec: &mut PipelineSpec, ids: &[((usize, String), Option<String>)]) {
    for (i, job) in spec.jobs.iter_mut().enumerate() {
        let Some(cache) = job.cache.as_deref_mut() else {
            continue;
        };
        if cache.files.is_empty() {
            continue;
        }
        let files: Vec<(String, Option<String>)> = ids
            .iter()
            .filter(|((j, _), _)| *j == i)
            .map(|((_, path), id)| (path.clone(), id.clone()))
            .collect();
        cache.key = resolved_key(&cache.key, &files).into();
        cache.files.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(files: &[&str]) -> PipelineSpec {
        let yaml = format!(
            "name: p\njobs:\n  - name: build\n    steps: [make]\n    resources: {{cpu_millis: 100, memory_mib: 64}}\n    cache:\n      key: deps\n      files: [{}]\n      paths: [target]\n",
            files.join(", ")
        );
        serde_norway::from_str(&yaml).unwrap()
    }

    #[test]
    fn a_key_follows_the_contents_of_its_files() {
        let a = resolved_key("deps", &[("Cargo.lock".into(), Some("1111".into()))]);
        let b = resolved_key("deps", &[("Cargo.lock".into(), Some("2222".into()))]);
        let missing = resolved_key("deps", &[("Cargo.lock".into(), None)]);
        assert!(a.starts_with("deps-") && a.len() == "deps-".len() + KEY_DIGEST_HEX);
        assert_ne!(a, b);
        assert_ne!(a, missing);
        assert_eq!(a, resolved_key("deps", &[("Cargo.lock".into(), Some("1111".into()))]));
        // The same contents under another path are another key.
        assert_ne!(a, resolved_key("deps", &[("other.lock".into(), Some("1111".into()))]));
    }

    #[test]
    fn the_spec_gets_its_keys_and_loses_its_files() {
        let mut s = spec(&["Cargo.lock", "rust-toolchain"]);
        let wanted = wanted(&s).unwrap();
        assert_eq!(
            wanted,
            vec![(0, "Cargo.lock".to_string()), (0, "rust-toolchain".to_string())]
        );
        let ids: Vec<_> = wanted.into_iter().map(|w| (w, Some("ab".to_string()))).collect();
        apply(&mut s, &ids);
        let cache = s.jobs[0].cache.as_deref().unwrap();
        assert!(cache.files.is_empty());
        assert!(cache.key.starts_with("deps-"), "{}", cache.key);
        assert!(wanted_err(&["../etc/passwd"]).contains("jobs[build].cache.files[0]"));
    }

    fn wanted_err(files: &[&str]) -> String {
        wanted(&spec(files)).unwrap_err()
    }
}
