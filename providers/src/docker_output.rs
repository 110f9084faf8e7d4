//! One Docker worker's output as the leader sees it: a follower task reads the container's log
//! stream once (stdout is the job's output, stderr carries the wrapper's step markers) into the
//! bounded window of `output_window.rs` that the leader drains as it commits output.

use crate::output_window::{Frame, OutputState, OutputWindow, wait_for_room};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures::StreamExt;
use std::sync::Mutex;

/// Starts following `container`'s logs from the beginning.
pub(crate) fn follow(docker: Docker, container: String, max_buffered_bytes: usize) -> OutputWindow {
    OutputWindow::spawn(move |s, d| async move {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
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
        let options = LogsOptions {
            follow: false,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
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
        s.lock().expect("output lock").end_with(catch_up);
    })
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
