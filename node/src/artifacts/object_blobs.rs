//! Blobs in an S3-compatible object store (`--artifact-store s3://bucket/prefix`), for
//! installations whose artifacts and caches outgrow the nodes' disks. The bucket holds each
//! blob once, under `<prefix>/sha256/<digest>`, and is the copy that counts: the leader
//! uploads a blob there (in place of copying it to a majority of the nodes) before it proposes
//! the record, and a node that needs one (to serve it, or to hand it to a worker) downloads
//! it into its own blob store, checked against its name, as it would fetch it from a peer.
//! The nodes' disks become caches of the bucket. Pipeline files do not change.
//!
//! Requests go through `object_store` (S3 signing with ring, HTTP through reqwest), which
//! reads the credentials and region from the usual `AWS_*` variables.

use super::blob_store::{BlobError, BlobStore};
use super::peers::MAX_BLOB_BYTES;
use super::receive::receive_checked;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::AsyncReadExt;

/// Bytes per part of an upload (S3 wants at least 5 MiB but for the last).
const PART_BYTES: usize = 8 << 20;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 4;

/// Where blobs go: `--artifact-store` and `--artifact-store-endpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectStoreConfig {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// The server's URL, for S3-compatible servers other than AWS.
    pub endpoint: Option<String>,
}

impl ObjectStoreConfig {
    /// The bucket and the key prefix (without slashes at its ends) the URL names.
    pub fn bucket_and_prefix(&self) -> Result<(String, String), String> {
        let rest = self
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("--artifact-store {:?} must start with s3://", self.url))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        {
            return Err(format!(
                "--artifact-store {:?}: the bucket must be lowercase letters, digits, '-' and '.'",
                self.url
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == ".." || p == ".") {
            return Err(format!("--artifact-store {:?}: no '.' or '..' in the prefix", self.url));
        }
        Ok((bucket.to_string(), prefix.to_string()))
    }
}

pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// The bucket's URL, for messages.
    url: String,
}

fn io(e: impl std::fmt::Display) -> BlobError {
    BlobError::Io(std::io::Error::other(e.to_string()))
}

impl ObjectBlobs {
    /// The bucket `config` names (nothing is sent until the first request).
    pub fn open(config: &ObjectStoreConfig) -> Result<ObjectBlobs, String> {
        let (bucket, prefix) = config.bucket_and_prefix()?;
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&bucket);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder
            .build()
            .map_err(|e| format!("--artifact-store {}: {e}", config.url))?;
        Ok(ObjectBlobs {
            store: Arc::new(store),
            prefix,
            url: config.url.clone(),
        })
    }

    fn location(&self, digest: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(format!("sha256/{digest}"))
        } else {
            ObjectPath::from(format!("{}/sha256/{digest}", self.prefix))
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Uploads the blob at `path` as `digest` (a blob already there is left as it is: its
    /// name says what it holds).
    pub async fn put(&self, digest: &str, path: &Path) -> Result<(), BlobError> {
        let location = self.location(digest);
        if self.store.head(&location).await.is_ok() {
            return Ok(());
        }
        let upload = self.store.put_multipart(&location).await.map_err(io)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = tokio::fs::File::open(path).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e.into());
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(io(e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(io)?;
        Ok(())
    }

    /// Downloads blob `digest` into `store`, checked against its name; returns its path there.
    pub async fn get(&self, digest: &str, store: &Arc<BlobStore>) -> Result<PathBuf, BlobError> {
        let result = match self.store.get(&self.location(digest)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(BlobError::Missing(digest.to_string())),
            Err(e) => return Err(io(e)),
        };
        let chunks = result.into_stream().map(|chunk| chunk.map_err(io));
        receive_checked(store, digest, chunks, MAX_BLOB_BYTES).await
    }

    /// Every blob in the bucket: `(digest, size, last modified)`; other keys are passed over.
    pub async fn list(&self) -> Result<Vec<(String, u64, SystemTime)>, BlobError> {
        let prefix = if self.prefix.is_empty() {
            ObjectPath::from("sha256")
        } else {
            ObjectPath::from(format!("{}/sha256", self.prefix))
        };
        let mut listed = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(io)?;
            let Some(name) = meta.location.filename() else { continue };
            if flotilla_state_machine::is_digest(name) {
                out.push((name.to_string(), meta.size, SystemTime::from(meta.last_modified)));
            }
        }
        Ok(out)
    }

    pub async fn delete(&self, digest: &str) -> Result<(), BlobError> {
        self.store.delete(&self.location(digest)).await.map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> ObjectStoreConfig {
        ObjectStoreConfig {
            url: url.into(),
            endpoint: None,
        }
    }

    #[test]
    fn the_url_names_a_bucket_and_a_prefix() {
        assert_eq!(
            config("s3://ci-blobs").bucket_and_prefix().unwrap(),
            ("ci-blobs".into(), String::new())
        );
        assert_eq!(
            config("s3://ci-blobs/flotilla/prod/").bucket_and_prefix().unwrap(),
            ("ci-blobs".into(), "flotilla/prod".into())
        );
        for bad in ["ci-blobs", "gs://b", "s3://", "s3://Caps", "s3://b/../x"] {
            assert!(config(bad).bucket_and_prefix().is_err(), "{bad}");
        }
    }
}
