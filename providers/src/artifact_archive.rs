//! A job's artifacts as one blob: the files its `artifacts.paths` name, packed into a tar
//! compressed with zstd, named by the SHA-256 of the compressed bytes, and unpacked again
//! into the workspace of a job that needs it.
//!
//! Packing reads a workspace the job controlled, as the node's user. So every path is
//! resolved inside the workspace before anything is read (a path through a symbolic link that
//! leaves it is refused), links inside the tree are stored as links and never followed, and
//! both the compressed and the unpacked size are bounded while writing: a job cannot make the
//! node read outside its workspace, nor fill the node's disk. Unpacking goes through
//! `tar`'s guards (no entry lands outside the directory; ownership and extended attributes
//! are not restored).

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// zstd's level: fast, and most of its ratio (artifacts are often already compressed).
const ZSTD_LEVEL: i32 = 3;
/// How much larger than its compressed bound an artifact may be once unpacked.
pub const MAX_EXPANSION: u64 = 16;

/// What packing may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackLimits {
    /// Bytes of the compressed blob at most.
    pub max_packed_bytes: u64,
}

impl PackLimits {
    /// Bytes of files (before compression) at most.
    pub fn max_unpacked_bytes(&self) -> u64 {
        self.max_packed_bytes.saturating_mul(MAX_EXPANSION)
    }
}

/// The blob a pack wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    /// SHA-256 of the blob's bytes, lowercase hexadecimal.
    pub digest: String,
    pub size_bytes: u64,
    /// Files, directories and links in the archive.
    pub entries: u32,
    /// Where the blob is: at the request's `dest`, or already sent to a node of the cluster
    /// by the worker itself (`uploads.rs`).
    pub place: BlobPlace,
}

/// Where a collected blob is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BlobPlace {
    /// Written to `ArtifactRequest::dest` on this node.
    #[default]
    Dest,
    /// Uploaded by the worker to a node of the cluster, which checked it against its digest.
    Uploaded,
}

/// Why a job's files could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("artifacts.paths[{index}] {path:?} does not exist in the workspace")]
    Missing { index: usize, path: String },
    #[error("artifacts.paths[{index}] {path:?} leads outside the workspace")]
    Outside { index: usize, path: String },
    #[error("the artifacts take more than {limit_bytes} bytes ({what})")]
    TooLarge { limit_bytes: u64, what: &'static str },
    #[error("packing the artifacts: {0}")]
    Io(#[from] io::Error),
}

/// Counts and hashes what goes to `inner`, refusing to pass `limit` bytes.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
    limit: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(io::Error::other(LimitPassed("compressed")));
        }
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The marker error of a writer whose limit was passed.
#[derive(Debug, thiserror::Error)]
#[error("{0} limit passed")]
struct LimitPassed(&'static str);

/// Counts what goes into the compressor, refusing to pass `limit` bytes.
struct CountingWriter<W> {
    inner: W,
    written: u64,
    limit: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(io::Error::other(LimitPassed("unpacked")));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Turns an i/o error that is a passed limit into `TooLarge`.
fn limit_error(e: io::Error, limits: &PackLimits) -> PackError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<LimitPassed>()) {
        Some(LimitPassed("compressed")) => PackError::TooLarge {
            limit_bytes: limits.max_packed_bytes,
            what: "compressed",
        },
        Some(_) => PackError::TooLarge {
            limit_bytes: limits.max_unpacked_bytes(),
            what: "before compression",
        },
        None => PackError::Io(e),
    }
}

/// A path of the spec as it is stored in the archive: relative, without `.` parts or a
/// trailing slash. `None` if it names the workspace itself or leaves it.
pub fn archive_name(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Where each of `paths` is inside `workspace`: its name in the archive and the path to read,
/// its parent's links resolved and checked to stay inside; a missing path is named.
pub fn resolve(workspace: &Path, paths: &[String]) -> Result<Vec<(PathBuf, PathBuf)>, PackError> {
    let root = workspace.canonicalize()?;
    let mut sources = Vec::with_capacity(paths.len());
    for (index, path) in paths.iter().enumerate() {
        let outside = || PackError::Outside {
            index,
            path: path.clone(),
        };
        let name = archive_name(path).ok_or_else(outside)?;
        let full = root.join(&name);
        // The parent is resolved (its links followed) and must stay inside; the last part is
        // taken as it is, a link included.
        let parent = full.parent().unwrap_or(&root);
        let parent = match parent.canonicalize() {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PackError::Missing {
                    index,
                    path: path.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !parent.starts_with(&root) {
            return Err(outside());
        }
        let file_name = full.file_name().ok_or_else(outside)?;
        let source = parent.join(file_name);
        match std::fs::symlink_metadata(&source) {
            Ok(_) => sources.push((name, source)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PackError::Missing {
                    index,
                    path: path.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(sources)
}

/// The writers a blob is made through: tar, counted, into zstd, hashed and counted, to `dest`.
type BlobBuilder = tar::Builder<CountingWriter<zstd::Encoder<'static, HashingWriter<crate::direct_io::DirectWriter>>>>;

fn open_blob(dest: &Path, limits: PackLimits) -> Result<BlobBuilder, PackError> {
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(dest)?;
    let hashing = HashingWriter {
        inner: crate::direct_io::DirectWriter::new(file),
        hasher: Sha256::new(),
        written: 0,
        limit: limits.max_packed_bytes,
    };
    let encoder = zstd::Encoder::new(hashing, ZSTD_LEVEL)?;
    let counting = CountingWriter {
        inner: encoder,
        written: 0,
        limit: limits.max_unpacked_bytes(),
    };
    let mut builder = tar::Builder::new(counting);
    builder.follow_symlinks(false);
    Ok(builder)
}

/// Ends the archive and the compression, syncs the file; what was written.
fn finish_blob(builder: BlobBuilder, entries: u32, limits: &PackLimits) -> Result<Packed, PackError> {
    let counting = builder.into_inner().map_err(|e| limit_error(e, limits))?;
    let hashing = counting.inner.finish().map_err(|e| limit_error(e, limits))?;
    let HashingWriter {
        inner, hasher, written, ..
    } = hashing;
    let file = inner.finish()?;
    file.sync_all()?;
    Ok(Packed {
        digest: hex::encode(hasher.finalize()),
        size_bytes: written,
        entries,
        place: BlobPlace::Dest,
    })
}

/// Packs `paths` (relative to `workspace`) into a new file at `dest`.
pub fn pack(workspace: &Path, paths: &[String], dest: &Path, limits: PackLimits) -> Result<Packed, PackError> {
    let sources = resolve(workspace, paths)?;
    let mut builder = open_blob(dest, limits)?;
    let mut entries = 0u32;
    for (name, source) in &sources {
        let meta = std::fs::symlink_metadata(source)?;
        if meta.is_dir() {
            entries = entries.saturating_add(count_entries(source)?);
            builder
                .append_dir_all(name, source)
                .map_err(|e| limit_error(e, &limits))?;
        } else {
            entries = entries.saturating_add(1);
            builder
                .append_path_with_name(source, name)
                .map_err(|e| limit_error(e, &limits))?;
        }
    }
    finish_blob(builder, entries, &limits)
}

/// Makes a blob at `dest` of the tar stream `tar` (made by a program that read the files with
/// fewer rights than this one, see the process provider), entry by entry: names without `./`,
/// links kept as links, both sizes bounded as `pack` bounds them.
pub fn repack(tar: impl Read, dest: &Path, limits: PackLimits) -> Result<Packed, PackError> {
    let mut builder = open_blob(dest, limits)?;
    let mut entries = 0u32;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        let Some(name) = name.to_str().and_then(archive_name) else {
            continue; // the workspace itself (`./`)
        };
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        entries = entries.saturating_add(1);
        let appended = if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
            builder.append_link(&mut header, &name, target)
        } else {
            builder.append_data(&mut header, &name, &mut entry)
        };
        appended.map_err(|e| limit_error(e, &limits))?;
    }
    finish_blob(builder, entries, &limits)
}

/// Entries a directory adds to an archive (itself and everything under it, links not
/// followed), bounded so that a pathological tree costs a bounded walk.
fn count_entries(dir: &Path) -> io::Result<u32> {
    const MAX_WALK: u32 = 10_000_000;
    let mut count = 0u32;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        count += 1;
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                count += 1;
            }
            if count >= MAX_WALK {
                return Ok(count);
            }
        }
    }
    Ok(count)
}

/// A tar stream compressed with zstd, read from `reader`.
pub fn decoder<R: Read>(reader: R) -> io::Result<impl Read> {
    zstd::Decoder::new(reader)
}

/// Unpacks the blob at `blob` into `dir`, with `source_archive::unpack`'s guards.
pub fn unpack(blob: &Path, dir: &Path) -> io::Result<()> {
    let file = std::fs::File::open(blob)?;
    crate::source_archive::unpack_from(decoder(io::BufReader::new(file))?, dir)
}

/// The names in the blob at `blob` with their sizes, at most `max` of them, and whether
/// there were more.
pub fn list(blob: &Path, max: usize) -> io::Result<(Vec<(String, u64)>, bool)> {
    let file = std::fs::File::open(blob)?;
    let mut tar = tar::Archive::new(decoder(io::BufReader::new(file))?);
    let mut out = Vec::new();
    for entry in tar.entries()? {
        let entry = entry?;
        if out.len() == max {
            return Ok((out, true));
        }
        out.push((entry.path()?.to_string_lossy().into_owned(), entry.size()));
    }
    Ok((out, false))
}

/// The SHA-256 of the file at `path`, lowercase hexadecimal.
pub fn digest_of(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: PackLimits = PackLimits {
        max_packed_bytes: 1 << 20,
    };

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        std::fs::create_dir_all(w.join("out/sub")).unwrap();
        std::fs::write(w.join("out/bin"), b"\x7fELF binary").unwrap();
        std::fs::write(w.join("out/sub/data.txt"), "data").unwrap();
        std::fs::write(w.join("report.xml"), "<ok/>").unwrap();
        dir
    }

    #[test]
    fn packs_and_unpacks_byte_identical_with_the_digest_of_the_blob() {
        let w = workspace();
        let out = tempfile::tempdir().unwrap();
        let blob = out.path().join("blob");
        let packed = pack(w.path(), &["./out/".into(), "report.xml".into()], &blob, ROOMY).unwrap();
        assert_eq!(packed.digest, digest_of(&blob).unwrap());
        assert_eq!(packed.size_bytes, std::fs::metadata(&blob).unwrap().len());
        assert_eq!(packed.entries, 5, "out, out/bin, out/sub, out/sub/data.txt, report.xml");
        let dest = out.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        unpack(&blob, &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("out/bin")).unwrap(), b"\x7fELF binary");
        assert_eq!(std::fs::read_to_string(dest.join("out/sub/data.txt")).unwrap(), "data");
        assert_eq!(std::fs::read_to_string(dest.join("report.xml")).unwrap(), "<ok/>");
        let (names, more) = list(&blob, 100).unwrap();
        assert!(!more);
        assert!(names.iter().any(|(n, size)| n == "out/bin" && *size == 11), "{names:?}");
        let (names, more) = list(&blob, 2).unwrap();
        assert!(more && names.len() == 2);
    }

    #[test]
    fn a_stream_made_elsewhere_is_repacked_with_the_same_names_and_links() {
        let w = workspace();
        std::os::unix::fs::symlink("bin", w.path().join("out/link")).unwrap();
        // As GNU tar writes a `--directory` archive of `./out`.
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder.append_dir_all("./out", w.path().join("out")).unwrap();
        let stream = builder.into_inner().unwrap();
        let out = tempfile::tempdir().unwrap();
        let blob = out.path().join("blob");
        let packed = repack(&stream[..], &blob, ROOMY).unwrap();
        assert_eq!(packed.digest, digest_of(&blob).unwrap());
        let (names, _) = list(&blob, 100).unwrap();
        assert!(names.iter().all(|(n, _)| !n.starts_with("./")), "{names:?}");
        let dest = out.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        unpack(&blob, &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("out/bin")).unwrap(), b"\x7fELF binary");
        assert_eq!(std::fs::read_link(dest.join("out/link")).unwrap(), Path::new("bin"));
        let small = PackLimits { max_packed_bytes: 10 };
        assert!(matches!(
            repack(&stream[..], &out.path().join("small"), small),
            Err(PackError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_missing_path_is_named() {
        let w = workspace();
        let blob = w.path().join("blob");
        let err = pack(w.path(), &["out".into(), "dist/app".into()], &blob, ROOMY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "artifacts.paths[1] \"dist/app\" does not exist in the workspace"
        );
        assert!(
            !crate::ProviderError::from(err).is_transient(),
            "a missing path is never retried"
        );
    }

    #[test]
    fn links_out_of_the_workspace_are_never_followed() {
        let w = workspace();
        let secret = tempfile::tempdir().unwrap();
        std::fs::write(secret.path().join("key"), "secret").unwrap();
        std::os::unix::fs::symlink(secret.path(), w.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(secret.path().join("key"), w.path().join("out/link")).unwrap();
        let out = tempfile::tempdir().unwrap();
        // Through a linked directory: refused.
        let err = pack(w.path(), &["escape/key".into()], &out.path().join("a"), ROOMY).unwrap_err();
        assert!(matches!(err, PackError::Outside { index: 0, .. }), "{err}");
        // A link inside the tree, or named itself, is stored as a link: its target is not read.
        let blob = out.path().join("b");
        pack(w.path(), &["out".into(), "escape".into()], &blob, ROOMY).unwrap();
        let file = std::fs::File::open(&blob).unwrap();
        let mut tar = tar::Archive::new(decoder(file).unwrap());
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            assert!(
                !content.contains("secret"),
                "{:?} carried the link's target",
                entry.path()
            );
        }
        for bad in ["../x", "/etc/passwd", ".", ""] {
            let err = pack(w.path(), &[bad.into()], &out.path().join("c"), ROOMY).unwrap_err();
            assert!(matches!(err, PackError::Outside { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn both_sizes_are_bounded_while_writing() {
        let w = workspace();
        // Incompressible bytes pass the compressed bound.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                // xorshift64: bytes zstd cannot compress.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        std::fs::write(w.path().join("noise"), &noise).unwrap();
        let out = tempfile::tempdir().unwrap();
        let small = PackLimits {
            max_packed_bytes: 50_000,
        };
        let err = pack(w.path(), &["noise".into()], &out.path().join("a"), small).unwrap_err();
        assert!(
            matches!(
                err,
                PackError::TooLarge {
                    what: "compressed",
                    limit_bytes: 50_000
                }
            ),
            "{err}"
        );
        // Zeros compress to nothing but pass the bound before compression.
        std::fs::write(w.path().join("zeros"), vec![0u8; 1_000_000]).unwrap();
        let err = pack(w.path(), &["zeros".into()], &out.path().join("b"), small).unwrap_err();
        assert!(
            matches!(
                err,
                PackError::TooLarge {
                    what: "before compression",
                    ..
                }
            ),
            "{err}"
        );
    }
}
