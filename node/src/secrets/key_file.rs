//! The key-encryption keys a node reads from `--secrets-key-file`: one key per line (`fsk_`
//! and 64 hex digits, `flotilla secret generate-key` makes one), the first wrapping new data
//! keys, the others only unwrapping old ones (what a rotation needs for a while). Blank lines
//! and lines starting with `#` are skipped. The file holds what decrypts every secret, so one
//! that every user may read is refused.

use std::path::Path;

/// The prefix that marks a key-encryption key.
pub const KEK_PREFIX: &str = "fsk_";
/// Most keys one file may hold.
pub const MAX_KEYS_PER_FILE: usize = 8;
/// Largest key file read.
pub const MAX_KEY_FILE_BYTES: u64 = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a key file (a regular file of at most {MAX_KEY_FILE_BYTES} bytes)")]
    NotAKeyFile { path: String },
    #[error("{path}: mode {mode:03o} lets every user of this host read the keys of every secret; chmod 600 it")]
    Readable { path: String, mode: u32 },
    #[error("{path}: line {line} is not a key (`{KEK_PREFIX}` and 64 lowercase hex digits)")]
    BadLine { path: String, line: usize },
    #[error("{path}: holds no key")]
    Empty { path: String },
    #[error("{path}: holds {count} keys, more than {MAX_KEYS_PER_FILE}")]
    TooMany { path: String, count: usize },
}

/// Reads the keys of `path`, the active one first.
pub fn read_key_file(path: &Path) -> Result<Vec<[u8; 32]>, KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let io = |source| KeyFileError::Io {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() || meta.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::NotAKeyFile { path: shown });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(KeyFileError::Readable { path: shown, mode });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    parse_keys(&text).map_err(|e| match e {
        ParseError::BadLine(line) => KeyFileError::BadLine {
            path: shown.clone(),
            line,
        },
        ParseError::Empty => KeyFileError::Empty { path: shown.clone() },
        ParseError::TooMany(count) => KeyFileError::TooMany {
            path: shown.clone(),
            count,
        },
    })
}

#[derive(Debug, PartialEq, Eq)]
enum ParseError {
    BadLine(usize),
    Empty,
    TooMany(usize),
}

fn parse_keys(text: &str) -> Result<Vec<[u8; 32]>, ParseError> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(parse_key(line).ok_or(ParseError::BadLine(i + 1))?);
    }
    match keys.len() {
        0 => Err(ParseError::Empty),
        n if n > MAX_KEYS_PER_FILE => Err(ParseError::TooMany(n)),
        _ => Ok(keys),
    }
}

/// One key as a line of the file writes it.
pub fn parse_key(line: &str) -> Option<[u8; 32]> {
    let hex = line.strip_prefix(KEK_PREFIX)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "fsk_000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_come_in_file_order_without_comments_and_blanks() {
        let text = format!("# new\n{A}\n\n  fsk_{}\n", "ff".repeat(32));
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0][1], 1);
        assert_eq!(keys[1], [0xff; 32]);
    }

    #[test]
    fn a_bad_line_is_named_and_an_empty_file_refused() {
        assert_eq!(parse_keys(&format!("{A}\nfsk_12\n")), Err(ParseError::BadLine(2)));
        assert_eq!(parse_keys(&A.to_uppercase()), Err(ParseError::BadLine(1)));
        assert_eq!(parse_keys("# only a comment\n"), Err(ParseError::Empty));
        let many = format!("{A}\n").repeat(MAX_KEYS_PER_FILE + 1);
        assert_eq!(parse_keys(&many), Err(ParseError::TooMany(MAX_KEYS_PER_FILE + 1)));
    }

    #[test]
    fn a_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("{A}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Readable { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key_file(&path).unwrap().len(), 1);
    }
}
