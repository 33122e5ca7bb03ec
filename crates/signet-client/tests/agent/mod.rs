//! `signet agent` end to end, with real things only: the real `signet` and
//! `signet-proxy` binaries on `127.0.0.1:0`, the GitHub API stand-in
//! in-process as the proxy's upstream, and the real `gh`, PyGithub and
//! octokit as clients (installed by `scripts/test`; a missing one fails its
//! test with a message saying so).
//!
//! Every client runs with the variables `signet agent env` prints, a dummy
//! token, and `HTTPS_PROXY`/`ALL_PROXY` pointing at a closed loopback port,
//! so a request that tried to go anywhere but through the agent fails
//! instead of leaving the machine. Each test then checks what the stand-in
//! received: every request the agent forwarded and nothing else, each with
//! the shared token and never the client's dummy one.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use signet_standin::{Recorded, StandIn};
use tempfile::TempDir;

use super::{keygen, signet, SHARED_TOKEN};

/// The dummy token every client is given (what `signet agent env` prints).
const DUMMY_TOKEN: &str = "signet-agent-dummy-token";

/// A child process killed when dropped, whose output is collected.
struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Running {
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line into `output` until `ready` matches a line
/// (returns what it extracted), then keeps draining in the background.
fn follow(
    stream: impl std::io::Read + Send + 'static,
    output: Arc<Mutex<String>>,
    ready: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut found = None;
    let mut line = String::new();
    while found.is_none() {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        output.lock().unwrap().push_str(&line);
        found = ready(&line);
    }
    std::thread::spawn(move || {
        let mut rest = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    rest.push_str(&String::from_utf8_lossy(&buf[..n]));
                    output.lock().unwrap().push_str(&rest);
                    rest.clear();
                }
            }
        }
    });
    found
}

/// The `signet-proxy` binary beside `signet` in the target directory
/// (`cargo test --workspace` builds it).
fn proxy_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_signet")).with_file_name("signet-proxy");
    assert!(
        path.exists(),
        "the signet-proxy binary is missing at {}: run `cargo build -p signet-proxy` \
         (or the whole suite, ./scripts/test)",
        path.display()
    );
    path
}

/// The real `signet-proxy` binary in front of the stand-in, trusting `public`.
fn start_proxy(upstream: &StandIn, public: &str) -> (Running, String) {
    let mut child = Process::new(proxy_binary())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GITHUB_TOKEN", SHARED_TOKEN)
        .env("SIGNET_MASTER_PUBLIC_KEY", public)
        .args(["--listen", "127.0.0.1", "--port", "0"])
        .args(["--github-api", &upstream.url()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    let addr = follow(child.stdout.take().unwrap(), Arc::clone(&output), |line| {
        let json: serde_json::Value = serde_json::from_str(line).ok()?;
        (json["message"] == "signet-proxy listening")
            .then(|| json["addr"].as_str().map(str::to_owned))
            .flatten()
    });
    let running = Running { child, output };
    let addr = addr.unwrap_or_else(|| panic!("signet-proxy did not start: {}", running.output()));
    (running, format!("http://{addr}"))
}

/// The real `signet agent` with `args`, on `127.0.0.1:0`.
fn start_agent(args: &[&str]) -> (Running, SocketAddr) {
    let mut command = Process::new(env!("CARGO_BIN_EXE_signet"));
    for var in [
        "SIGNET_KEY_FILE",
        "SIGNET_PROXY",
        "SIGNET_PURPOSE",
        "SIGNET_GITHUB_API",
    ] {
        command.env_remove(var);
    }
    let mut child = command
        .arg("agent")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    let addr = follow(child.stderr.take().unwrap(), Arc::clone(&output), |line| {
        let rest = line.split("listening on http://").nth(1)?;
        Some(rest.split(',').next()?.to_owned())
    });
    let running = Running { child, output };
    let addr = addr
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("signet agent did not start: {}", running.output()));
    (running, addr)
}

/// Client tool → `signet agent` → `signet-proxy` → the stand-in.
struct Stack {
    dir: TempDir,
    upstream: StandIn,
    agent: Running,
    agent_addr: SocketAddr,
    proxy: Running,
    proxy_url: String,
    key: String,
    _runtime: tokio::runtime::Runtime,
}

impl Stack {
    fn start() -> Stack {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let upstream = runtime
            .block_on(StandIn::start(Some(SHARED_TOKEN)))
            .unwrap();
        let dir = TempDir::new().unwrap();
        let (key, public) = keygen(&dir);
        let (proxy, proxy_url) = start_proxy(&upstream, &public);
        let key = key.to_str().unwrap().to_owned();
        let (agent, agent_addr) = start_agent(&[
            "--key",
            &key,
            "--proxy",
            &proxy_url,
            "--github-api-url",
            &upstream.url(),
        ]);
        Stack {
            dir,
            upstream,
            agent,
            agent_addr,
            proxy,
            proxy_url,
            key,
            _runtime: runtime,
        }
    }

    /// What `signet agent env` prints for this agent, as variables.
    fn agent_env(&self) -> Vec<(String, String)> {
        let output = signet()
            .args(["agent", "env", "--listen", &self.agent_addr.to_string()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let (name, value) = line
                    .strip_prefix("export ")
                    .and_then(|l| l.split_once('='))
                    .unwrap_or_else(|| panic!("not an export line: {line:?}"));
                (name.to_owned(), value.trim_matches('\'').to_owned())
            })
            .collect()
    }

    /// `program` with the agent's environment, a throwaway HOME and gh
    /// configuration, and every other way out closed.
    fn client(&self, program: &str) -> Process {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut command = Process::new(program);
        for var in [
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "no_proxy",
            "GH_HOST",
            "GH_TOKEN",
        ] {
            command.env_remove(var);
            command.env_remove(var.to_ascii_uppercase());
        }
        let closed = "http://127.0.0.1:9";
        command
            .envs(self.agent_env())
            .env("HTTPS_PROXY", closed)
            .env("ALL_PROXY", closed)
            .env("GH_CONFIG_DIR", home.join("gh"))
            .env("GH_NO_UPDATE_NOTIFIER", "1")
            .env("GH_PROMPT_DISABLED", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs a client to completion; its stdout on success.
    fn run(&self, mut command: Process) -> String {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{command:?} failed: {}\nstderr: {}\nagent: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.agent.output()
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// The stand-in's requests, checked: exactly as many as the agent
    /// forwarded (so none went elsewhere), each with the shared token, none
    /// with the client's dummy token or a proof.
    fn forwarded(&self) -> Vec<Recorded> {
        let seen = self.upstream.requests();
        // The agent's log reaches us through a pipe and a reader thread, so
        // its last lines may lag the responses a little.
        let count = |log: &str| log.lines().filter(|l| l.contains(" -> 2")).count();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut agent_log = self.agent.output();
        while count(&agent_log) < seen.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            agent_log = self.agent.output();
        }
        assert_eq!(seen.len(), count(&agent_log), "agent log:\n{agent_log}");
        for request in &seen {
            assert_eq!(
                request.headers["authorization"],
                format!("Bearer {SHARED_TOKEN}").as_str(),
                "{request:?}"
            );
            assert!(!request.headers.contains_key("signet-proof"));
            for value in request.headers.values() {
                assert!(!String::from_utf8_lossy(value.as_bytes()).contains(DUMMY_TOKEN));
            }
        }
        seen
    }
}

/// Fails with what to do when a real client is missing.
fn require(program: &str, args: &[&str], what: &str) {
    let found = Process::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{what} is not installed: run ./scripts/test, which installs gh (apt), \
         PyGithub (pip) and @octokit/rest (npm, into crates/signet-client/tests/node)"
    );
}

fn targets(seen: &[Recorded]) -> Vec<String> {
    seen.iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

// ------------------------------------------------------------------- gh

#[test]
fn agent_gh_api_reaches_the_stand_in_with_the_shared_token_and_urls_point_back_at_the_agent() {
    require("gh", &["--version"], "gh");
    let stack = Stack::start();
    let mut gh = stack.client("gh");
    gh.args(["api", "/repos/o/r"]);
    let repo: serde_json::Value = serde_json::from_str(&stack.run(gh)).unwrap();
    assert_eq!(repo["full_name"], "o/r");
    assert_eq!(repo["url"], "http://api.github.localhost/repos/o/r");
    assert_eq!(
        repo["issues_url"],
        "http://api.github.localhost/repos/o/r/issues{/number}"
    );
    assert_eq!(repo["html_url"], "https://github.com/o/r", "not an API URL");
    assert_eq!(targets(&stack.forwarded()), ["GET /repos/o/r"]);
}

#[test]
fn agent_gh_api_paginate_follows_every_page_through_the_agent() {
    require("gh", &["--version"], "gh");
    let stack = Stack::start();
    let mut gh = stack.client("gh");
    gh.args(["api", "--paginate", "/repos/o/r/issues", "--jq", ".[].url"]);
    let urls = stack.run(gh);
    let expected: Vec<String> = (1..=signet_standin::ISSUES)
        .map(|n| format!("http://api.github.localhost/repos/o/r/issues/{n}"))
        .collect();
    assert_eq!(urls.lines().collect::<Vec<_>>(), expected);
    let seen = stack.forwarded();
    assert_eq!(seen.len(), 3, "{:?}", targets(&seen));
    assert!(seen[2].target.ends_with("page=3"), "{:?}", targets(&seen));
}

#[test]
fn agent_gh_api_graphql_reaches_the_proxy_graphql_endpoint() {
    require("gh", &["--version"], "gh");
    let stack = Stack::start();
    let mut gh = stack.client("gh");
    gh.args(["api", "graphql", "-f", "query={viewer{login}}"]);
    let answer: serde_json::Value = serde_json::from_str(&stack.run(gh)).unwrap();
    assert_eq!(answer["data"]["viewer"]["login"], "signet-demo");
    let seen = stack.forwarded();
    assert_eq!(targets(&seen), ["POST /graphql"]);
    assert!(String::from_utf8_lossy(&seen[0].body).contains("viewer{login}"));
}

// ------------------------------------------------------------- PyGithub

#[test]
fn agent_pygithub_lazy_and_non_lazy_objects_follow_their_urls_through_the_agent() {
    require("python3", &["-c", "import github"], "PyGithub");
    let stack = Stack::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/pygithub_check.py");
    let mut python = stack.client("python3");
    python.arg(script);
    let seen: serde_json::Value = serde_json::from_str(&stack.run(python)).unwrap();
    let base = format!("http://{}", stack.agent_addr);
    assert_eq!(seen["full_name"], "o/r");
    assert_eq!(seen["url"], format!("{base}/repos/o/r"));
    assert_eq!(seen["issues"], serde_json::json!([1, 2, 3, 4, 5]));
    assert_eq!(seen["lazy_issues"], serde_json::json!([1, 2, 3, 4, 5]));
    assert_eq!(seen["issue_url"], format!("{base}/repos/o/r/issues/1"));
    let forwarded = targets(&stack.forwarded());
    assert_eq!(forwarded[0], "GET /repos/o/r");
    assert!(forwarded.contains(&"GET /repos/o/r/issues?page=3".to_owned()));
    assert_eq!(
        forwarded.last().map(String::as_str),
        Some("GET /repos/o/r/issues/1")
    );
}

// -------------------------------------------------------------- octokit

#[test]
fn agent_octokit_get_and_paginate_go_through_the_agent() {
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    require("node", &["--version"], "node");
    assert!(
        node_dir.join("node_modules/@octokit/rest").exists(),
        "@octokit/rest is not installed: run ./scripts/test, which runs npm ci in {}",
        node_dir.display()
    );
    let stack = Stack::start();
    let mut node = stack.client("node");
    node.arg(node_dir.join("octokit_check.mjs"))
        .current_dir(&node_dir);
    let seen: serde_json::Value = serde_json::from_str(&stack.run(node)).unwrap();
    let base = format!("http://{}", stack.agent_addr);
    assert_eq!(seen["url"], format!("{base}/repos/o/r"));
    assert_eq!(seen["issues"], serde_json::json!([1, 2, 3, 4, 5]));
    assert_eq!(seen["third_url"], format!("{base}/repos/o/r/issues/3"));
    assert_eq!(
        targets(&stack.forwarded()),
        [
            "GET /repos/o/r",
            "GET /repos/o/r/issues?per_page=2",
            "GET /repos/o/r/issues?per_page=2&page=2",
            "GET /repos/o/r/issues?per_page=2&page=3",
            "GET /repos/o/r/issues/3",
        ]
    );
    // Node's fetch marks every request `Sec-Fetch-Mode: cors`: alone, that is
    // no browser's mark (`agent_refuses_a_sec_fetch_site_other_than_none`).
    assert!(stack
        .forwarded()
        .iter()
        .all(|r| r.headers.get("sec-fetch-mode").is_some_and(|v| v == "cors")));
}

// ------------------------------------------------- the agent's own answers

/// One raw HTTP/1.1 exchange (the request is written as given).
fn exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

/// The data of a chunked body (JSON answers are re-framed by the agent,
/// whose rewrite may change their length).
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    data
}

fn error_code(body: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    json["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn agent_answers_its_own_errors_as_json_and_passes_the_proxys_refusals_through() {
    let stack = Stack::start();
    let addr = stack.agent_addr;
    let get = |target: &str, extra: &str| {
        exchange(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"),
        )
    };

    let (status, _, body) = get("http://api.github.com/user", "");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "AGENT_HOST_REFUSED")
    );
    let (status, _, body) = exchange(
        addr,
        "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (405, "AGENT_CONNECT_REFUSED")
    );
    let (status, _, body) = exchange(
        addr,
        "GET /user HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "AGENT_HOST_REFUSED")
    );
    let big = 1024 * 1024 + 1;
    let (status, _, body) = exchange(
        addr,
        &format!(
            "POST /echo HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {big}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "AGENT_REQUEST_TOO_LARGE")
    );
    assert!(
        stack.upstream.requests().is_empty(),
        "nothing was forwarded"
    );

    // A refusal by the proxy reaches the client exactly as the proxy sent it:
    // dot-segments are the proxy's to refuse.
    let (status, _, body) = get("/repos/o/r/../../x", "");
    assert_eq!(
        (status, error_code(&body).as_str()),
        (400, "INVALID_REQUEST_TARGET")
    );
    assert!(stack.upstream.requests().is_empty());

    // A body is signed and forwarded exactly once, the dummy token dropped.
    let (status, _, body) = exchange(
        addr,
        &format!(
            "POST /echo HTTP/1.1\r\nHost: {addr}\r\nAuthorization: token {DUMMY_TOKEN}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ),
    );
    assert_eq!((status, body.as_str()), (200, "hello"));
    let seen = stack.forwarded();
    assert_eq!(targets(&seen), ["POST /echo"]);
    assert_eq!(&seen[0].body[..], b"hello");
}

#[test]
fn agent_says_so_in_json_when_the_proxy_is_unreachable() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (_agent, addr) = start_agent(&["--key", key.to_str().unwrap(), "--proxy", &proxy]);
    let (status, head, body) = exchange(
        addr,
        &format!("GET /user HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(
        (status, error_code(&body).as_str()),
        (502, "AGENT_PROXY_UNREACHABLE")
    );
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
}

#[test]
fn agent_refuses_a_non_loopback_listen_address_without_allow_remote() {
    let dir = TempDir::new().unwrap();
    let (key, _) = keygen(&dir);
    let output = signet()
        .args(["agent", "--listen", "0.0.0.0:0", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

#[test]
fn agent_refuses_to_start_without_a_readable_key() {
    let output = signet()
        .args([
            "agent",
            "--listen",
            "127.0.0.1:0",
            "--key",
            "/nonexistent/key.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/key.pem"));
}

// ------------------------------------------------------------ web pages
//
// The agent serves no web page, so a request a browser made for a page is
// never the user's tool: any page the user visits could otherwise read and
// write GitHub with the user's key (`fetch("http://127.0.0.1:7180/user")`).

/// The `Access-Control-*` lines of a response head.
fn access_control_lines(head: &str) -> Vec<&str> {
    head.lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("access-control-"))
        .collect()
}

/// Sends `request` to the agent and checks that the agent itself refused it
/// as a browser's: 403 `AGENT_BROWSER_REFUSED` in JSON, and nothing that
/// would let a page read the answer.
fn assert_refused_as_a_browsers(stack: &Stack, request: &str) {
    let (status, head, body) = exchange(stack.agent_addr, request);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (403, "AGENT_BROWSER_REFUSED"),
        "{request:?}"
    );
    assert!(
        access_control_lines(&head).is_empty(),
        "{request:?}: {head}"
    );
}

/// An ordinary request's path, sent after the ones under test.
const LAST_REQUEST: &str = "/repos/signet/last-request";

impl Stack {
    /// Sends one ordinary request ([`LAST_REQUEST`]) through the agent, then returns the paths
    /// the proxy logged up to and including it: requests end in the order
    /// they are sent here, so anything the agent forwarded earlier is in.
    fn proxy_paths_through_a_last_request(&self) -> Vec<String> {
        let addr = self.agent_addr;
        let (status, _, _) = exchange(
            addr,
            &format!("GET {LAST_REQUEST} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 200);
        let paths = |log: &str| -> Vec<String> {
            log.lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter_map(|record| record["path"].as_str().map(str::to_owned))
                .collect()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut logged = paths(&self.proxy.output());
        while !logged.iter().any(|p| p == LAST_REQUEST) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            logged = paths(&self.proxy.output());
        }
        logged
    }
}

#[test]
fn agent_refuses_a_web_pages_simple_post_without_signing_or_forwarding_it() {
    // A "simple" request: a page sends it without a preflight, and GitHub
    // reads a JSON body whatever its Content-Type.
    let stack = Stack::start();
    let addr = stack.agent_addr;
    let body = r#"{"title":"sent by a web page"}"#;
    assert_refused_as_a_browsers(
        &stack,
        &format!(
            "POST /repos/o/r/issues HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://attacker.example\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(
        stack.upstream.requests().is_empty(),
        "nothing reached GitHub"
    );
    assert_eq!(
        stack.proxy_paths_through_a_last_request(),
        [LAST_REQUEST],
        "the refused request never reached the proxy, so it was never signed"
    );
}

#[test]
fn agent_refuses_a_request_with_any_origin_null_and_its_own_included() {
    let stack = Stack::start();
    let addr = stack.agent_addr;
    for origin in [
        "null".to_owned(),
        "https://attacker.example".to_owned(),
        format!("http://{addr}"),
        format!("http://localhost:{}", addr.port()),
        String::new(),
    ] {
        assert_refused_as_a_browsers(
            &stack,
            &format!(
                "GET /user/repos HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
            ),
        );
    }
    // A HEAD gets the same refusal, without the body.
    let (status, head, body) = exchange(
        addr,
        &format!(
            "HEAD /user HTTP/1.1\r\nHost: {addr}\r\nOrigin: null\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!((status, body.as_str()), (403, ""), "{head}");
    assert!(
        stack.upstream.requests().is_empty(),
        "nothing reached GitHub"
    );
    assert_eq!(stack.proxy_paths_through_a_last_request(), [LAST_REQUEST]);
}

#[test]
fn agent_answers_a_cors_preflight_itself_with_the_refusal_and_no_allow_headers() {
    let stack = Stack::start();
    let addr = stack.agent_addr;
    assert_refused_as_a_browsers(
        &stack,
        &format!(
            "OPTIONS /repos/o/r/issues HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://attacker.example\r\n\
             Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\
             Sec-Fetch-Mode: cors\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n"
        ),
    );
    // Private Network Access asks in the preflight too.
    assert_refused_as_a_browsers(
        &stack,
        &format!(
            "OPTIONS /user HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://attacker.example\r\n\
             Access-Control-Request-Method: GET\r\nAccess-Control-Request-Private-Network: true\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    // The preflight's own header is a browser's, even without an Origin.
    assert_refused_as_a_browsers(
        &stack,
        &format!(
            "OPTIONS /user HTTP/1.1\r\nHost: {addr}\r\nAccess-Control-Request-Method: DELETE\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert!(
        stack.upstream.requests().is_empty(),
        "nothing reached GitHub"
    );
    assert_eq!(stack.proxy_paths_through_a_last_request(), [LAST_REQUEST]);
}

#[test]
fn agent_refuses_a_sec_fetch_site_other_than_none() {
    // Sec-Fetch-Site alone (a browser that sends no Origin on a GET).
    let stack = Stack::start();
    let addr = stack.agent_addr;
    for site in ["cross-site", "same-site", "same-origin", "None", ""] {
        assert_refused_as_a_browsers(
            &stack,
            &format!(
                "GET /user HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: {site}\r\nConnection: close\r\n\r\n"
            ),
        );
    }
    // Repeated: one value other than `none` is enough.
    assert_refused_as_a_browsers(
        &stack,
        &format!(
            "GET /user HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: none\r\nSec-Fetch-Site: cross-site\r\n\
             Connection: close\r\n\r\n"
        ),
    );
    assert!(
        stack.upstream.requests().is_empty(),
        "nothing reached GitHub"
    );
    assert_eq!(stack.proxy_paths_through_a_last_request(), [LAST_REQUEST]);
}

#[test]
fn agent_forwards_sec_fetch_mode_alone_as_node_sends_it_and_sec_fetch_site_none() {
    // Node's fetch (undici, under octokit) sends `Sec-Fetch-Mode: cors` on
    // every request; a URL typed into the address bar is `Sec-Fetch-Site: none`.
    let stack = Stack::start();
    let addr = stack.agent_addr;
    for (target, extra) in [
        ("/user?mode", "Sec-Fetch-Mode: cors\r\n"),
        (
            "/user?site",
            "Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n",
        ),
    ] {
        let (status, _, body) = exchange(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"),
        );
        assert_eq!(status, 200, "{target}: {body}");
    }
    assert_eq!(
        targets(&stack.forwarded()),
        ["GET /user?mode", "GET /user?site"]
    );
}

#[test]
fn agent_drops_access_control_headers_from_every_response() {
    let stack = Stack::start();
    // GitHub answers with `Access-Control-Allow-Origin: *`, and the proxy
    // passes it on to a signing client ...
    let signed = signet()
        .args(["sign", "--key", &stack.key, "GET", "/user"])
        .output()
        .unwrap();
    assert!(signed.status.success(), "{signed:?}");
    let proof = String::from_utf8(signed.stdout).unwrap();
    let proxy: SocketAddr = stack
        .proxy_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (status, head, _) = exchange(
        proxy,
        &format!(
            "GET /user HTTP/1.1\r\nHost: {proxy}\r\nSignet-Proof: {}\r\nConnection: close\r\n\r\n",
            proof.trim()
        ),
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        access_control_lines(&head),
        ["access-control-allow-origin: *"],
        "the stand-in sends it as GitHub does"
    );
    // ... but never through the agent: not on answers, not on the upstream's
    // errors, not on the proxy's refusals, not on the agent's own errors.
    let addr = stack.agent_addr;
    for (target, expected) in [
        ("/user", 200),
        ("/repos/o/r", 200),
        ("/status/404", 404),
        ("/repos/o/r/../../x", 400),
        ("http://attacker.example/user", 403),
    ] {
        let (status, head, _) = exchange(
            addr,
            &format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, expected, "{target}: {head}");
        assert!(access_control_lines(&head).is_empty(), "{target}: {head}");
    }
}
