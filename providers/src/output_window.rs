//! A worker's output as the leader sees it, shared by the providers that follow a log stream
//! (Docker, Kubernetes): a bounded window of output bytes that the leader drains as it commits
//! them through Raft, and the step markers the worker's wrapper writes.
//!
//! The window starts at `base`: bytes before it were read at an offset past them, which the
//! leader does only once they are committed. When the window is full the follower stops
//! reading, so a leader that is slow to commit pushes back on the log stream instead of
//! growing memory; the engine or API server keeps the rest.

use crate::provider::{Observation, ProviderError};
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

    /// Fills in what the window shows of a started worker: the steps, the output counted so
    /// far, and `exit_code` (what the engine reports) only once the stream has ended, that is
    /// once every byte of output is here. `Err` when the stream broke: the caller follows the
    /// log again from the start.
    pub fn observe(&self, o: &mut Observation, exit_code: Option<i32>) -> Result<(), String> {
        let s = self.state.lock().expect("output lock");
        if let Some(e) = &s.failed {
            return Err(e.clone());
        }
        o.step_started = s.step_started;
        o.steps_finished = s.steps_finished.clone();
        o.output_bytes = s.total_bytes();
        o.exit_code = exit_code.filter(|_| s.ended);
        Ok(())
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
    fn end_with(&mut self, catch_up: OutputState) {
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

/// The second, whole read of a log once its followed stream has ended: a followed stream can
/// end before the last frames of a worker that stopped while the reader lagged (seen with
/// Docker: 190 KB of 1 MB missing), so the complete log is read again, its step markers parsed
/// afresh, and only the output the followed stream did not see is taken.
pub(crate) struct CatchUp {
    /// Output bytes of the whole log still to skip (the followed stream saw them).
    skip: u64,
    whole: OutputState,
}

impl CatchUp {
    /// A catch-up of a log whose followed stream saw `seen_bytes` of output.
    pub fn after(seen_bytes: u64) -> CatchUp {
        CatchUp {
            skip: seen_bytes,
            whole: OutputState::default(),
        }
    }

    /// Takes one frame of the whole log; returns its output bytes that were not seen before.
    pub fn feed(&mut self, frame: Frame) -> Vec<u8> {
        self.whole.feed(frame);
        let mut produced = std::mem::take(&mut self.whole.data);
        let skipped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(produced.len());
        self.skip -= skipped as u64;
        produced.drain(..skipped);
        produced
    }

    /// Ends `state`'s stream with the steps the whole log shows.
    pub fn finish(self, state: &Mutex<OutputState>) {
        state.lock().expect("output lock").end_with(self.whole);
    }
}

pub(crate) enum Frame {
    Output(Vec<u8>),
    Markers(Vec<u8>),
}

/// Appends output bytes the follower read (none is a no-op) and waits until the window has
/// room again.
pub(crate) async fn take_output(state: &Mutex<OutputState>, drained: &Notify, bytes: &[u8], max_buffered_bytes: usize) {
    if bytes.is_empty() {
        return;
    }
    state.lock().expect("output lock").push_output(bytes);
    wait_for_room(state, drained, max_buffered_bytes).await;
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
    use super::{CatchUp, Frame, OutputState};
    use crate::provider::Observation;
    use std::sync::Mutex;

    #[test]
    fn a_catch_up_takes_only_the_output_the_followed_stream_missed() {
        // The followed stream saw "abc" and the first marker, then ended early.
        let mut catch_up = CatchUp::after(3);
        assert_eq!(catch_up.feed(Frame::Markers(b"start 0\n".to_vec())), b"");
        assert_eq!(catch_up.feed(Frame::Output(b"ab".to_vec())), b"");
        assert_eq!(catch_up.feed(Frame::Output(b"cdef".to_vec())), b"def");
        assert_eq!(catch_up.feed(Frame::Markers(b"end 0 0\n".to_vec())), b"");
        assert_eq!(catch_up.feed(Frame::Output(b"g".to_vec())), b"g");
        let state = Mutex::new(OutputState::default());
        catch_up.finish(&state);
        let s = state.lock().unwrap();
        assert!(s.ended);
        assert_eq!(s.step_started, Some(0));
        assert_eq!(s.steps_finished, vec![(0, 0)]);
    }

    #[tokio::test]
    async fn an_exit_code_is_observed_only_once_the_stream_has_ended() {
        let window = super::OutputWindow::spawn(|_, _| async {});
        let mut o = Observation::default();
        window.state.lock().unwrap().push_output(b"12345");
        window.observe(&mut o, Some(0)).unwrap();
        assert_eq!((o.output_bytes, o.exit_code), (5, None));
        window.state.lock().unwrap().ended = true;
        window.observe(&mut o, Some(0)).unwrap();
        assert_eq!((o.output_bytes, o.exit_code), (5, Some(0)));
        window.state.lock().unwrap().failed = Some("reset".into());
        assert_eq!(window.observe(&mut o, Some(0)), Err("reset".to_string()));
    }

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
