//! Writing a large file without piling its bytes up in the page cache: after every
//! `WINDOW_BYTES` written, the kernel is asked to start writing that window out
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), and the window before it is waited for, so at
//! most two windows are dirty at a time. Without it a gigabyte blob sits dirty until its final
//! sync, and on a filesystem with a shared journal (ext4's ordered mode) the next fsync of
//! Raft's log waits behind all of it: the commits' tail. RocksDB's `bytes_per_sync` does the
//! same for its own files. The final `sync_all` stays the durability point; this only spreads
//! the work out.

use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// Bytes written between two write-outs.
pub const WINDOW_BYTES: u64 = 8 << 20;

/// A file whose written bytes are sent to disk a window at a time (see the module's doc).
pub struct WriteBehind {
    file: std::fs::File,
    written: u64,
    /// Where the window being filled starts.
    window_start: u64,
}

impl WriteBehind {
    pub fn new(file: std::fs::File) -> Self {
        WriteBehind {
            file,
            written: 0,
            window_start: 0,
        }
    }

    pub fn into_inner(self) -> std::fs::File {
        self.file
    }

    /// How many bytes went through.
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.window_start >= WINDOW_BYTES {
            let end = self.written;
            write_out(
                &self.file,
                self.window_start,
                end - self.window_start,
                self.window_start,
            );
            self.window_start = end;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Starts the write-out of `len` bytes at `offset` of `file`, after waiting for everything
/// before `wait_before` to be written. Advisory: an error (a filesystem without it) changes
/// nothing but the pace, so it is ignored.
fn write_out(file: &impl AsRawFd, offset: u64, len: u64, wait_before: u64) {
    let fd = file.as_raw_fd();
    // SAFETY: plain system calls on a file descriptor the caller holds open; no memory is
    // passed.
    unsafe {
        if wait_before > 0 {
            libc::sync_file_range(
                fd,
                0,
                wait_before as libc::off64_t,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
        libc::sync_file_range(
            fd,
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Dirty bytes of the page cache as `/proc/meminfo` reports them, for tests.
pub fn dirty_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("Dirty:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_write_leaves_no_more_than_a_few_windows_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = WriteBehind::new(std::fs::File::create(dir.path().join("blob")).unwrap());
        let chunk = vec![7u8; 1 << 20];
        let mut most_dirty_growth = 0u64;
        let before = dirty_bytes().unwrap();
        for _ in 0..256 {
            file.write_all(&chunk).unwrap();
            let now = dirty_bytes().unwrap();
            most_dirty_growth = most_dirty_growth.max(now.saturating_sub(before));
        }
        assert_eq!(file.written(), 256 << 20);
        // 256 MiB written; without write-behind they would all be dirty here (the kernel's
        // own write-back starts at 10% of memory). Other processes dirty pages too, so the
        // bound is loose: a quarter of what was written.
        assert!(most_dirty_growth < 64 << 20, "{most_dirty_growth} bytes dirty at once");
        file.into_inner().sync_all().unwrap();
    }
}
