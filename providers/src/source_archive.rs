//! The tar archive of a job's source (`WorkerSpec::checkout`), as every way of delivering it
//! reads it: streamed from disk in chunks (into a Docker container, or to a pod over the
//! API), or unpacked into a directory with the same guards everywhere (no entry lands
//! outside it, ownership is not restored, extended attributes are not set).

use std::path::Path;

/// Bytes read from disk per chunk of a streamed archive.
const CHUNK_BYTES: usize = 256 * 1024;

/// `file`'s bytes from where it stands to its end, a chunk at a time; an error ends the stream.
pub fn file_chunks(file: tokio::fs::File) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    futures::stream::unfold(Some(file), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Unpacks the archive at `archive` into `dir`: entries that would land outside are refused
/// by the unpacker; permissions are kept, ownerships and extended attributes are not.
pub fn unpack(archive: &Path, dir: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(archive)?;
    unpack_from(std::io::BufReader::new(file), dir)
}

/// Unpacks the tar stream `reader` into `dir`, with `unpack`'s guards.
pub fn unpack_from(reader: impl std::io::Read, dir: &Path) -> std::io::Result<()> {
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(false);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(true);
    tar.unpack(dir)
}
