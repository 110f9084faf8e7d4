//! Blob files (a pack, a copy from a peer, a worker's upload) written and read straight
//! to and from the disk with `O_DIRECT`, past the page cache. A blob is written once and read
//! a few times, rarely soon, so caching it buys little, and filling the cache is not free:
//! every page must be found and taken first, which on a virtual machine whose free memory the
//! host reclaims costs a fault on the host per page. Measured on the benchmark machine: `dd`
//! of 1 GiB into the page cache took 2.4 s of system time on pages the guest had not touched
//! lately, against 0.06 s of system time for the same gigabyte with `O_DIRECT`; reading
//! 536 MB back took 0.12 s of system time through the cache and 0.01 s past it. A gigabyte
//! left dirty would also hold up the next fsync of Raft's log (what `write_behind` bounds).
//! MinIO writes large objects the same way.
//!
//! `O_DIRECT` wants the buffer, the offset and the length aligned to the device's block: the
//! bytes go through an aligned buffer of `BUFFER_BYTES`, whole; the tail shorter than a
//! buffer is written after `O_DIRECT` is switched off for the file (a read may end short at
//! the end of the file). Where the filesystem refuses `O_DIRECT` (some do, with `EINVAL`),
//! writes fall back to the page cache through `WriteBehind` and reads to plain reads. The
//! caller syncs the file it gets back from `DirectWriter::finish`, as before: that stays the
//! durability point.

use crate::write_behind::WriteBehind;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

/// Bytes gathered before a write; a multiple of every block size in use.
pub const BUFFER_BYTES: usize = 1 << 20;
/// The alignment asked of the buffer (the largest logical block of common devices).
const ALIGN_BYTES: usize = 4096;

/// A buffer of `len` bytes at an address aligned to `ALIGN_BYTES`: the allocation, and where
/// the aligned part starts in it.
fn aligned_buffer(len: usize) -> (Vec<u8>, usize) {
    let buf = vec![0u8; len + ALIGN_BYTES];
    let start = buf.as_ptr().align_offset(ALIGN_BYTES);
    (buf, start)
}

/// A file written past the page cache when its filesystem allows (see the module's doc).
pub struct DirectWriter {
    mode: Mode,
    written: u64,
}

enum Mode {
    Direct {
        file: File,
        /// Holds `BUFFER_BYTES + ALIGN_BYTES`; the aligned window starts at `start`.
        buf: Vec<u8>,
        start: usize,
        filled: usize,
    },
    Cached(WriteBehind),
}

impl DirectWriter {
    /// Writes `file` (open for writing, empty) past the page cache if its filesystem allows.
    pub fn new(file: File) -> DirectWriter {
        let mode = match set_direct(&file, true) {
            Ok(()) => {
                let (buf, start) = aligned_buffer(BUFFER_BYTES);
                Mode::Direct {
                    file,
                    buf,
                    start,
                    filled: 0,
                }
            }
            Err(_) => Mode::Cached(WriteBehind::new(file)),
        };
        DirectWriter { mode, written: 0 }
    }

    /// Writes `file` through the page cache (`WriteBehind`), as when `O_DIRECT` is refused.
    pub fn cached(file: File) -> DirectWriter {
        DirectWriter {
            mode: Mode::Cached(WriteBehind::new(file)),
            written: 0,
        }
    }

    /// Whether the bytes go past the page cache.
    pub fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Direct { .. })
    }

    /// How many bytes went through.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes what is still buffered and hands the file back, for the caller to sync. Bytes
    /// written but not finished are lost with the writer, as a `BufWriter`'s would be.
    pub fn finish(self) -> io::Result<File> {
        match self.mode {
            Mode::Cached(file) => Ok(file.into_inner()),
            Mode::Direct {
                mut file,
                buf,
                start,
                filled,
            } => {
                if filled > 0 {
                    // The tail is not a whole block: through the page cache.
                    set_direct(&file, false)?;
                    file.write_all(&buf[start..start + filled])?;
                }
                Ok(file)
            }
        }
    }

    /// Writes the full buffer; a filesystem that refuses it after all turns the writer into a
    /// cached one, with the same bytes.
    fn write_buffer(&mut self) -> io::Result<()> {
        let Mode::Direct {
            file,
            buf,
            start,
            filled,
        } = &mut self.mode
        else {
            return Ok(());
        };
        let block = &buf[*start..*start + *filled];
        let mut done = 0;
        while done < block.len() {
            match file.write(&block[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // Refused: the rest through the page cache, from where it stopped.
                    set_direct(file, false)?;
                    let mut cached = WriteBehind::new(file.try_clone()?);
                    cached.write_all(&block[done..])?;
                    self.mode = Mode::Cached(cached);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        *filled = 0;
        Ok(())
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = match &mut self.mode {
            Mode::Cached(file) => file.write(data)?,
            Mode::Direct { buf, start, filled, .. } => {
                let n = data.len().min(BUFFER_BYTES - *filled);
                buf[*start + *filled..*start + *filled + n].copy_from_slice(&data[..n]);
                *filled += n;
                if *filled == BUFFER_BYTES {
                    self.write_buffer()?;
                }
                n
            }
        };
        self.written += n as u64;
        Ok(n)
    }

    /// Whole buffers only: the tail waits for `finish`, where it may be written unaligned.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.mode {
            Mode::Cached(file) => file.flush(),
            Mode::Direct { .. } => Ok(()),
        }
    }
}

/// A file read past the page cache when its filesystem allows, a buffer at a time.
pub struct DirectReader {
    file: File,
    buf: Vec<u8>,
    start: usize,
    chunk_bytes: usize,
    direct: bool,
}

impl DirectReader {
    /// Reads `file` from where it stands (its start) in chunks of `chunk_bytes`, past the page
    /// cache when the chunks are whole blocks and the filesystem allows.
    pub fn new(file: File, chunk_bytes: usize) -> DirectReader {
        let chunk_bytes = chunk_bytes.max(1);
        let direct = chunk_bytes.is_multiple_of(ALIGN_BYTES) && set_direct(&file, true).is_ok();
        let (buf, start) = aligned_buffer(chunk_bytes);
        DirectReader {
            file,
            buf,
            start,
            chunk_bytes,
            direct,
        }
    }

    /// Whether the bytes come past the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The next chunk: `chunk_bytes` long but at the end of the file, empty there.
    pub fn next_chunk(&mut self) -> io::Result<&[u8]> {
        let mut filled = 0;
        while filled < self.chunk_bytes {
            let window = &mut self.buf[self.start + filled..self.start + self.chunk_bytes];
            match self.file.read(window) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Refused after all (or a short read left the offset unaligned): plain reads
                // from where it stopped.
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    set_direct(&self.file, false)?;
                    self.direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(&self.buf[self.start..self.start + filled])
    }
}

/// Turns `O_DIRECT` on or off for an open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` holds open; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, wanted) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `path` in the page cache, as `mincore` sees them.
    fn cached_pages(path: &std::path::Path) -> usize {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len() as usize;
        if len == 0 {
            return 0;
        }
        let page = 4096;
        let pages = len.div_ceil(page);
        let mut residency = vec![0u8; pages];
        // SAFETY: a read-only shared mapping of a file held open, unmapped before return;
        // `residency` has one byte per page of it, as mincore requires.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            assert_eq!(libc::mincore(addr, len, residency.as_mut_ptr()), 0);
            libc::munmap(addr, len);
        }
        residency.iter().filter(|r| **r & 1 == 1).count()
    }

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// On the disk the node's data lives on (the temporary directory may be a tmpfs).
    fn on_disk() -> tempfile::TempDir {
        tempfile::tempdir_in("/var/tmp").unwrap()
    }

    fn write_in_pieces(writer: &mut DirectWriter, data: &[u8]) {
        // Pieces of odd sizes, as zstd and the network hand them over.
        for piece in data.chunks(100_003) {
            writer.write_all(piece).unwrap();
        }
    }

    #[test]
    fn every_size_comes_back_whole_direct_or_cached() {
        let dir = on_disk();
        for (i, len) in [
            0,
            1,
            4095,
            4096,
            BUFFER_BYTES,
            BUFFER_BYTES + 1,
            3 * BUFFER_BYTES + 12_345,
        ]
        .into_iter()
        .enumerate()
        {
            let data = bytes(len);
            for direct in [true, false] {
                let path = dir.path().join(format!("blob-{i}-{direct}"));
                let file = File::create(&path).unwrap();
                let mut writer = if direct {
                    DirectWriter::new(file)
                } else {
                    DirectWriter::cached(file)
                };
                assert_eq!(writer.is_direct(), direct, "O_DIRECT refused on {:?}", dir.path());
                write_in_pieces(&mut writer, &data);
                assert_eq!(writer.written(), len as u64);
                writer.finish().unwrap().sync_all().unwrap();
                assert!(std::fs::read(&path).unwrap() == data, "{len} bytes, direct {direct}");
            }
        }
    }

    #[test]
    fn a_direct_write_leaves_no_more_than_its_tail_in_the_page_cache() {
        let dir = on_disk();
        let path = dir.path().join("blob");
        let len = 8 * BUFFER_BYTES + 100;
        let mut writer = DirectWriter::new(File::create(&path).unwrap());
        write_in_pieces(&mut writer, &bytes(len));
        writer.finish().unwrap().sync_all().unwrap();
        // Through the page cache the whole file would be there (2,049 pages): only the tail's
        // page may be.
        let cached = cached_pages(&path);
        assert!(cached <= 1, "{cached} pages of the blob cached");
        let path = dir.path().join("cached");
        let mut writer = DirectWriter::cached(File::create(&path).unwrap());
        write_in_pieces(&mut writer, &bytes(len));
        writer.finish().unwrap().sync_all().unwrap();
        assert!(cached_pages(&path) > 1000, "the check sees cached pages");
    }

    #[test]
    fn a_reader_gives_every_byte_back_in_chunks_direct_or_not() {
        let dir = on_disk();
        for (i, len) in [0, 1, 4096, BUFFER_BYTES + 1, 3 * BUFFER_BYTES + 12_345]
            .into_iter()
            .enumerate()
        {
            let data = bytes(len);
            let path = dir.path().join(format!("blob-{i}"));
            std::fs::write(&path, &data).unwrap();
            for chunk_bytes in [BUFFER_BYTES, 1000] {
                let mut reader = DirectReader::new(File::open(&path).unwrap(), chunk_bytes);
                assert_eq!(
                    reader.is_direct(),
                    chunk_bytes == BUFFER_BYTES,
                    "O_DIRECT refused on {:?}",
                    dir.path()
                );
                let mut back = Vec::new();
                loop {
                    let chunk = reader.next_chunk().unwrap();
                    if chunk.is_empty() {
                        break;
                    }
                    assert!(chunk.len() == chunk_bytes || back.len() + chunk.len() == len);
                    back.extend_from_slice(chunk);
                }
                assert!(back == data, "{len} bytes in chunks of {chunk_bytes}");
            }
        }
    }

    #[test]
    fn a_direct_read_leaves_the_blob_out_of_the_page_cache() {
        let dir = on_disk();
        let path = dir.path().join("blob");
        let mut writer = DirectWriter::new(File::create(&path).unwrap());
        writer.write_all(&bytes(8 * BUFFER_BYTES)).unwrap();
        writer.finish().unwrap().sync_all().unwrap();
        let mut reader = DirectReader::new(File::open(&path).unwrap(), BUFFER_BYTES);
        while !reader.next_chunk().unwrap().is_empty() {}
        assert_eq!(cached_pages(&path), 0);
        let mut plain = DirectReader::new(File::open(&path).unwrap(), 1000);
        while !plain.next_chunk().unwrap().is_empty() {}
        assert!(cached_pages(&path) > 1000, "the check sees cached pages");
    }
}
