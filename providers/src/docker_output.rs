//! One Docker worker's output as the leader sees it: a follower task reads the container's log
//! stream once (stdout is the job's output, stderr carries the wrapper's step markers) into a
//! bounded window that the leader drains as it commits output through Raft.
//!
//! The window starts at `base`: bytes before it were read at an offset past them, which the
//! leader does only once they are committed. When the window is full the follower stops
//! reading, so a leader that is slow to commit pushes back on the log stream instead of
//! growing memory; Docker keeps the rest.

use crate::provider::ProviderError;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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

    fn push_output(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.total_bytes_seen += bytes.len() as u64;
    }

    /// Takes one log frame in; returns whether it added output.
    fn feed(&mut self, frame: Frame) -> bool {
        let before = self.total_bytes_seen;
        match frame {
            Frame::Output(bytes) => self.push_output(&bytes),
            Frame::Markers(bytes) => self.take_markers(&bytes),
        }
        self.total_bytes_seen > before
    }

    fn take_markers(&mut self, bytes: &[u8]) {
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
}

pub(crate) struct DockerOutput {
    state: Arc<Mutex<OutputState>>,
    drained: Arc<Notify>,
    follower: JoinHandle<()>,
}

impl Drop for DockerOutput {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl DockerOutput {
    /// Starts following `container`'s logs from the beginning.
    pub fn follow(docker: Docker, container: String, max_buffered_bytes: usize) -> DockerOutput {
        let state = Arc::new(Mutex::new(OutputState::default()));
        let drained = Arc::new(Notify::new());
        let (s, d) = (state.clone(), drained.clone());
        let follower = tokio::spawn(async move {
            let options = LogsOptions { follow: true, stdout: true, stderr: true, ..Default::default() };
            let mut stream = docker.logs(&container, Some(options));
            while let Some(item) = stream.next().await {
                let Some(frame) = frame_of(item, &s) else { return };
                let produced = s.lock().expect("output lock").feed(frame);
                if produced {
                    wait_for_room(&s, &d, max_buffered_bytes).await;
                }
            }
            // A followed stream can end before the last frames of a container that stopped
            // while the reader lagged. Read the complete log once more, skip what was seen and
            // take the rest, with the step markers parsed afresh.
            let mut skip = s.lock().expect("output lock").total_bytes_seen;
            let mut catch_up = OutputState::default();
            let options = LogsOptions { follow: false, stdout: true, stderr: true, ..Default::default() };
            let mut stream = docker.logs(&container, Some(options));
            while let Some(item) = stream.next().await {
                let Some(frame) = frame_of(item, &s) else { return };
                catch_up.feed(frame);
                let produced = std::mem::take(&mut catch_up.data);
                let skipped = (skip as usize).min(produced.len());
                skip -= skipped as u64;
                if skipped < produced.len() {
                    s.lock().expect("output lock").push_output(&produced[skipped..]);
                    wait_for_room(&s, &d, max_buffered_bytes).await;
                }
            }
            let mut state = s.lock().expect("output lock");
            state.step_started = catch_up.step_started;
            state.steps_finished = catch_up.steps_finished;
            state.ended = true;
        });
        DockerOutput { state, drained, follower }
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&OutputState) -> T) -> T {
        f(&self.state.lock().expect("output lock"))
    }

    /// Up to `max_bytes` from `offset`. Everything before `offset` is released: the leader reads
    /// an offset only once all output before it is committed.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Vec<u8>, ProviderError> {
        let mut s = self.state.lock().expect("output lock");
        if offset < s.base {
            return Err(ProviderError::Unavailable(format!("output before byte {} was already released", s.base)));
        }
        let release = ((offset - s.base) as usize).min(s.data.len());
        if release > 0 {
            s.data.drain(..release);
            s.base += release as u64;
            self.drained.notify_waiters();
        }
        let take = max_bytes.min(s.data.len());
        Ok(s.data[..take].to_vec())
    }
}

enum Frame {
    Output(Vec<u8>),
    Markers(Vec<u8>),
}

/// The frame of a log stream item; on a stream error, records it and gives `None`.
fn frame_of(item: Result<LogOutput, bollard::errors::Error>, state: &Mutex<OutputState>) -> Option<Frame> {
    match item {
        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => Some(Frame::Output(message.to_vec())),
        Ok(LogOutput::StdErr { message }) => Some(Frame::Markers(message.to_vec())),
        Ok(LogOutput::StdIn { .. }) => Some(Frame::Output(Vec::new())),
        Err(e) => {
            state.lock().expect("output lock").failed = Some(e.to_string());
            None
        }
    }
}

async fn wait_for_room(state: &Mutex<OutputState>, drained: &Notify, max_buffered_bytes: usize) {
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
