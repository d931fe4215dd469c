//! fleetcert: issue and renew TLS certificates for a fleet with ACME DNS-01 and a delegated
//! signing zone.
//!
//! The binary (`main.rs`) parses the command line with [`cli::Args`] and hands it to [`run`].
//! Everything else is private: the modules each own one noun of the domain, and a higher one
//! uses lower ones, never the reverse (docs/dev/README.md, "The source layout"):
//!
//! - `commands`: one module per subcommand, and the only writer of stdout;
//! - `config`, `token`, `zone`, `acme`, `cert`, `issuer`, `hiera`, `probe`, `reload`: the
//!   domain;
//! - `dns`, `serial`, `store`, `lock`, `shown`, `timestamp`, `command`: the ground they
//!   stand on.

pub mod cli;

#[macro_use]
mod crash;

mod acme;
mod cert;
mod command;
mod commands;
mod config;
mod dns;
mod error;
// Only in a fuzz build (cargo fuzz passes `--cfg fuzzing`): never in the shipped binary.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
mod hiera;
mod issuer;
mod lock;
mod metrics;
mod probe;
mod reload;
mod serial;
mod shown;
mod state;
mod store;
mod timestamp;
mod token;
mod zone;

use std::io::Write as _;
use std::process::ExitCode;

/// Runs one command and maps its result to the exit code by meaning (docs/exit-codes.md):
/// 0 done, 1 some certificates failed, 3 published but not yet everywhere (each with its
/// report on stdout), 2 bad usage, config or input, 4 the run failed as a whole (each with
/// one line on stderr, and no report).
pub fn run(args: cli::Args) -> ExitCode {
    init_tracing(args.verbose);
    match commands::run(args.command) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            error::print_error_line(&err);
            err.exit_code()
        }
    }
}

/// Reports a command line clap cannot parse: clap's message and exit 2, as clap itself does
/// (help and version: 0) — except for `fleetcert check`, whose caller is a monitoring system
/// that reads 2 as CRITICAL: there it is one UNKNOWN line on stdout and exit 3.
pub fn usage_error(err: &clap::Error) -> ExitCode {
    if err.use_stderr() && cli::names_check(std::env::args_os().skip(1)) {
        let first = err.to_string();
        let first = first.lines().next().unwrap_or_default();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        // As for stderr: a stdout that cannot take the line never changes the code.
        let _ = writeln!(
            std::io::stdout(),
            "FLEETCERT UNKNOWN - bad arguments: {}",
            shown::bare(first, shown::MAX_EXCERPT)
        );
        return ExitCode::from(error::CheckStatus::Unknown.code());
    }
    let _ = err.print();
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(error::EXIT_USAGE))
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
        // A log line stderr cannot take is lost; by default tracing would report that with
        // `eprintln!` to the same stderr, which panics (exit 101) instead of the run's code.
        .log_internal_errors(false)
        .init();
}
