//! Group commit for log appends.
//!
//! `append` writes entries to RocksDB without syncing (they are readable at once, as openraft
//! requires) and queues its completion callback here. One thread takes every queued callback,
//! fsyncs the WAL once, and only then reports them persisted. Under load many appends share one
//! fsync; no append is acknowledged before its bytes are on disk.

use crate::TypeConfig;
use crate::store_stats::StoreStats;
use openraft::storage::IOFlushed;
use rocksdb::DB;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc;

/// Most callbacks waiting for one fsync; `append` waits for room beyond that.
pub const SYNC_QUEUE_CAPACITY: usize = 4096;

pub(crate) struct WalSyncer {
    tx: Option<mpsc::Sender<(Instant, IOFlushed<TypeConfig>)>>,
    thread: Option<JoinHandle<()>>,
}

impl WalSyncer {
    pub fn start(db: Arc<DB>, stats: Arc<StoreStats>) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<(Instant, IOFlushed<TypeConfig>)>(SYNC_QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("flotilla-wal-sync".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let result = db.flush_wal(true);
                    stats.synced();
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "wal fsync failed; appends are reported failed");
                    }
                    for (written_at, callback) in batch.drain(..) {
                        if result.is_ok() {
                            stats.appended(written_at.elapsed());
                        }
                        callback.io_completed(result.clone().map_err(std::io::Error::other));
                    }
                }
            })?;
        Ok(WalSyncer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `callback` to be completed after the next fsync of the WAL.
    pub async fn after_sync(&self, callback: IOFlushed<TypeConfig>) -> std::io::Result<()> {
        let tx = self.tx.as_ref().expect("sender lives until drop");
        tx.send((Instant::now(), callback))
            .await
            .map_err(|_| std::io::Error::other("wal sync thread has stopped"))
    }
}

impl Drop for WalSyncer {
    /// Closes the queue and waits for the thread, so the database is closed when the last
    /// handle goes and the directory can be opened again at once.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
