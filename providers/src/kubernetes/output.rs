//! One pod's output as the leader sees it: a follower task reads the container's log with
//! `follow=true` once, takes the wrapper's in-band step markers out (`markers.rs`)
//! and keeps the output in the bounded window of `output_window.rs`.
//!
//! As with Docker, a followed stream can end before the last bytes of a container that
//! stopped while the reader lagged, so when it ends the whole log is read once more, the
//! output already seen is skipped and the rest taken. Only then is the output `ended`, and
//! only then does the provider report the exit code.

use super::markers::MarkerScanner;
use crate::output_window::{CatchUp, Frame, OutputWindow, take_output, wait_for_room};
use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;

/// The container every worker pod runs.
pub(crate) const CONTAINER: &str = "job";

/// Starts following the log of `pod`'s worker container from the beginning.
pub(crate) fn follow(pods: Api<Pod>, pod: String, nonce: String, max_buffered_bytes: usize) -> OutputWindow {
    OutputWindow::spawn(move |s, d| async move {
        let followed = log_params(true);
        let mut scanner = MarkerScanner::new(&nonce);
        let read = read_log(&pods, &pod, &followed, &mut scanner, |frame| {
            let produced = s.lock().expect("output lock").feed(frame);
            let (s, d) = (s.clone(), d.clone());
            async move {
                if produced {
                    wait_for_room(&s, &d, max_buffered_bytes).await;
                }
            }
        });
        if let Err(e) = read.await {
            s.lock().expect("output lock").failed = Some(e);
            return;
        }
        // The followed stream may have ended early: read the whole log once more.
        let mut catch_up = CatchUp::after(s.lock().expect("output lock").total_bytes_seen);
        let whole = log_params(false);
        let mut scanner = MarkerScanner::new(&nonce);
        let read = read_log(&pods, &pod, &whole, &mut scanner, |frame| {
            let missed = catch_up.feed(frame);
            let (s, d) = (s.clone(), d.clone());
            async move { take_output(&s, &d, &missed, max_buffered_bytes).await }
        });
        if let Err(e) = read.await {
            s.lock().expect("output lock").failed = Some(e);
            return;
        }
        catch_up.finish(&s);
    })
}

/// The worker container's log from the start, followed or read once to the end.
fn log_params(follow: bool) -> LogParams {
    LogParams {
        follow,
        container: Some(CONTAINER.into()),
        ..Default::default()
    }
}

/// Reads a pod's log to its end, handing each frame to `take`.
async fn read_log<F, Fut>(
    pods: &Api<Pod>,
    pod: &str,
    params: &LogParams,
    scanner: &mut MarkerScanner,
    mut take: F,
) -> Result<(), String>
where
    F: FnMut(Frame) -> Fut,
    Fut: Future<Output = ()>,
{
    let stream = pods
        .log_stream(pod, params)
        .await
        .map_err(|e| format!("log of {pod}: {e}"))?;
    futures::pin_mut!(stream);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| format!("log of {pod}: {e}"))?;
        if n == 0 {
            break;
        }
        for frame in scanner.split(&buf[..n]) {
            take(frame).await;
        }
    }
    if let Some(frame) = scanner.finish() {
        take(frame).await;
    }
    Ok(())
}
