//! The `signet-proxy` binary: parse flags, validate, run.

use std::process::ExitCode;

use clap::Parser as _;
use signet_proxy::app::serving::Runtimes;
use signet_proxy::config::cli::Command;
use signet_proxy::observe::logging;
use signet_proxy::{Args, Config};

/// jemalloc's background thread hands freed pages back to the OS after its
/// decay time; glibc's per-thread arenas kept most of what a connection
/// flood had taken (the `memory_under_an_unauthenticated_flood…` stress
/// test measures both).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtimes = match Runtimes::new(args.runtime, None) {
        Ok(runtimes) => runtimes,
        Err(error) => {
            eprintln!("signet-proxy: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = runtimes.main();
    #[cfg(feature = "demo")]
    if let Some(Command::Demo { keep }) = args.command {
        return runtime.block_on(signet_proxy::app::demo::run(keep));
    }
    let config = match Config::from_args(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("signet-proxy: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::CheckConfig) = args.command {
        return match runtime.block_on(signet_proxy::check_config(&config)) {
            Ok(summary) => {
                println!("signet-proxy: configuration OK: {summary}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("signet-proxy: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let _log_flush = logging::init(config.log_level, config.refusal_log_limit);
    let outcome = runtime.block_on(signet_proxy::run_on(config, runtimes.workers()));
    // Let connection tasks that outlived the shutdown timeout go before the
    // log guard flushes on return.
    runtimes.shutdown(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("signet-proxy: {error}");
            ExitCode::FAILURE
        }
    }
}
