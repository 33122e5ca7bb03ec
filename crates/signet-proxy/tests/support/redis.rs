//! A real `redis-server` for the tests that share replay records, rate
//! limits and revocations between replicas.

use std::time::Duration;

use tokio::net::TcpStream;

use super::processes::free_port;

/// A real `redis-server` on a free loopback port, with nothing persisted;
/// killed when dropped. The test script installs Debian's `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    password: Option<String>,
    tls: bool,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one on a free port.
    pub async fn start() -> RedisServer {
        Self::start_on(free_port(), None).await
    }

    /// Starts one that requires `password`.
    pub async fn start_with_password(password: &str) -> RedisServer {
        Self::start_on(free_port(), Some(password.to_owned())).await
    }

    /// Starts one on `port` (to bring a stopped server back where it was).
    pub async fn start_on(port: u16, password: Option<String>) -> RedisServer {
        Self::spawn(port, password, &[]).await
    }

    /// Starts one that speaks TLS only, with this certificate and key (PEM
    /// files); clients need no certificate of their own.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> RedisServer {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let port = free_port().to_string();
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &cert,
            "--tls-auth-clients",
            "no",
        ];
        let mut server = Self::spawn(port.parse().expect("port"), None, &args).await;
        server.tls = true;
        server
    }

    async fn spawn(port: u16, password: Option<String>, extra: &[&str]) -> RedisServer {
        let mut command = std::process::Command::new("redis-server");
        let listen = if extra.is_empty() {
            vec!["--port".to_owned(), port.to_string()]
        } else {
            extra.iter().map(|a| (*a).to_owned()).collect()
        };
        command
            .args(&listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(password) = &password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        let server = RedisServer {
            port,
            password,
            tls: false,
            child: Some(child),
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not listen on {port}");
    }

    /// `redis://[:password@]127.0.0.1:port`, or `rediss://localhost:port`.
    pub fn url(&self) -> String {
        if self.tls {
            return format!("rediss://localhost:{}", self.port);
        }
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Kills it; its records are gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
