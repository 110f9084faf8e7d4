//! Token secrets: `flt_` and 64 hex digits (256 random bits), and join tokens' secrets, the
//! same with `fjt_`. Only their SHA-256 is kept; a secret is shown once, in the answer that
//! created it, and never logged (`Debug` hides it).

use sha2::{Digest, Sha256};
use std::fmt;

const PREFIX: &str = "flt_";
/// The prefix of a join token's secret.
pub const JOIN_PREFIX: &str = "fjt_";
const HEX_DIGITS: usize = 64;

#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

/// `prefix` and 64 hex digits from the operating system's random source.
fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Whether `text` is `prefix` and 64 lowercase hex digits.
fn well_formed(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == HEX_DIGITS && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

impl TokenSecret {
    /// A new secret from the operating system's random source.
    pub fn generate() -> TokenSecret {
        TokenSecret(random_secret(PREFIX))
    }

    /// A secret as a caller or an operator gave it, if it has the shape of one.
    pub fn parse(text: &str) -> Option<TokenSecret> {
        well_formed(text, PREFIX).then(|| TokenSecret(text.to_string()))
    }

    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The secret itself, for the one answer that hands it out.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

/// A join token's secret (`fjt_` and 64 hex digits): lets its bearer fetch the cluster CA and
/// be added as a member, once, before it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinSecret(String);

impl JoinSecret {
    pub fn generate() -> JoinSecret {
        JoinSecret(random_secret(JOIN_PREFIX))
    }

    pub fn parse(text: &str) -> Option<JoinSecret> {
        well_formed(text, JOIN_PREFIX).then(|| JoinSecret(text.to_string()))
    }

    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for JoinSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_well_formed_and_never_printed() {
        let (a, b) = (TokenSecret::generate(), TokenSecret::generate());
        assert_ne!(a, b);
        assert_eq!(TokenSecret::parse(a.reveal()), Some(a.clone()));
        assert_ne!(a.sha256(), b.sha256());
        assert!(!format!("{a:?}").contains(&a.reveal()[4..]));
        for bad in [
            "",
            "flt_",
            "flt_xyz",
            &a.reveal()[..20],
            &a.reveal().to_uppercase(),
            &format!("{}0", a.reveal()),
        ] {
            assert_eq!(TokenSecret::parse(bad), None, "{bad}");
        }
        let join = JoinSecret::generate();
        assert_eq!(JoinSecret::parse(join.reveal()), Some(join.clone()));
        assert_eq!(TokenSecret::parse(join.reveal()), None, "a join secret is no API token");
        assert_eq!(JoinSecret::parse(a.reveal()), None);
        assert!(!format!("{join:?}").contains(&join.reveal()[4..]));
    }
}
