//! `signet curl`: send one signed request through the proxy.

use std::io::{self, Write as _};
use std::sync::Arc;

use clap::Args;
use signet_client::reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use signet_client::reqwest::{Method, Response};
use signet_client::{wire_target, ClientError, SignetClient, SIGNET_PROOF};

use super::args::{Data, SigningArgs};
use super::{chain, Error, Exit, Result};

#[derive(Debug, Args)]
pub struct CurlArgs {
    #[command(flatten)]
    signing: SigningArgs,

    /// Base URL of the proxy.
    #[arg(
        long,
        value_name = "URL",
        env = "SIGNET_PROXY",
        default_value = "http://localhost:8080"
    )]
    proxy: String,

    /// Extra request header, 'Name: value' (repeatable). Headers are not
    /// covered by the proof.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,

    /// Request body: text, @FILE, or @- for stdin. Sent with
    /// Content-Type: application/json unless -H sets another.
    #[arg(short, long, value_name = "DATA")]
    data: Option<Data>,

    /// Also print the response headers (to stderr, after the status line).
    #[arg(short, long)]
    include: bool,

    /// HTTP method (e.g. GET).
    method: String,

    /// Path and query on the proxy: /path?query. Dot segments are removed
    /// and unsafe characters percent-encoded before signing, as sent.
    path: String,
}

/// Parses `Name: value`, as curl's `-H`.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| "expected 'Name: value'".to_owned())?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name {:?}", name.trim()))?;
    if name == SIGNET_PROOF {
        return Err("the Signet-Proof header is made by signet".to_owned());
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid value for header {name}"))?;
    Ok((name, value))
}

pub fn curl(args: &CurlArgs) -> Result<Exit> {
    super::block_on(run(args))
}

async fn run(args: &CurlArgs) -> Result<Exit> {
    let signer = Arc::new(args.signing.signer()?);
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| Error::msg(format!("invalid HTTP method {:?}", args.method)))?;
    let client = SignetClient::new(&args.proxy, signer).map_err(Error::new)?;

    let target = wire_target(&client.url(&args.path).map_err(Error::new)?);
    if target != args.path {
        eprintln!("signet: note: the request target is sent (and signed) as {target}");
    }

    let mut request = client.request(method, &args.path);
    for (name, value) in &args.headers {
        let (name, value) = (name.clone(), value.clone());
        request = request.map(|b| b.header(name, value));
    }
    if args.data.is_some() {
        if !args.headers.iter().any(|(name, _)| name == CONTENT_TYPE) {
            request = request.header("content-type", "application/json");
        }
        request = request.body(Data::read(args.data.as_ref())?);
    }

    let response = request
        .send()
        .await
        .map_err(|e| send_error(&args.proxy, e))?;
    print_head(&response, args.include);
    let failed = response.status().as_u16() >= 400;
    stream_body(response).await?;
    Ok(if failed {
        Exit::HttpError
    } else {
        Exit::Success
    })
}

pub(super) fn send_error(proxy: &str, error: ClientError) -> Error {
    if error.is_connect() {
        Error {
            exit: Exit::Unreachable,
            message: format!("cannot reach the proxy at {proxy}: {}", chain(&error)),
        }
    } else {
        Error::new(error)
    }
}

/// The status line (and with `-i` the headers) on stderr, so stdout carries
/// only the body.
fn print_head(response: &Response, include: bool) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{:?} {}", response.version(), response.status());
    if include {
        for (name, value) in response.headers() {
            let _ = writeln!(
                stderr,
                "{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            );
        }
    }
}

/// Copies the body to stdout chunk by chunk as it arrives.
pub(super) async fn stream_body(mut response: Response) -> Result<()> {
    let mut stdout = io::stdout().lock();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::msg(format!("the response broke off: {}", chain(&e))))?
    {
        match stdout.write_all(&chunk).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // The reader went away (`signet curl ... | head`): stop quietly.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Error::msg(format!("cannot write to stdout: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_like_curl() {
        let (name, value) =
            parse_header("Accept:  application/vnd.github+json ").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name, "accept");
        assert_eq!(value, "application/vnd.github+json");
        assert!(parse_header("X-Empty:").is_ok());
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(parse_header("Signet-Proof: v1;forged").is_err());
    }
}
