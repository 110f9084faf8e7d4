//! `flotilla job artifacts ID --save FILE | --extract DIR`: the job's artifact archive,
//! saved or unpacked, after checking its bytes against the digest the cluster recorded.

use crate::client::Client;
use anyhow::{Context, bail};
use std::path::Path;

/// A time in milliseconds since the epoch, as UTC.
pub fn time_ms(v: &serde_json::Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// Saves job `id`'s archive into `output`, or unpacks it into `extract`.
pub async fn download(client: &Client, id: u64, output: Option<&Path>, extract: Option<&Path>) -> anyhow::Result<()> {
    let path = format!("/v1/jobs/{id}/artifacts/archive");
    // Downloaded beside its destination and renamed into place once its digest matched:
    // a broken or damaged download leaves nothing behind.
    let file = match (output, extract) {
        (Some(file), _) => {
            if file.exists() {
                bail!("{} exists: give a new file to save into", file.display());
            }
            let mut part = file.as_os_str().to_owned();
            part.push(".part");
            std::path::PathBuf::from(part)
        }
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join(format!(".job-{id}-artifacts.tar.zst.part"))
        }
        (None, None) => bail!("give --save FILE or --extract DIR"),
    };
    let (digest, announced) = match client.download(&path, &file).await {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
    };
    if announced.as_deref() != Some(digest.as_str()) {
        let _ = std::fs::remove_file(&file);
        bail!(
            "the archive received has the digest {digest}, not the artifact's {}: nothing was kept",
            announced.as_deref().unwrap_or("(none announced)")
        );
    }
    let Some(dir) = extract else {
        let dest = output.unwrap_or(&file);
        if let Err(e) = std::fs::rename(&file, dest) {
            let _ = std::fs::remove_file(&file);
            return Err(e).with_context(|| format!("moving the archive to {}", dest.display()));
        }
        println!("saved {} (sha256 {digest})", dest.display());
        return Ok(());
    };
    let unpacked = (|| -> std::io::Result<()> {
        let reader = zstd::Decoder::new(std::io::BufReader::new(std::fs::File::open(&file)?))?;
        let mut tar = tar::Archive::new(reader);
        tar.set_preserve_permissions(true);
        tar.set_preserve_ownerships(false);
        tar.set_unpack_xattrs(false);
        tar.set_overwrite(true);
        tar.unpack(dir)
    })();
    let _ = std::fs::remove_file(&file);
    unpacked.with_context(|| format!("unpacking into {}", dir.display()))?;
    println!("unpacked job {id}'s artifacts into {} (sha256 {digest})", dir.display());
    Ok(())
}
