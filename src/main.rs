//! The `fleetcert` binary: parse the command line, run, exit with the code the run means.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    match fleetcert::cli::Args::try_parse() {
        Ok(args) => fleetcert::run(args),
        Err(err) => fleetcert::usage_error(&err),
    }
}
