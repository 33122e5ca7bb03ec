//! The serving model: which threads run the proxy (`--runtime`).
//!
//! * `multi-thread` (the default): one work-stealing tokio runtime with a
//!   worker per core; any worker may run any connection.
//! * `per-core`: one single-threaded tokio runtime per core, each accepting
//!   on its own `SO_REUSEPORT` listener, so the kernel spreads connections
//!   over the cores and a connection's request, its upstream exchange (each
//!   runtime keeps its own upstream connection pool) and its response never
//!   leave the thread that accepted it: no work is handed between threads.
//!
//! `per-core` spends a few percent less CPU per request; `multi-thread` has
//! the lower tail latency at a moderate rate, because a connection whose
//! core is busy can be served by another. `docs/PERFORMANCE.md` has the
//! measurements behind the default. Everything else — the connection limit,
//! graceful shutdown, reloads, the admin and metrics listeners — behaves the
//! same in both: shared state lives in one `Proxy` behind an `Arc`, and the
//! background tasks run on the first runtime.

use std::io;
use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

pub use crate::config::Serving;

/// The runtimes of a serving model: the one `main` blocks on, and for
/// `per-core` one more per further core, each driven by its own thread.
#[derive(Debug)]
pub struct Runtimes {
    main: Runtime,
    workers: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Runtimes {
    /// Builds the runtimes for `serving`, with `cores` threads in all
    /// (the machine's parallelism when `None`).
    pub fn new(serving: Serving, cores: Option<usize>) -> io::Result<Self> {
        let cores = cores
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
            .max(1);
        match serving {
            Serving::MultiThread => Ok(Runtimes {
                main: Builder::new_multi_thread()
                    .worker_threads(cores)
                    .enable_all()
                    .build()?,
                workers: Vec::new(),
            }),
            Serving::PerCore => {
                let main = Builder::new_current_thread().enable_all().build()?;
                let workers = (1..cores).map(Worker::start).collect::<io::Result<_>>()?;
                Ok(Runtimes { main, workers })
            }
        }
    }

    /// The runtime the caller's thread blocks on.
    pub fn main(&self) -> &Runtime {
        &self.main
    }

    /// The further runtimes, each on a thread of its own (none for
    /// `multi-thread`).
    pub fn workers(&self) -> Vec<Handle> {
        self.workers.iter().map(|w| w.handle.clone()).collect()
    }

    /// Stops every runtime, giving tasks that are still running up to
    /// `timeout` (they were told to finish by the server's shutdown).
    pub fn shutdown(self, timeout: std::time::Duration) {
        for worker in self.workers {
            let _ = worker.stop.send(());
            let _ = worker.thread.join();
        }
        self.main.shutdown_timeout(timeout);
    }
}

impl Worker {
    fn start(index: usize) -> io::Result<Self> {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("signet-core-{index}"))
            .spawn(move || {
                // A current-thread runtime runs its tasks only while someone
                // blocks on it: this thread does, until told to stop.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            })?;
        Ok(Worker {
            handle,
            stop,
            thread,
        })
    }
}
