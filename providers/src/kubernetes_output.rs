//! One pod's output as the leader sees it: a follower task reads the container's log with
//! `follow=true` once, takes the wrapper's in-band step markers out (`kubernetes_markers.rs`)
//! and keeps the output in the bounded window of `output_window.rs`.
//!
//! As with Docker, a followed stream can end before the last bytes of a container that
//! stopped while the reader lagged, so when it ends the whole log is read once more, the
//! output already seen is skipped and the rest taken. Only then is the output `ended`, and
//! only then does the provider report the exit code.

use crate::kubernetes_markers::MarkerScanner;
use crate::output_window::{Frame, OutputState, OutputWindow, wait_for_room};
use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;

/// The container every worker pod runs.
pub(crate) const CONTAINER: &str = "job";

/// Starts following the log of `pod`'s worker container from the beginning.
pub(crate) fn follow(pods: Api<Pod>, pod: String, nonce: String, max_buffered_bytes: usize) -> OutputWindow {
    OutputWindow::spawn(move |s, d| async move {
        let followed = LogParams {
            follow: true,
            container: Some(CONTAINER.into()),
            ..Default::default()
        };
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
        // Read the whole log once more; take only what the followed stream missed.
        let mut skip = s.lock().expect("output lock").total_bytes_seen;
        let mut catch_up = OutputState::default();
        let whole = LogParams {
            follow: false,
            container: Some(CONTAINER.into()),
            ..Default::default()
        };
        let mut scanner = MarkerScanner::new(&nonce);
        let mut missed = Vec::new();
        let read = read_log(&pods, &pod, &whole, &mut scanner, |frame| {
            catch_up.feed(frame);
            let produced = std::mem::take(&mut catch_up.data);
            let skipped = (skip as usize).min(produced.len());
            skip -= skipped as u64;
            missed.extend_from_slice(&produced[skipped..]);
            async {}
        });
        if let Err(e) = read.await {
            s.lock().expect("output lock").failed = Some(e);
            return;
        }
        for chunk in missed.chunks(64 * 1024) {
            s.lock().expect("output lock").push_output(chunk);
            wait_for_room(&s, &d, max_buffered_bytes).await;
        }
        s.lock().expect("output lock").end_with(catch_up);
    })
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
