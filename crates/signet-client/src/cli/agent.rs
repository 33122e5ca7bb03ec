//! `signet agent`: serve a local GitHub API endpoint that signs every request
//! for the proxy; `signet agent env`: the client settings that point at it.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;

use clap::{Args, Subcommand};
use signet_client::agent::{
    shutdown_signal, Agent, AgentConfig, KeySource, ProxyUrl, DEFAULT_GITHUB_API_URL,
};

use super::args::{parse_size, SigningArgs};
use super::{Error, Exit, Result};

/// The default `--listen`.
const DEFAULT_LISTEN: &str = "127.0.0.1:7180";

/// What `signet agent env` prints, and what each line is for.
const ENV_HELP: &str = "\
Lines printed (eval \"$(signet agent env)\"):
  GH_HOST=github.localhost        gh talks to http://api.github.localhost ...
  HTTP_PROXY=http://LISTEN        ... which reaches the agent as its HTTP proxy
  NO_PROXY=127.0.0.1,::1          but clients that use the agent's own URL go direct
                                  (not localhost: Go would then bypass the agent
                                  for api.github.localhost)
  GH_TOKEN, GH_ENTERPRISE_TOKEN   a dummy token, so gh sends requests (the agent drops it)
  GITHUB_TOKEN                    the same dummy, for scripts that read it
  GITHUB_API_URL=http://LISTEN    base URL for PyGithub (base_url=), octokit (baseUrl:),
                                  githubkit (base_url=) and GitHub Actions-style tools
  GITHUB_GRAPHQL_URL              http://LISTEN/graphql";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_help = ENV_HELP)]
pub struct AgentArgs {
    #[command(subcommand)]
    action: Option<Action>,

    #[command(flatten)]
    signing: SigningArgs,

    /// Base URL of the proxy (the proxy's --public-url, when it has one).
    #[arg(
        long,
        value_name = "URL",
        env = "SIGNET_PROXY",
        default_value = "http://localhost:8080"
    )]
    proxy: String,

    /// Address to listen on (plain HTTP). Loopback only unless --allow-remote.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_LISTEN)]
    listen: String,

    /// Allow a non-loopback --listen address and requests for any Host:
    /// anyone who can reach the agent then acts with its key. Requests from
    /// web browsers are refused either way (403 AGENT_BROWSER_REFUSED).
    #[arg(long)]
    allow_remote: bool,

    /// The GitHub API base the proxy forwards to (its --github-api): its
    /// URLs in JSON bodies and Link/Location headers are rewritten to the
    /// agent's.
    #[arg(long, value_name = "URL", env = "SIGNET_GITHUB_API", default_value = DEFAULT_GITHUB_API_URL)]
    github_api_url: String,

    /// Largest request body, in bytes or with a KiB/MiB/GiB suffix (the
    /// proxy's default); larger ones get 413 AGENT_REQUEST_TOO_LARGE.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    max_body_size: u64,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Print `export NAME=value` lines that point gh, PyGithub, octokit and
    /// githubkit at the agent, ready for `eval "$(signet agent env)"`.
    #[command(after_help = ENV_HELP)]
    Env(EnvArgs),
}

#[derive(Debug, Args)]
struct EnvArgs {
    /// The agent's --listen address.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_LISTEN)]
    listen: String,
}

pub fn agent(args: &AgentArgs) -> Result<Exit> {
    if let Some(Action::Env(env)) = &args.action {
        print!("{}", env_lines(&env.listen)?);
        return Ok(Exit::Success);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::msg(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(args))
}

async fn serve(args: &AgentArgs) -> Result<Exit> {
    let key = KeySource::open(
        &args.signing.key.key,
        &args.signing.purpose,
        args.signing.ttl,
    )
    .map_err(Error::new)?;
    let key = Arc::new(key);
    let proxy = ProxyUrl::parse(&args.proxy).map_err(Error::new)?;
    let mut config = AgentConfig::new(resolve(&args.listen)?, proxy);
    config.allow_remote = args.allow_remote;
    config.github_api_url = args.github_api_url.clone();
    config.max_body_size = args.max_body_size;
    let agent = Agent::bind(config.clone(), Arc::clone(&key))
        .await
        .map_err(Error::new)?;
    let addr = agent
        .local_addr()
        .map_err(|e| Error::msg(format!("cannot read the bound address: {e}")))?;
    eprintln!(
        "signet agent: listening on http://{addr}, signing for {} with master key {}",
        config.proxy.as_str(),
        key.public_key_hex().unwrap_or_default()
    );
    agent.run(shutdown_signal()).await;
    eprintln!("signet agent: stopped");
    Ok(Exit::Success)
}

/// `HOST:PORT` to one address (the first a name resolves to).
fn resolve(listen: &str) -> Result<SocketAddr> {
    listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            Error::msg(format!(
                "invalid --listen {listen:?}: use HOST:PORT, e.g. {DEFAULT_LISTEN}"
            ))
        })
}

/// The agent's URL as clients on this machine reach it: an unspecified
/// address (`0.0.0.0`) is reached at loopback.
fn client_url(listen: &str) -> Result<String> {
    let authority = match listen.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => match addr {
            SocketAddr::V4(_) => format!("127.0.0.1:{}", addr.port()),
            SocketAddr::V6(_) => format!("[::1]:{}", addr.port()),
        },
        Ok(addr) => addr.to_string(),
        Err(_) => {
            resolve(listen)?;
            listen.to_owned()
        }
    };
    Ok(format!("http://{authority}"))
}

/// The `export` lines of `signet agent env`.
fn env_lines(listen: &str) -> Result<String> {
    let url = client_url(listen)?;
    const DUMMY_TOKEN: &str = "signet-agent-dummy-token";
    let lines = [
        ("GH_HOST", "github.localhost".to_owned()),
        ("HTTP_PROXY", url.clone()),
        ("NO_PROXY", "127.0.0.1,::1".to_owned()),
        ("GH_TOKEN", DUMMY_TOKEN.to_owned()),
        ("GH_ENTERPRISE_TOKEN", DUMMY_TOKEN.to_owned()),
        ("GITHUB_TOKEN", DUMMY_TOKEN.to_owned()),
        ("GITHUB_API_URL", url.clone()),
        ("GITHUB_GRAPHQL_URL", format!("{url}/graphql")),
    ];
    Ok(lines
        .iter()
        .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
        .collect())
}

/// `value` as one shell word: bare when it is plainly safe, else in single
/// quotes (`[::1]` would otherwise be a glob).
fn shell_quote(value: &str) -> String {
    let safe = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:,@%+=".contains(&b));
    if safe && !value.is_empty() {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_points_every_client_at_the_listen_address() {
        let lines = env_lines("127.0.0.1:7180").unwrap_or_default();
        assert!(
            lines.contains("export GH_HOST=github.localhost\n"),
            "{lines}"
        );
        assert!(lines.contains("export HTTP_PROXY=http://127.0.0.1:7180\n"));
        assert!(lines.contains("export GITHUB_API_URL=http://127.0.0.1:7180\n"));
        assert!(lines.contains("export GITHUB_GRAPHQL_URL=http://127.0.0.1:7180/graphql\n"));
        assert!(lines.lines().all(|l| l.starts_with("export ")));
    }

    #[test]
    fn env_reaches_an_unspecified_address_at_loopback_and_quotes_ipv6() {
        let lines = env_lines("0.0.0.0:9000").unwrap_or_default();
        assert!(
            lines.contains("export HTTP_PROXY=http://127.0.0.1:9000\n"),
            "{lines}"
        );
        let lines = env_lines("[::1]:9000").unwrap_or_default();
        assert!(
            lines.contains("export HTTP_PROXY='http://[::1]:9000'\n"),
            "{lines}"
        );
        assert!(env_lines("nonsense").is_err());
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(shell_quote("http://x:1/y"), "http://x:1/y");
    }
}
