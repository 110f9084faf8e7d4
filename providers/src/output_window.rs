//! A worker's output as the leader sees it, shared by the providers that follow a log stream
//! (Docker, Kubernetes): a bounded window of output bytes that the leader drains as it commits
//! them through Raft, and the step markers the worker's wrapper writes.
//!
//! The window starts at `base`: bytes before it were read at an offset past them, which the
//! leader does only once they are committed. When the window is full the follower stops
//! reading, so a leader that is slow to commit pushes back on the log stream instead of
//! growing memory; the engine or API server keeps the rest.

use crate::provider::ProviderError;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A follower task filling an `OutputState`, and the leader's side of it. Dropping it stops
/// the follower.
pub(crate) struct OutputWindow {
    state: Arc<Mutex<OutputState>>,
    drained: Arc<Notify>,
    follower: JoinHandle<()>,
}

impl Drop for OutputWindow {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl OutputWindow {
    /// Spawns `follow` with the window's state and the notification that the leader drained
    /// some of it (for `wait_for_room`).
    pub fn spawn<F, Fut>(follow: F) -> OutputWindow
    where
        F: FnOnce(Arc<Mutex<OutputState>>, Arc<Notify>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let state = Arc::new(Mutex::new(OutputState::default()));
        let drained = Arc::new(Notify::new());
        let follower = tokio::spawn(follow(state.clone(), drained.clone()));
        OutputWindow {
            state,
            drained,
            follower,
        }
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&OutputState) -> T) -> T {
        f(&self.state.lock().expect("output lock"))
    }

    /// Up to `max_bytes` from `offset`; everything before `offset` is released.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        let (data, released) = self.state.lock().expect("output lock").read(offset, max_bytes)?;
        if released {
            self.drained.notify_waiters();
        }
        Ok(data)
    }
}

#[derive(Debug, Default)]
pub(crate) struct OutputState {
    /// Offset of `data[0]` in the worker's whole output.
    pub base: u64,
    pub data: Vec<u8>,
    /// Stderr bytes after the last newline, waiting for the rest of their marker line.
    partial_marker: Vec<u8>,
    pub step_started: Option<u32>,
    pub steps_finished: Vec<(u32, i32)>,
    /// Output bytes ever taken in (the window's end).
    pub total_bytes_seen: u64,
    /// The log stream has ended: the container stopped and all its output is here.
    pub ended: bool,
    /// The log stream broke; the output must be followed again from the start.
    pub failed: Option<String>,
}

impl OutputState {
    pub fn total_bytes(&self) -> u64 {
        self.base + self.data.len() as u64
    }

    pub(crate) fn push_output(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.total_bytes_seen += bytes.len() as u64;
    }

    /// Takes one log frame in; returns whether it added output.
    pub(crate) fn feed(&mut self, frame: Frame) -> bool {
        let before = self.total_bytes_seen;
        match frame {
            Frame::Output(bytes) => self.push_output(&bytes),
            Frame::Markers(bytes) => self.take_markers(&bytes),
        }
        self.total_bytes_seen > before
    }

    pub(crate) fn take_markers(&mut self, bytes: &[u8]) {
        self.partial_marker.extend_from_slice(bytes);
        while let Some(newline) = self.partial_marker.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial_marker.drain(..=newline).collect();
            let text = String::from_utf8_lossy(&line);
            let parts: Vec<&str> = text.split_whitespace().collect();
            match parts.as_slice() {
                ["start", n] if n.parse::<u32>().is_ok() => self.step_started = n.parse().ok(),
                ["end", n, code] => {
                    if let (Ok(n), Ok(code)) = (n.parse(), code.parse()) {
                        self.steps_finished.push((n, code));
                    }
                }
                // Anything else on stderr (the wrapper's own errors) is output too.
                _ => self.push_output(&line),
            }
        }
    }

    /// The stream and its catch-up read are over: the steps are those the complete log shows.
    pub(crate) fn end_with(&mut self, catch_up: OutputState) {
        self.step_started = catch_up.step_started;
        self.steps_finished = catch_up.steps_finished;
        self.ended = true;
    }

    /// Up to `max_bytes` from `offset`. Everything before `offset` is released: the leader
    /// reads an offset only once all output before it is committed. Returns whether bytes
    /// were released (the follower may read again).
    pub(crate) fn read(&mut self, offset: u64, max_bytes: usize) -> Result<(Vec<u8>, bool), ProviderError> {
        if offset < self.base {
            return Err(ProviderError::Unavailable(format!(
                "output before byte {} was already released",
                self.base
            )));
        }
        let release = ((offset - self.base) as usize).min(self.data.len());
        if release > 0 {
            self.data.drain(..release);
            self.base += release as u64;
        }
        let take = max_bytes.min(self.data.len());
        Ok((self.data[..take].to_vec(), release > 0))
    }
}

pub(crate) enum Frame {
    Output(Vec<u8>),
    Markers(Vec<u8>),
}

pub(crate) async fn wait_for_room(state: &Mutex<OutputState>, drained: &Notify, max_buffered_bytes: usize) {
    loop {
        let notified = drained.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if state.lock().expect("output lock").data.len() < max_buffered_bytes {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use super::OutputState;

    #[test]
    fn markers_split_across_frames_are_parsed_and_other_stderr_is_output() {
        let mut s = OutputState::default();
        s.take_markers(b"start 0\nend 0 0\nsta");
        s.take_markers(b"rt 1\nsh: oops\nend 1 ");
        assert_eq!(s.step_started, Some(1));
        assert_eq!(s.steps_finished, vec![(0, 0)]);
        s.take_markers(b"2\n");
        assert_eq!(s.steps_finished, vec![(0, 0), (1, 2)]);
        assert_eq!(s.data, b"sh: oops\n");
    }
}
