//! The proxy under test: its configuration, the real server on its own
//! task ([`RunningProxy`]), the server with its stand-in and signer
//! ([`Env`]), free ports, and the real binary as a child process.

use std::io::Read as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use signet_proxy::{Clock, Config, GitHubToken, Server, Upstream};
use signet_standin::StandIn;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::signer::Signer;
use super::wire::{send, Reply, Request};
use super::{NOW, TOKEN};

/// A configuration for a proxy in front of `upstream_url`, trusting
/// `signer`, listening on `127.0.0.1:0`, with its clock fixed at [`NOW`].
pub fn config(upstream_url: &str, signer: &Signer) -> Config {
    let mut config = Config::new(
        Upstream::parse(upstream_url).expect("upstream URL"),
        vec![signer.key()],
        GitHubToken::new(TOKEN).expect("token"),
    );
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.clock = Clock::fixed(NOW);
    config
}

/// The real proxy server, running on its own task until dropped.
#[derive(Debug)]
pub struct RunningProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningProxy {
    /// Binds and starts the proxy for `config`.
    pub async fn start(config: &Config) -> RunningProxy {
        let server = Server::bind(config).await.expect("the proxy binds");
        Self::run(server)
    }

    /// Starts a proxy with an explicitly sized replay store.
    pub async fn start_with_replay_capacity(config: &Config, capacity: usize) -> RunningProxy {
        let mut config = config.clone();
        config.replay_capacity = capacity;
        let server = Server::bind(&config).await.expect("the proxy binds");
        Self::run(server)
    }

    fn run(server: Server) -> RunningProxy {
        let addr = server.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        RunningProxy {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A recording stand-in for the GitHub API, a signer, and the proxy between
/// them: what almost every test starts with.
#[derive(Debug)]
pub struct Env {
    /// The recording upstream.
    pub upstream: StandIn,
    /// The trusted master key.
    pub signer: Signer,
    /// The proxy.
    pub proxy: RunningProxy,
}

impl Env {
    /// Default configuration.
    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    /// Default configuration changed by `tweak` before the proxy starts.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Env {
        let upstream = StandIn::start(Some(TOKEN)).await.expect("stand-in starts");
        let signer = Signer::new();
        let mut config = config(&upstream.url(), &signer);
        tweak(&mut config);
        let proxy = RunningProxy::start(&config).await;
        Env {
            upstream,
            signer,
            proxy,
        }
    }

    /// Sends `request` to the proxy.
    pub async fn send(&self, request: &Request) -> Reply {
        send(self.proxy.addr, request).await
    }

    /// Asserts that the upstream received no request at all.
    pub fn assert_nothing_forwarded(&self) {
        let seen = self.upstream.requests();
        assert!(
            seen.is_empty(),
            "the upstream must receive nothing, got {:?}",
            seen.iter()
                .map(|r| format!("{} {}", r.method, r.target))
                .collect::<Vec<_>>()
        );
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// The `signet-proxy` binary cargo built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_signet-proxy");

/// The binary with an empty environment but `PATH`.
pub fn binary(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// How a child process ended, and what it printed.
pub struct Exited {
    /// Whether it exited 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Waits (bounded) for `child` to exit and collects its output.
pub fn wait_exit(mut child: Child, limit: Duration) -> Exited {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("signet-proxy did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Exited {
        success: status.success(),
        stdout,
        stderr,
    }
}

/// Polls `/healthz` until the started binary answers (bounded).
pub async fn wait_until_healthy(addr: SocketAddr, child: &mut Child) -> Reply {
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("signet-proxy exited early: {status}");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return send(addr, &Request::get("/healthz")).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("signet-proxy never listened on {addr}");
}

/// Sends SIGTERM to `child`.
pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM");
}

/// The wall clock, in unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
