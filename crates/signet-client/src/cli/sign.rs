//! `signet sign`: print one Signet-Proof header value.

use clap::Args;

use super::args::{Data, SigningArgs};
use super::{Error, Exit, Result};

#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    signing: SigningArgs,

    /// HTTP method, exactly as it will be sent (e.g. GET).
    method: String,

    /// Request target exactly as it will be on the request line: /path?query
    /// (no normalisation: /a/../b is not /b).
    target: String,

    /// Request body: text, @FILE, or @- for stdin. Sign exactly the bytes
    /// that will be sent.
    #[arg(short, long, value_name = "DATA")]
    data: Option<Data>,
}

pub fn sign(args: &SignArgs) -> Result<Exit> {
    let signer = args.signing.signer()?;
    let body = Data::read(args.data.as_ref())?;
    let header = signer
        .sign(&args.method, &args.target, &body)
        .map_err(Error::new)?;
    println!("{header}");
    Ok(Exit::Success)
}
