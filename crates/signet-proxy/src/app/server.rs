//! The listener: accepts connections up to `--max-connections`, serves each
//! on its own task, and shuts down gracefully (stop accepting, let in-flight
//! requests finish, bounded).
//!
//! A connection over the limit is answered with one small, fixed 503
//! `TOO_MANY_CONNECTIONS` written without waiting, and closed: an attacker
//! opening connections costs us an accept and a write, never a task or a
//! buffer, and connections below the limit are served as usual.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use signet_core::ErrorCode;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use crate::app::admin::{self, Admin};
use crate::app::wiring::{wire, Wired};
use crate::auth::clients::{Clients, KeysFileError};
use crate::auth::replay::RedisSetupError;
use crate::auth::revocation::{RevocationError, Revocations};
use crate::config::Config;
use crate::config::Serving;
use crate::ingress::connection::{self, Timeouts};
use crate::observe::metrics::Metrics;
use crate::pipeline::Proxy;
use crate::refusal::Refusal;
use crate::upstream::credentials::CredentialError;
use crate::upstream::forward::ForwardSetupError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The upstream client could not be built.
    #[error(transparent)]
    Forward(#[from] ForwardSetupError),
    /// The Redis replay store could not be set up.
    #[error(transparent)]
    Redis(#[from] RedisSetupError),
    /// The keys file could not be read or is invalid.
    #[error(transparent)]
    Keys(#[from] KeysFileError),
    /// The revocations file could not be read.
    #[error(transparent)]
    Revocations(#[from] RevocationError),
    /// The upstream credential cannot be used (an unreadable App key).
    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

/// A bound, not yet running proxy server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    admin: Option<(TcpListener, Arc<Admin>)>,
    revocations: Arc<Revocations>,
    proxy: Arc<Proxy>,
    clients: Arc<Clients>,
    timeouts: Timeouts,
    shutdown_timeout: Duration,
    connections: Arc<Semaphore>,
    max_connections: usize,
    /// Bound with `SO_REUSEPORT`, so further runtimes can bind beside it.
    reuse_port: bool,
}

impl Server {
    /// Binds `config.listen` (port 0 picks a free port), with the replay
    /// store the configuration asks for.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let Wired {
            clients,
            revocations,
            proxy,
        } = wire(config)?;
        let admin = match (config.admin_listen, config.admin_key) {
            (Some(addr), Some(key)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                let admin = Admin::new(
                    config,
                    key,
                    Arc::clone(&proxy),
                    Arc::clone(&clients),
                    Arc::clone(&revocations),
                );
                Some((listener, Arc::new(admin)))
            }
            _ => None,
        };
        let reuse_port = config.serving == Serving::PerCore;
        let listener = bind(config.listen, reuse_port).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?,
            ),
            None => None,
        };
        Ok(Server {
            listener,
            metrics_listener,
            admin,
            revocations,
            proxy,
            clients,
            timeouts: Timeouts {
                read: config.read_timeout,
                write: config.write_timeout,
                idle: config.idle_timeout,
            },
            shutdown_timeout: config.shutdown_timeout,
            connections: Arc::new(Semaphore::new(
                config.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            max_connections: config.max_connections,
            reuse_port,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and waits up
    /// to the shutdown timeout for open connections to finish their requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        self.run_on(&[], shutdown).await;
    }

    /// [`Server::run`], with each of `workers` (other runtimes, each on a
    /// thread of its own) accepting on a listener of its own beside this
    /// one (`SO_REUSEPORT`; without it, this runtime accepts alone) and
    /// serving the connections it accepted. The connection limit, the
    /// shutdown and the background tasks are shared: they live here.
    pub async fn run_on(
        self,
        workers: &[tokio::runtime::Handle],
        shutdown: impl Future<Output = ()>,
    ) {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a sender; when all are dropped, all
        // connections are done.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        // Stops with the server, however the server's future ends.
        let _reloads = AbortOnDrop(tokio::spawn(watch_keys_file(
            Arc::clone(&self.clients),
            Arc::clone(self.proxy.metrics()),
        )));
        let _refusal_reports = AbortOnDrop(tokio::spawn(
            crate::observe::logging::report_unlogged_refusals(),
        ));
        let _quota = AbortOnDrop(tokio::spawn(
            Arc::clone(self.proxy.quota()).sync(self.proxy.clock().clone()),
        ));
        let _credentials = AbortOnDrop(tokio::spawn(Arc::clone(self.proxy.credentials()).run(
            self.proxy.forwarder().client(),
            self.proxy.forwarder().upstream(),
        )));
        let _admin = self.admin.map(|(listener, admin)| {
            AbortOnDrop(tokio::spawn(admin::serve(listener, admin, self.timeouts)))
        });
        let _revocations = self.revocations.is_shared().then(|| {
            AbortOnDrop(tokio::spawn(refresh_revocations(
                Arc::clone(&self.revocations),
                self.proxy.clock().clone(),
            )))
        });
        let _metrics = self.metrics_listener.map(|listener| {
            AbortOnDrop(tokio::spawn(crate::app::metrics::serve(
                listener,
                Arc::clone(&self.proxy),
                self.timeouts,
            )))
        });
        let acceptor = Arc::new(Acceptor {
            proxy: Arc::clone(&self.proxy),
            timeouts: self.timeouts,
            connections: Arc::clone(&self.connections),
            max_connections: self.max_connections,
            busy: busy_response(),
        });
        let addr = self.listener.local_addr();
        for worker in workers.iter().filter(|_| self.reuse_port) {
            let listener = match addr.as_ref().map(|addr| {
                let _guard = worker.enter();
                bind(*addr, true)
            }) {
                Ok(Ok(listener)) => listener,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "a runtime could not add its listener; the others serve");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "no local address to add listeners beside");
                    break;
                }
            };
            worker.spawn(accept(
                listener,
                Arc::clone(&acceptor),
                stop_rx.clone(),
                done_tx.clone(),
            ));
        }
        tokio::select! {
            () = accept(self.listener, acceptor, stop_rx.clone(), done_tx.clone()) => {}
            () = shutdown => {}
        }
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        let _ = stop_tx.send(true);
        drop(done_tx);
        if tokio::time::timeout(self.shutdown_timeout, done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("shutdown timeout passed with requests still in flight");
        }
    }
}

/// What every accept loop shares.
struct Acceptor {
    proxy: Arc<Proxy>,
    timeouts: Timeouts,
    connections: Arc<Semaphore>,
    max_connections: usize,
    busy: Vec<u8>,
}

/// Accepts on one listener until `stop`, serving each connection on a task
/// of the runtime this loop runs on. Each task holds a `done` sender.
async fn accept(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let mut refused = RefusedConnections::new();
    let stopping = stopped(stop.clone());
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&acceptor.connections).try_acquire_owned() else {
                        refuse(&stream, &acceptor.busy);
                        refused.count(acceptor.max_connections);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let proxy = Arc::clone(&acceptor.proxy);
                    let connection_stop = stop.clone();
                    let done = done.clone();
                    let timeouts = acceptor.timeouts;
                    tokio::spawn(async move {
                        connection::serve(stream, peer, proxy, timeouts, connection_stop).await;
                        drop(permit);
                        drop(done);
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut stopping => break,
        }
    }
    // Closed before `done` is dropped (parameters drop in reverse order):
    // once `run_on` returns, no listener of its takes a connection.
    drop(listener);
    drop(done);
}

/// Completes once `stop` says so (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// A listening socket on `addr`; with `reuse_port`, others may bind the
/// same address the same way (the kernel spreads connections over them).
/// Must run inside a runtime: the listener registers with its reactor.
fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart need not wait out TIME_WAIT.
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Re-reads shared revocations every second, so a revocation made on any
/// replica is in force on this one within about a second.
async fn refresh_revocations(revocations: Arc<Revocations>, clock: crate::clock::Clock) {
    let mut failing = false;
    loop {
        match revocations.refresh(clock.now()).await {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot refresh shared revocations; the last ones stay in force");
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reloads the keys file on SIGHUP and when it changes on disk (checked
/// every 2 s). A file that fails is logged and the set in force stays.
async fn watch_keys_file(clients: Arc<Clients>, metrics: Arc<Metrics>) {
    // The handler is installed even without a keys file: SIGHUP's default
    // action would end the process (`systemctl reload` must never do that).
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    if clients.keys_file().is_none() {
        #[cfg(unix)]
        if let Some(hangup) = hangup.as_mut() {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: nothing to reload (no --keys-file)");
            }
        }
        return;
    }
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<bool>();
        let why = tokio::select! {
            _ = signalled => "SIGHUP",
            () = tokio::time::sleep(Duration::from_secs(2)) => {
                if !clients.file_changed() {
                    continue;
                }
                "the file changed"
            }
        };
        let reloaded = clients.reload();
        metrics.config_loaded(reloaded.is_ok());
        match reloaded {
            Ok(count) => tracing::info!(clients = count, trigger = why, "keys file reloaded"),
            Err(error) => tracing::error!(
                %error,
                trigger = why,
                "keys file refused; the previous keys stay in force"
            ),
        }
    }
}

/// The whole 503 sent to a connection over the limit.
fn busy_response() -> Vec<u8> {
    let json = Refusal::new(ErrorCode::TooManyConnections).json();
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        json.len()
    )
    .into_bytes();
    response.extend_from_slice(&json);
    response
}

/// Writes what the socket takes right now, never waits, then lets it close.
fn refuse(stream: &TcpStream, response: &[u8]) {
    let _ = stream.try_write(response);
}

/// Counts refused connections and logs them at most once a second, so a
/// connection flood cannot become a log flood.
struct RefusedConnections {
    since_log: u64,
    logged_at: Option<Instant>,
}

impl RefusedConnections {
    fn new() -> Self {
        RefusedConnections {
            since_log: 0,
            logged_at: None,
        }
    }

    fn count(&mut self, limit: usize) {
        self.since_log += 1;
        if self
            .logged_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                refused = self.since_log,
                max_connections = limit,
                "connection limit reached; connections refused"
            );
            self.since_log = 0;
            self.logged_at = Some(Instant::now());
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
