//! Loader threads: build batches ahead of the trainer into a bounded queue, and hand
//! them out in iteration order whatever the thread count. Batches the trainer is done
//! with can be handed back ([`Loader::recycle`]) so their buffers are reused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::{Batch, DataError, WindowSampler};

/// A running set of loader threads for iterations `start..end`.
pub struct Loader {
    rx: Option<Receiver<(u64, Result<Batch, DataError>)>>,
    pending: BTreeMap<u64, Result<Batch, DataError>>,
    next: u64,
    spare: Sender<Batch>,
    workers: Vec<JoinHandle<()>>,
}

impl Loader {
    /// Starts `threads` workers; at most `queue_length` finished batches wait in the queue.
    pub fn spawn(sampler: Arc<WindowSampler>, start: u64, end: u64, threads: usize, queue_length: usize) -> Loader {
        let (tx, rx) = bounded(queue_length.max(1));
        let (spare, spares) = bounded::<Batch>(queue_length.max(1) + threads.max(1));
        let counter = Arc::new(AtomicU64::new(start));
        let workers = (0..threads.max(1))
            .map(|w| {
                let (tx, counter, sampler) = (tx.clone(), Arc::clone(&counter), Arc::clone(&sampler));
                let spares = spares.clone();
                std::thread::Builder::new()
                    .name(format!("loader-{w}"))
                    .spawn(move || loop {
                        let t = counter.fetch_add(1, Ordering::Relaxed);
                        if t >= end {
                            return;
                        }
                        let mut batch = spares.try_recv().unwrap_or_default();
                        let result = sampler.batch_into(t, &mut batch).map(|()| batch);
                        if tx.send((t, result)).is_err() {
                            return;
                        }
                    })
                    .expect("spawning a loader thread")
            })
            .collect();
        Loader { rx: Some(rx), pending: BTreeMap::new(), next: start, spare, workers }
    }

    /// The batch of the next iteration, waiting for it if needed; `None` past the end.
    ///
    /// # Errors
    /// The sampler's error for that batch (e.g. a subject that cannot be loaded).
    pub fn next_batch(&mut self) -> Option<Result<Batch, DataError>> {
        loop {
            if let Some(batch) = self.pending.remove(&self.next) {
                self.next += 1;
                return Some(batch);
            }
            let (t, batch) = self.rx.as_ref()?.recv().ok()?;
            self.pending.insert(t, batch);
        }
    }
}

impl Loader {
    /// Hands a used batch back so a loader thread reuses its buffers.
    pub fn recycle(&self, batch: Batch) {
        let _ = self.spare.try_send(batch);
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the queue makes blocked workers' `send` fail, so they exit.
        self.rx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
