//! A thread of the instance beside the stream thread (the DLQ-depth monitor, the
//! liveness heartbeats): it runs until its handle is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::{Error, Result};

/// The handle of a running background thread; dropping it asks the thread to stop
/// (`work` sees its flag turn true) and waits for it.
pub struct BackgroundThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundThread {
    /// Starts thread `name` running `work`, which returns once the flag it is given
    /// turns true.
    ///
    /// # Errors
    /// [`Error::Thread`] (naming `what`) when the thread cannot be started.
    pub fn spawn(
        name: &str,
        what: &'static str,
        work: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(&stopping))
            .map_err(|source| Error::Thread { what, source })?;
        Ok(BackgroundThread {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for BackgroundThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
