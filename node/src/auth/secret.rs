//! Token secrets: `flt_` and 64 hex digits (256 random bits). Only their SHA-256 is kept; a
//! secret is shown once, in the answer that created it, and never logged (`Debug` hides it).

use sha2::{Digest, Sha256};
use std::fmt;

const PREFIX: &str = "flt_";
const HEX_DIGITS: usize = 64;

#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// A new secret from the operating system's random source.
    pub fn generate() -> TokenSecret {
        let bytes: [u8; 32] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        TokenSecret(format!("{PREFIX}{hex}"))
    }

    /// A secret as a caller or an operator gave it, if it has the shape of one.
    pub fn parse(text: &str) -> Option<TokenSecret> {
        let hex = text.strip_prefix(PREFIX)?;
        (hex.len() == HEX_DIGITS && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| TokenSecret(text.to_string()))
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
    }
}
