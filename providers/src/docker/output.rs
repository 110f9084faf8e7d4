//! One Docker worker's output as the leader sees it: a follower task reads the container's log
//! stream once (stdout is the job's output, stderr carries the wrapper's step markers) into the
//! bounded window of `output_window.rs` that the leader drains as it commits output.

use crate::output_window::{CatchUp, Frame, OutputState, OutputWindow, take_output, wait_for_room};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures::StreamExt;
use std::sync::Mutex;

/// Starts following `container`'s logs from the beginning.
pub(crate) fn follow(docker: Docker, container: String, max_buffered_bytes: usize) -> OutputWindow {
    OutputWindow::spawn(move |s, d| async move {
        let mut stream = docker.logs(&container, Some(log_options(true)));
        while let Some(item) = stream.next().await {
            let Some(frame) = frame_of(item, &s) else { return };
            let produced = s.lock().expect("output lock").feed(frame);
            if produced {
                wait_for_room(&s, &d, max_buffered_bytes).await;
            }
        }
        // The followed stream may have ended early: read the whole log once more.
        let mut catch_up = CatchUp::after(s.lock().expect("output lock").total_bytes_seen);
        let mut stream = docker.logs(&container, Some(log_options(false)));
        while let Some(item) = stream.next().await {
            let Some(frame) = frame_of(item, &s) else { return };
            take_output(&s, &d, &catch_up.feed(frame), max_buffered_bytes).await;
        }
        catch_up.finish(&s);
    })
}

/// The container's stdout and stderr from the start, followed or read once to the end.
fn log_options(follow: bool) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        ..Default::default()
    }
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
