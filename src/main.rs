//! fleetcert: issue and renew TLS certificates for a fleet with ACME DNS-01 and a delegated
//! signing zone. `main` parses, sets up logging, runs one command and maps the result to an
//! exit code by meaning.

mod acme;
mod cert;
mod cli;
mod commands;
mod config;
mod dns;
mod error;
mod hiera;
mod names;
mod store;
mod token;
mod zone;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    init_tracing(args.verbose);
    match commands::run(args.command) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("fleetcert: error: {err}");
            err.exit_code()
        }
    }
}

/// Logs go to stderr so that stdout carries nothing but the JSON report.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("fleetcert={default}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: Ansible and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
