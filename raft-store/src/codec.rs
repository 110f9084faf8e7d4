//! Encoding of every record the store persists: one format-version byte, then bincode.
//!
//! The version byte lets a later release read old records or refuse them clearly instead of
//! misreading them.

use serde::{Serialize, de::DeserializeOwned};
use std::io;

/// Version of the record layout written by this build.
pub const FORMAT_VERSION: u8 = 1;

pub(crate) fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(invalid_data)?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    let (&version, body) = bytes.split_first().ok_or_else(|| invalid_data("empty record"))?;
    check_version(version)?;
    let (value, read) = bincode::serde::decode_from_slice(body, config()).map_err(invalid_data)?;
    if read != body.len() {
        return Err(invalid_data(format!("record has {} trailing bytes", body.len() - read)));
    }
    Ok(value)
}

pub(crate) fn check_version(version: u8) -> io::Result<()> {
    if version != FORMAT_VERSION {
        return Err(invalid_data(format!("record format version {version}, this build reads {FORMAT_VERSION}")));
    }
    Ok(())
}

pub(crate) fn invalid_data(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let bytes = encode(&(7u64, "x".to_string())).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), (7, "x".to_string()));
        let mut wrong = bytes.clone();
        wrong[0] = FORMAT_VERSION + 1;
        assert!(decode::<(u64, String)>(&wrong).unwrap_err().to_string().contains("format version"));
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode::<(u64, String)>(&trailing).is_err());
        assert!(decode::<u64>(&[]).is_err());
    }
}
