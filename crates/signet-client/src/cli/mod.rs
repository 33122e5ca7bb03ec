//! The `signet` command line: argument definitions, dispatch, and the one
//! place where errors become a message on stderr and an exit code.

mod admin;
mod agent;
mod args;
mod curl;
mod keygen;
mod sign;

use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `signet`'s exit codes. Usage errors exit 2 (clap's convention); the
/// `curl` codes follow curl's own (`7` could not connect, `22` as `curl -f`).
const EXIT_CODES: &str = "\
Exit status:
  0   success
  1   error (key file, arguments, I/O, a broken response)
  2   command-line usage error
  7   curl: the proxy could not be reached
  22  curl: the response status was 400 or higher";

#[derive(Debug, Parser)]
#[command(
    name = "signet",
    version,
    about = "Make Signet master keys and sign requests for a signet-proxy.",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a master key and print its public key.
    ///
    /// Writes the private key as a PKCS#8 PEM file readable only by you
    /// (mode 0600) and prints the public key, 64 hex characters, for the
    /// proxy's SIGNET_MASTER_PUBLIC_KEY.
    Keygen(keygen::KeygenArgs),
    /// Print the public key of a master key file.
    ///
    /// The public key is 64 hex characters: the value of the proxy's
    /// SIGNET_MASTER_PUBLIC_KEY.
    ExportKeyId(keygen::ExportKeyIdArgs),
    /// Print a Signet-Proof header value for one request.
    ///
    /// Sign exactly the method, request-target and body that will be sent.
    Sign(sign::SignArgs),
    /// Send one signed request through the proxy.
    ///
    /// The status line goes to stderr and the response body to stdout, as it
    /// arrives.
    #[command(after_help = EXIT_CODES)]
    Curl(curl::CurlArgs),
    /// Talk to a proxy's admin API: clients, revoke, unrevoke, reload, stats.
    ///
    /// Requests are signed with the admin key (purpose `admin`). The JSON
    /// answer goes to stdout; a status of 400 or more exits 22.
    Admin(admin::AdminArgs),
    /// Serve a local GitHub API endpoint that signs every request for the proxy.
    ///
    /// For tools that cannot sign (gh, octokit, PyGithub, curl): REST at /...
    /// and /api/v3/..., GraphQL at /graphql and /api/graphql, and absolute-form
    /// requests for api.github.localhost (gh with GH_HOST=github.localhost and
    /// HTTP_PROXY pointing here). Any client Authorization is dropped; URLs in
    /// Link/Location headers and JSON bodies come back pointing at the agent.
    /// `signet agent env` prints the client settings.
    Agent(agent::AgentArgs),
}

/// Parses the command line, runs the command, and reports any error.
pub fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2 (0 for --help, --version).
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Keygen(args) => keygen::keygen(&args),
        Command::ExportKeyId(args) => keygen::export_key_id(&args),
        Command::Sign(args) => sign::sign(&args),
        Command::Curl(args) => curl::curl(&args),
        Command::Admin(args) => admin::admin(&args),
        Command::Agent(args) => agent::agent(&args),
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("signet: {}", error.message);
            error.exit.into()
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Success = 0,
    Failure = 1,
    Unreachable = 7,
    HttpError = 22,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A command's failure: what to print after `signet: `, and the exit code.
#[derive(Debug)]
struct Error {
    exit: Exit,
    message: String,
}

impl Error {
    /// A failure with exit code 1; the message is the error and its causes.
    fn new(error: impl std::error::Error) -> Self {
        Error::with_exit(Exit::Failure, error)
    }

    fn with_exit(exit: Exit, error: impl std::error::Error) -> Self {
        Error {
            exit,
            message: chain(&error).to_string(),
        }
    }

    fn msg(message: impl Into<String>) -> Self {
        Error {
            exit: Exit::Failure,
            message: message.into(),
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs a command's async part on a small runtime of its own.
fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::msg(format!("cannot start the async runtime: {e}")))?
        .block_on(future)
}

/// Displays an error followed by each of its sources not already part of
/// its message (reqwest's "error sending request" alone says little).
struct Chain<'a>(&'a dyn std::error::Error);

fn chain(error: &dyn std::error::Error) -> Chain<'_> {
    Chain(error)
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn error_chain_skips_repeated_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&error).to_string(), "outer: inner");
        let io = std::io::Error::other("only");
        assert_eq!(chain(&io).to_string(), "only");
    }
}
