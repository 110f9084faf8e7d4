//! Artifacts in and out of a container: the blobs of the jobs it needs are put into its work
//! directory before it starts (decompressed on the way: not every engine reads zstd), and
//! once it exited the files its `artifacts` name are copied out and packed into a blob.
//!
//! Copying out goes through a staging directory on the node's disk: each path's tar stream
//! (the engine resolves the path, and its links, inside the container's own filesystem) is
//! written bounded in bytes and unpacked there with `tar`'s guards, and the staging directory
//! is packed with `artifact_archive::pack`, whose checks (nothing outside it is read) hold
//! for whatever links the job left.

use super::{WORK_DIR, status_of, unavailable};
use crate::artifact_archive::{PackError, Packed, archive_name};
use crate::provider::{ArtifactRequest, ProviderError};
use bollard::Docker;
use futures::StreamExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Puts the artifacts of the jobs `container` needs into its work directory, in order.
pub(super) async fn upload_inputs(docker: &Docker, container: &str, blobs: &[PathBuf]) -> Result<(), ProviderError> {
    for blob in blobs {
        let file = std::fs::File::open(blob)
            .map_err(|e| ProviderError::Unavailable(format!("the artifact {} cannot be read: {e}", blob.display())))?;
        super::upload_tar(docker, container, decompressed_chunks(file).boxed(), "an artifact").await?;
    }
    Ok(())
}

/// The tar inside a blob, decompressed on the blocking pool a chunk at a time.
fn decompressed_chunks(file: std::fs::File) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut decoder = match crate::artifact_archive::decoder(std::io::BufReader::new(file)) {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match decoder.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// Packs the files `request.paths` of the exited `container`'s work directory.
pub(super) async fn collect(
    docker: &Docker,
    container: &str,
    request: &ArtifactRequest,
) -> Result<Packed, ProviderError> {
    let staging = request.dest.with_extension("staging");
    let _ = tokio::fs::remove_dir_all(&staging).await;
    tokio::fs::create_dir_all(&staging).await?;
    let result = copy_out_and_pack(docker, container, request, &staging).await;
    let _ = tokio::fs::remove_dir_all(&staging).await;
    result
}

async fn copy_out_and_pack(
    docker: &Docker,
    container: &str,
    request: &ArtifactRequest,
    staging: &Path,
) -> Result<Packed, ProviderError> {
    let mut left_bytes = request.limits.max_unpacked_bytes();
    for (index, path) in request.paths.iter().enumerate() {
        let Some(name) = archive_name(path) else {
            return Err(PackError::Outside {
                index,
                path: path.clone(),
            }
            .into());
        };
        let into = staging.join(name.parent().unwrap_or(Path::new("")));
        tokio::fs::create_dir_all(&into).await?;
        let tar_path = staging.with_extension(format!("{index}.tar"));
        let options = bollard::query_parameters::DownloadFromContainerOptions {
            path: format!("{WORK_DIR}/{}", name.display()),
        };
        let mut stream = docker.download_from_container(container, Some(options));
        let mut file = tokio::fs::File::create(&tar_path).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match status_of(&e) {
                Some(404) => PackError::Missing {
                    index,
                    path: path.clone(),
                }
                .into(),
                _ => unavailable(e),
            })?;
            let len = chunk.len() as u64;
            if len > left_bytes {
                let _ = tokio::fs::remove_file(&tar_path).await;
                return Err(PackError::TooLarge {
                    limit_bytes: request.limits.max_unpacked_bytes(),
                    what: "before compression",
                }
                .into());
            }
            left_bytes -= len;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        drop(file);
        let unpacked = tokio::task::spawn_blocking({
            let tar_path = tar_path.clone();
            move || crate::source_archive::unpack(&tar_path, &into)
        })
        .await
        .map_err(|e| ProviderError::Unavailable(format!("unpacking an artifact: {e}")))?;
        let _ = tokio::fs::remove_file(&tar_path).await;
        unpacked?;
    }
    let staging = staging.to_path_buf();
    let request = request.clone();
    crate::background::run_in_background("flotilla-pack", move || {
        crate::artifact_archive::pack(&staging, &request.paths, &request.dest, request.limits)
    })
    .await
    .ok_or_else(|| ProviderError::Unavailable("packing the artifacts: the packing thread failed".into()))?
    .map_err(ProviderError::from)
}
