//! `signet`: make master keys, and sign requests for a Signet proxy.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
