//! A snapshot as it is sent to a follower: the file's metadata and state, then the job output
//! and the archived records read from the store page by page as the bytes are sent, then a
//! fresh checksum.
//!
//! A node's own snapshot files hold no output, so that building one costs the state alone.
//! The output sent is the store's as it stands while the snapshot goes out, not as of the
//! snapshot's index: a job's chunks are the same bytes at the same offsets in every state of
//! one history, so what was appended since is what the follower's replay of the log after the
//! snapshot writes again anyway, and a job whose output was removed since is removed again by
//! that replay. Archived records likewise: a pipeline archived since is archived again by the
//! replay (the same record), one removed since is removed again, one whose output was removed
//! since is marked again. Until the replay reaches them, readers prefer the live record in the
//! state over an archived one of the same id. Each page is read afresh (no RocksDB snapshot is held open for the transfer).

use crate::DiskStore;
use crate::disk_store::OutputChunk;
use std::fs::File;
use std::io::{self, Read, Take};

/// Output read from the store per step of the transfer.
const PAGE_BYTES: usize = 1024 * 1024;

enum Phase {
    /// The file's bytes up to the end of its state.
    State,
    /// The store's chunks after the last one sent.
    Output {
        after: Option<(flotilla_state_machine::JobId, u64)>,
    },
    /// The store's archived records after the last one sent (its key).
    History {
        after: Option<Vec<u8>>,
    },
    Done,
}

/// A `Read` of the bytes a follower receives as a snapshot file.
pub struct SnapshotWire {
    state: Take<File>,
    output: DiskStore,
    phase: Phase,
    buf: Vec<u8>,
    pos: usize,
    hasher: crc32fast::Hasher,
}

impl SnapshotWire {
    pub(crate) fn new(state: Take<File>, output: DiskStore) -> Self {
        SnapshotWire {
            state,
            output,
            phase: Phase::State,
            buf: Vec::new(),
            pos: 0,
            hasher: crc32fast::Hasher::new(),
        }
    }

    /// Fills `buf` with the next piece; false once everything was produced.
    fn refill(&mut self) -> io::Result<bool> {
        self.buf.clear();
        self.pos = 0;
        match self.phase {
            Phase::State => {
                (&mut self.state).take(PAGE_BYTES as u64).read_to_end(&mut self.buf)?;
                if self.buf.is_empty() {
                    self.phase = Phase::Output { after: None };
                    return self.refill();
                }
                self.hasher.update(&self.buf);
            }
            Phase::Output { after } => {
                let page: Vec<OutputChunk> = self.output.chunks_after(after, PAGE_BYTES)?;
                match page.last() {
                    None => {
                        self.phase = Phase::History { after: None };
                        return self.refill();
                    }
                    Some(last) => {
                        let next = Some((last.job, last.offset));
                        for chunk in &page {
                            crate::snapshot_file::write_chunk(&mut self.buf, chunk)?;
                        }
                        self.hasher.update(&self.buf);
                        self.phase = Phase::Output { after: next };
                    }
                }
            }
            Phase::History { ref after } => {
                let page = self.output.records_after(after.as_deref(), PAGE_BYTES)?;
                match page.last() {
                    None => {
                        self.buf.push(0);
                        self.hasher.update(&self.buf);
                        let crc = std::mem::replace(&mut self.hasher, crc32fast::Hasher::new()).finalize();
                        self.buf.extend_from_slice(&crc.to_le_bytes());
                        self.phase = Phase::Done;
                    }
                    Some(last) => {
                        let next = Some(last.key.clone());
                        for record in &page {
                            crate::snapshot_file::write_record(&mut self.buf, record)?;
                        }
                        self.hasher.update(&self.buf);
                        self.phase = Phase::History { after: next };
                    }
                }
            }
            Phase::Done => return Ok(false),
        }
        Ok(true)
    }
}

impl Read for SnapshotWire {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
