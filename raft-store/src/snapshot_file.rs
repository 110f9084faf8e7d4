//! Snapshot files: the state machine's encoding on disk.
//!
//! Layout: `FLOTSNAP` magic, snapshot-version byte, u32 length of the metadata, the metadata
//! (bincode), the state (bincode), and a CRC-32 of everything before it. A file is written
//! under `tmp/`, fsynced, then renamed into place, so a visible snapshot is complete.
//!
//! Building one encodes the state in memory first (`encode_state`, under the state's read
//! lock: the copy of the state this costs is the only time applies and readers wait), then
//! writes and fsyncs that encoding with no lock held (`write_snapshot`). Reading streams.

use crate::LogId;
use crate::codec::{config, decode_from_read, invalid_data, with_decode_limit};
use crate::{SnapshotMeta, StoredMembership};
use flotilla_state_machine::State;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FLOTSNAP";

/// Version of the snapshot layout, which includes `State`'s: bincode is not self-describing,
/// so a build refuses a snapshot of another layout by this byte instead of misreading it.
/// 2: the pending queue is keyed by priority, tenant and job.
/// 3: `Limits` gained `max_resources`, `max_workers_per_pool` and `max_pipeline_bytes`.
/// 4: `State` keeps the client sessions; `Limits` their bounds.
/// 5: `State` keeps the API tokens.
/// 6: a tenant's `Quota` has its priority ceiling (`max_priority`); `State` keeps the join
///    tokens.
/// 7: `State` keeps the sealed secrets and the wrapped data keys; a job's spec its `secrets`.
/// 8: `State` keeps the retention policies and settled pipelines; a pipeline when its output
///    was removed.
pub const SNAPSHOT_VERSION: u8 = 8;

/// What a snapshot restores besides the domain state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub last_log_id: Option<LogId>,
    pub last_membership: StoredMembership,
}

impl SnapshotHeader {
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_log_id,
            last_membership: self.last_membership.clone(),
        }
    }
}

/// A complete snapshot on local disk, kept open: the descriptor keeps the bytes readable even
/// if a newer snapshot replaces the file while it is being sent to a follower.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub file: File,
}

impl SnapshotFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file: File::open(path)?,
        })
    }

    pub fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Reads the header only (cheap): used to list snapshots without loading their state.
    pub fn read_header(&mut self) -> io::Result<SnapshotHeader> {
        self.file.seek(SeekFrom::Start(0))?;
        let len = self.len_bytes()?;
        let mut r = BufReader::new(&self.file);
        read_header(&mut r, len)
    }

    /// Reads and verifies the whole file, returning header and state.
    ///
    /// The checksum is verified in a first pass, before anything is decoded: in a corrupt file
    /// a length field can say anything, and the decoder would try to allocate it (a flipped
    /// byte once asked for 7 EB and aborted the process).
    pub fn read_all(&mut self) -> io::Result<(SnapshotHeader, State)> {
        let len = self.len_bytes()?;
        if len < 4 {
            return Err(invalid_data("snapshot file is too short"));
        }
        self.file.seek(SeekFrom::Start(0))?;
        let mut hashing = HashingReader {
            inner: BufReader::new((&self.file).take(len - 4)),
            hasher: crc32fast::Hasher::new(),
        };
        io::copy(&mut hashing, &mut io::sink())?;
        let computed = hashing.hasher.finalize();
        let mut stored = [0u8; 4];
        (&self.file).read_exact(&mut stored)?;
        if u32::from_le_bytes(stored) != computed {
            return Err(invalid_data("snapshot checksum mismatch"));
        }

        self.file.seek(SeekFrom::Start(0))?;
        let mut body = BufReader::new((&self.file).take(len - 4));
        let header = read_header(&mut body, len)?;
        let state: State = decode_from_read(&mut body, len)?;
        let mut rest = Vec::new();
        body.read_to_end(&mut rest)?;
        if !rest.is_empty() {
            return Err(invalid_data(format!(
                "snapshot has {} unread bytes before its checksum",
                rest.len()
            )));
        }
        Ok((header, state))
    }
}

/// Reads the magic, version and metadata of a snapshot file of `file_len` bytes. The metadata's
/// length field is checked against the file's length before anything is allocated.
fn read_header(r: &mut impl Read, file_len: u64) -> io::Result<SnapshotHeader> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid_data("not a flotilla snapshot"));
    }
    let mut version = [0u8; 1];
    r.read_exact(&mut version)?;
    if version[0] != SNAPSHOT_VERSION {
        return Err(invalid_data(format!(
            "snapshot layout version {}, this build reads {SNAPSHOT_VERSION}",
            version[0]
        )));
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let meta_len = u32::from_le_bytes(len);
    if u64::from(meta_len) > file_len {
        return Err(invalid_data(format!(
            "snapshot metadata of {meta_len} bytes in a file of {file_len}"
        )));
    }
    let mut meta = vec![0u8; meta_len as usize];
    r.read_exact(&mut meta)?;
    let (header, _) = with_decode_limit!(meta.len(), |cfg| bincode::serde::decode_from_slice(&meta, cfg)
        .map_err(invalid_data))?;
    Ok(header)
}

/// Streams `header` and `state` into `path` (created new), fsyncs it, and returns it open.
/// The state's bincode, as a snapshot file holds it after the metadata.
pub struct EncodedState(Vec<u8>);

impl EncodedState {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Encodes `state` for a snapshot: a copy in memory, so the file can be written without
/// holding whatever guards the state.
pub fn encode_state(state: &State) -> io::Result<EncodedState> {
    bincode::serde::encode_to_vec(state, config())
        .map(EncodedState)
        .map_err(invalid_data)
}

/// Writes a snapshot file of `state` (as `encode_state` made it) and fsyncs it.
pub fn write_snapshot(path: &Path, header: &SnapshotHeader, state: &EncodedState) -> io::Result<()> {
    let file = File::create_new(path)?;
    let mut w = HashingWriter {
        inner: BufWriter::new(file),
        hasher: crc32fast::Hasher::new(),
    };
    w.write_all(MAGIC)?;
    w.write_all(&[SNAPSHOT_VERSION])?;
    let meta = bincode::serde::encode_to_vec(header, config()).map_err(invalid_data)?;
    let meta_len = u32::try_from(meta.len()).map_err(|_| invalid_data("snapshot metadata over 4 GiB"))?;
    w.write_all(&meta_len.to_le_bytes())?;
    w.write_all(&meta)?;
    w.write_all(&state.0)?;
    let crc = w.hasher.finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes())?;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

struct HashingWriter<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
