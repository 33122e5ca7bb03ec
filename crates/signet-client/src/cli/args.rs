//! Arguments shared by several commands: the key file, the signing settings,
//! the request body, and duration values.

use std::io::Read as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use signet_client::{Signer, MAX_TTL};

use super::{Error, Result};

/// Where the master key is read from.
#[derive(Debug, Args)]
pub struct KeyArg {
    /// Master key file (PKCS#8 PEM, as written by `signet keygen`).
    #[arg(
        short,
        long,
        value_name = "FILE",
        env = "SIGNET_KEY_FILE",
        default_value = "master-key.pem"
    )]
    pub key: PathBuf,
}

impl KeyArg {
    /// Reads the key file into a signer with default settings.
    pub fn signer(&self) -> Result<Signer> {
        Signer::from_pem_file(&self.key).map_err(Error::new)
    }
}

/// The master key and the binding settings of a signed request.
#[derive(Debug, Args)]
pub struct SigningArgs {
    #[command(flatten)]
    pub key: KeyArg,

    /// Binding purpose: up to 64 characters from A-Z a-z 0-9 . _ : / -
    #[arg(
        long,
        value_name = "PURPOSE",
        env = "SIGNET_PURPOSE",
        default_value = ""
    )]
    pub purpose: String,

    /// Binding lifetime, 1s to 15m (e.g. 30s, 5m, 1m30s).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_ttl)]
    pub ttl: Duration,
}

impl SigningArgs {
    /// Reads the key file into a signer with these settings.
    pub fn signer(&self) -> Result<Signer> {
        self.key
            .signer()?
            .with_purpose(&self.purpose)
            .and_then(|signer| signer.with_ttl(self.ttl))
            .map_err(Error::new)
    }
}

/// Parses a binding lifetime such as `30s`, `5m`, `1h` or `1m30s`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text)
        .map_err(|e| format!("{e} (expected e.g. 30s, 5m, 1m30s)"))?;
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err("must be between 1s and 15m".to_owned());
    }
    Ok(ttl)
}

/// Parses a size such as `1048576`, `64KiB`, `1MiB` or `1GiB` (the grammar
/// of the proxy's `--max-body-size`: bytes, or a K/M/G suffix, binary).
pub fn parse_size(text: &str) -> Result<u64, String> {
    signet_http::size::parse(text).ok_or_else(|| signet_http::size::HINT.to_owned())
}

/// A request body given as `--data`: text, `@FILE`, or `@-` for stdin
/// (as in curl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// The argument's own bytes.
    Text(String),
    /// The contents of a file.
    File(PathBuf),
    /// Everything on standard input.
    Stdin,
}

impl FromStr for Data {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.strip_prefix('@') {
            None => Ok(Data::Text(text.to_owned())),
            Some("") => Err("expected a file name after @ (or @- for stdin)".to_owned()),
            Some("-") => Ok(Data::Stdin),
            Some(path) => Ok(Data::File(PathBuf::from(path))),
        }
    }
}

impl Data {
    /// The body bytes; no data is an empty body.
    pub fn read(data: Option<&Data>) -> Result<Vec<u8>> {
        match data {
            None => Ok(Vec::new()),
            Some(Data::Text(text)) => Ok(text.clone().into_bytes()),
            Some(Data::File(path)) => std::fs::read(path)
                .map_err(|e| Error::msg(format!("cannot read data file {}: {e}", path.display()))),
            Some(Data::Stdin) => {
                let mut body = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut body)
                    .map_err(|e| Error::msg(format!("cannot read data from stdin: {e}")))?;
                Ok(body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_accepts_go_style_durations() {
        for (text, secs) in [
            ("30s", 30),
            ("5m", 300),
            ("90s", 90),
            ("1m30s", 90),
            ("15m", 900),
        ] {
            assert_eq!(parse_ttl(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn ttl_outside_one_second_to_fifteen_minutes_is_refused() {
        for text in ["0s", "500ms", "16m", "1h", "5", "soon"] {
            assert!(parse_ttl(text).is_err(), "{text}");
        }
    }

    #[test]
    fn sizes_take_bytes_or_a_binary_suffix() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn data_follows_curl_syntax() {
        assert_eq!("{}".parse(), Ok(Data::Text("{}".to_owned())));
        assert_eq!("@body.json".parse(), Ok(Data::File("body.json".into())));
        assert_eq!("@-".parse(), Ok(Data::Stdin));
        assert!("@".parse::<Data>().is_err());
        assert_eq!("".parse(), Ok(Data::Text(String::new())));
    }
}
