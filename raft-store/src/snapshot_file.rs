//! Snapshot files: the state machine's encoding on disk.
//!
//! Layout: `FLOTSNAP` magic, snapshot-version byte, u32 length of the metadata, the metadata
//! (bincode), u64 length of the state, the state (bincode), the job output, and a CRC-32 of
//! everything before it. The output is a run of chunks, each `1u8`, job id (u64), offset
//! (u64), length (u32), all little-endian, and the bytes, then the archived records, each
//! `2u8` and the record (`write_record`), ended by `0u8`. A file is written
//! under `tmp/`, fsynced, then renamed into place, so a visible snapshot is complete.
//!
//! A snapshot a node builds for itself holds no output (the output stays in RocksDB, flushed
//! before the file is published): building one costs the state, whatever the output. The
//! output is added only when the snapshot is sent to a follower (`SnapshotWire`): the state's
//! bytes from the file, then the output streamed from the store as it is then.
//!
//! Building one clones the state under its read lock (its maps are persistent: the clone
//! shares every node and takes microseconds, the only time applies and readers wait), then
//! encodes the clone in memory (`encode_state`) and writes the encoding (`write_snapshot`)
//! with no lock held. Reading streams.

use crate::LogId;
use crate::codec::{config, decode_from_read, invalid_data, with_decode_limit};
use crate::disk_store::OutputChunk;
use crate::history_reads::HistoryRecord;
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
/// 9: job output left the state: it follows the state as a run of chunks; the state's length
///    is written before it.
/// 10: `StateIndex` keeps jobs and pipelines by tenant and state, tenant names interned.
/// 11: settled pipelines are archived: `State` keeps compact records (`Archive`), and the
///     records follow the output chunks as items tagged 2.
pub const SNAPSHOT_VERSION: u8 = 11;

/// The largest archived record a snapshot may hold (a pipeline's or a job's encoding).
const MAX_SNAPSHOT_RECORD_BYTES: u32 = 64 * 1024 * 1024;

/// One item of what follows a snapshot's state.
pub enum DiskItem<'a> {
    Chunk(&'a OutputChunk),
    Record(&'a HistoryRecord),
}

/// The largest output chunk a snapshot may hold (a chunk is one applied append).
const MAX_SNAPSHOT_CHUNK_BYTES: u32 = 64 * 1024 * 1024;

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
    /// The store whose output is sent with the file's state (`wire`): set on the snapshot
    /// handed to openraft for a follower.
    pub output: Option<crate::DiskStore>,
}

impl SnapshotFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file: File::open(path)?,
            output: None,
        })
    }

    /// The bytes to send to a follower: the file as it is, or, with a store attached, the
    /// file's metadata and state followed by the store's output (`SnapshotWire`).
    pub fn wire(mut self) -> io::Result<Box<dyn Read + Send>> {
        self.file.seek(SeekFrom::Start(0))?;
        match self.output.take() {
            None => Ok(Box::new(self.file)),
            Some(output) => {
                let (state_start, state_len) = self.state_span()?;
                self.file.seek(SeekFrom::Start(0))?;
                Ok(Box::new(crate::snapshot_wire::SnapshotWire::new(
                    self.file.take(state_start + state_len),
                    output,
                )))
            }
        }
    }

    /// Writes what `wire` sends into a new file at `path` and opens it: a snapshot as a
    /// follower receives it.
    pub fn materialize(self, path: &Path) -> io::Result<SnapshotFile> {
        let mut out = File::create_new(path)?;
        io::copy(&mut self.wire()?, &mut out)?;
        out.sync_all()?;
        SnapshotFile::open(path)
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

    /// Where the state's encoding starts and how long it is, read from the header and the
    /// length before the state (bounded by the file's length, so a corrupt field cannot make
    /// a reader seek or take past it).
    fn state_span(&mut self) -> io::Result<(u64, u64)> {
        let len = self.len_bytes()?;
        self.file.seek(SeekFrom::Start(0))?;
        let mut r = BufReader::new(&self.file);
        read_header(&mut r, len)?;
        let state_len = read_state_len(&mut r, len)?;
        let state_start = r.stream_position()?;
        if state_start.saturating_add(state_len) > len {
            return Err(invalid_data("snapshot state runs past the file"));
        }
        Ok((state_start, state_len))
    }

    /// Hands each output chunk and archived record of a file already verified by `read_all`
    /// to `on_item`, in order, without decoding the state again.
    pub fn read_disk_items(&mut self, mut on_chunk: impl FnMut(DiskItem<'_>) -> io::Result<()>) -> io::Result<()> {
        let (state_start, state_len) = self.state_span()?;
        self.file.seek(SeekFrom::Start(state_start + state_len))?;
        read_output(&mut BufReader::new(&self.file), &mut on_chunk)
    }

    /// Reads and verifies the whole file, returning header and state; the output is checked
    /// and passed over (`read_disk_items` reads it).
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
        let state_len = read_state_len(&mut body, len)?;
        let mut state_part = (&mut body).take(state_len);
        let state: State = decode_from_read(&mut state_part, state_len)?;
        if state_part.limit() != 0 {
            return Err(invalid_data(format!(
                "snapshot state has {} bytes past its encoding",
                state_part.limit()
            )));
        }
        read_output(&mut body, &mut |_| Ok(()))?;
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

/// Reads the length written before the state, which cannot exceed the file's.
fn read_state_len(r: &mut impl Read, file_len: u64) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    r.read_exact(&mut bytes)?;
    let state_len = u64::from_le_bytes(bytes);
    if state_len > file_len {
        return Err(invalid_data(format!(
            "snapshot state of {state_len} bytes in a file of {file_len}"
        )));
    }
    Ok(state_len)
}

/// Writes one output chunk as a snapshot holds it.
pub(crate) fn write_chunk(w: &mut impl Write, chunk: &OutputChunk) -> io::Result<()> {
    let len = u32::try_from(chunk.data.len())
        .ok()
        .filter(|l| *l <= MAX_SNAPSHOT_CHUNK_BYTES)
        .ok_or_else(|| invalid_data(format!("output chunk of {} bytes", chunk.data.len())))?;
    w.write_all(&[1])?;
    w.write_all(&chunk.job.0.to_le_bytes())?;
    w.write_all(&chunk.offset.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&chunk.data)
}

/// Writes one archived record as a snapshot holds it: `2u8`, key length (u16), value length
/// (u32), little-endian, then the key and the value.
pub(crate) fn write_record(w: &mut impl Write, record: &HistoryRecord) -> io::Result<()> {
    let key_len = u16::try_from(record.key.len())
        .map_err(|_| invalid_data(format!("history key of {} bytes", record.key.len())))?;
    let len = u32::try_from(record.value.len())
        .ok()
        .filter(|l| *l <= MAX_SNAPSHOT_RECORD_BYTES)
        .ok_or_else(|| invalid_data(format!("history record of {} bytes", record.value.len())))?;
    w.write_all(&[2])?;
    w.write_all(&key_len.to_le_bytes())?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&record.key)?;
    w.write_all(&record.value)
}

/// Reads one archived record after its tag.
fn read_record(r: &mut impl Read) -> io::Result<HistoryRecord> {
    let mut head = [0u8; 6];
    r.read_exact(&mut head)?;
    let key_len = u16::from_le_bytes(head[..2].try_into().expect("2 bytes"));
    let len = u32::from_le_bytes(head[2..].try_into().expect("4 bytes"));
    if key_len > 64 || len > MAX_SNAPSHOT_RECORD_BYTES {
        return Err(invalid_data(format!(
            "snapshot history record with a key of {key_len} bytes and {len} bytes"
        )));
    }
    let mut key = vec![0u8; usize::from(key_len)];
    r.read_exact(&mut key)?;
    let mut value = vec![0u8; len as usize];
    r.read_exact(&mut value)?;
    Ok(HistoryRecord { key, value })
}

/// Reads the output chunks and archived records that follow the state, through their end
/// marker.
fn read_output(r: &mut impl Read, on_chunk: &mut impl FnMut(DiskItem<'_>) -> io::Result<()>) -> io::Result<()> {
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        match tag[0] {
            0 => return Ok(()),
            1 => {}
            2 => {
                on_chunk(DiskItem::Record(&read_record(r)?))?;
                continue;
            }
            other => return Err(invalid_data(format!("snapshot output has a chunk tagged {other}"))),
        }
        let mut head = [0u8; 20];
        r.read_exact(&mut head)?;
        let job = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let offset = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[16..].try_into().expect("4 bytes"));
        if len > MAX_SNAPSHOT_CHUNK_BYTES {
            return Err(invalid_data(format!("snapshot output chunk of {len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        r.read_exact(&mut data)?;
        on_chunk(DiskItem::Chunk(&OutputChunk {
            job: flotilla_state_machine::JobId(job),
            offset,
            data,
        }))?;
    }
}

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

/// Encodes `state` for a snapshot in memory, so its length can head the file.
pub fn encode_state(state: &State) -> io::Result<EncodedState> {
    bincode::serde::encode_to_vec(state, config())
        .map(EncodedState)
        .map_err(invalid_data)
}

/// Writes a snapshot file of `state` (as `encode_state` made it), with no output (a node's
/// own snapshots hold none: `SnapshotWire` adds it when one is sent), and fsyncs it.
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
    w.write_all(&(state.0.len() as u64).to_le_bytes())?;
    w.write_all(&state.0)?;
    // The output section, empty: only its end tag.
    w.write_all(&[0])?;
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
