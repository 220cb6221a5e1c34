//! `sieve`: the command-line client for a Sieve server.

use std::process::ExitCode;

use clap::Parser;
use sieve_client::cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sieve: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sieve: {e:#}");
            ExitCode::FAILURE
        }
    }
}
