//! Bulk work on a thread of its own at a lower CPU priority: packing a job's files (tar,
//! zstd and SHA-256 over up to gigabytes) is throughput work that nothing waits on at
//! millisecond scale, while the same node's Raft heartbeats, appends and API answers are.
//! On a machine with few cores the pack would otherwise take a core from them for seconds
//! and show as their tail latency. A thread's nice value is its own on Linux, so only this
//! work (and the processes it starts, which inherit it) yields; the thread ends with it, so
//! no pool thread is left deprioritised for the next task.

/// How much nicer than the node the background thread runs (nice values go up to 19).
pub const BACKGROUND_NICE_STEP: i32 = 10;

/// Runs `work` on a new thread at `BACKGROUND_NICE_STEP` lower priority and returns what it
/// returned; `None` if the thread could not be started or panicked.
pub async fn run_in_background<T, F>(name: &str, work: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        lower_this_threads_priority();
        let _ = tx.send(work());
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "starting a background thread");
        return None;
    }
    rx.await.ok()
}

/// This thread's nice value, as `getpriority` reports it.
pub fn this_threads_nice() -> i32 {
    // SAFETY: plain system calls on the calling thread's id; no memory is shared.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

fn lower_this_threads_priority() {
    let wanted = (this_threads_nice() + BACKGROUND_NICE_STEP).min(19);
    // SAFETY: as above. Raising one's own nice value needs no privilege; a failure leaves
    // the thread at the node's priority, which is only slower for the cluster.
    let status = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, wanted) };
    if status != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "lowering a background thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_work_runs_nicer_than_its_caller_and_the_caller_is_left_as_it_was() {
        let before = this_threads_nice();
        let inside = run_in_background("nice-test", this_threads_nice).await.unwrap();
        assert_eq!(inside, (before + BACKGROUND_NICE_STEP).min(19));
        assert_eq!(this_threads_nice(), before);
        // A child started there inherits it.
        let child = run_in_background("nice-child", || {
            std::process::Command::new("sh")
                .args(["-c", "cut -d' ' -f19 /proc/self/stat"])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let nice: i32 = String::from_utf8_lossy(&child.stdout).trim().parse().unwrap();
        assert_eq!(nice, (before + BACKGROUND_NICE_STEP).min(19));
    }
}
