//! `signet admin`: the proxy's admin API (`--admin-listen`), with requests
//! signed by the admin key (purpose `admin`).

use std::sync::Arc;

use clap::{Args, Subcommand};
use signet_client::reqwest::Method;
use signet_client::SignetClient;

use super::args::KeyArg;
use super::curl::{send_error, stream_body};
use super::{Error, Exit, Result};

/// The purpose the proxy's admin API requires.
const ADMIN_PURPOSE: &str = "admin";

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The admin key (its public key is the proxy's --admin-key).
    #[command(flatten)]
    key: KeyArg,

    /// Base URL of the proxy's admin API (its --admin-listen).
    #[arg(
        long,
        value_name = "URL",
        env = "SIGNET_ADMIN_URL",
        default_value = "http://127.0.0.1:9091"
    )]
    admin_url: String,

    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List the trusted clients, their policies and whether they are revoked.
    Clients,
    /// Revoke a client, or one ephemeral key until its binding expires.
    Revoke(Target),
    /// Lift a revocation.
    Unrevoke(Target),
    /// Re-read the keys file now.
    Reload,
    /// Counts: clients, revocations, replay store, dropped log lines.
    Stats,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// A client's name.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// An ephemeral public key, base64url as in a proof's `ek` (revoked for a
    /// day, longer than any binding the proxy accepts lives).
    #[arg(long, value_name = "EK")]
    ephemeral_key: Option<String>,
}

impl Target {
    fn body(&self) -> String {
        match (&self.client, &self.ephemeral_key) {
            (Some(name), _) => serde_json::json!({ "client": name }).to_string(),
            (None, Some(key)) => serde_json::json!({ "ephemeral_key": key }).to_string(),
            (None, None) => "{}".to_owned(),
        }
    }
}

pub fn admin(args: &AdminArgs) -> Result<Exit> {
    super::block_on(run(args))
}

async fn run(args: &AdminArgs) -> Result<Exit> {
    let signer = args
        .key
        .signer()?
        .with_purpose(ADMIN_PURPOSE)
        .map_err(Error::new)?;
    let client = SignetClient::new(&args.admin_url, Arc::new(signer)).map_err(Error::new)?;
    let (method, path, body) = match &args.action {
        Action::Clients => (Method::GET, "/clients", None),
        Action::Stats => (Method::GET, "/stats", None),
        Action::Reload => (Method::POST, "/reload", Some(String::new())),
        Action::Revoke(target) => (Method::POST, "/revoke", Some(target.body())),
        Action::Unrevoke(target) => (Method::POST, "/unrevoke", Some(target.body())),
    };
    let mut request = client.request(method, path);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.into_bytes());
    }
    let response = request
        .send()
        .await
        .map_err(|e| send_error(&args.admin_url, e))?;
    let status = response.status();
    stream_body(response).await?;
    println!();
    if status.as_u16() >= 400 {
        eprintln!("signet: the admin API answered {status}");
        return Ok(Exit::HttpError);
    }
    Ok(Exit::Success)
}
