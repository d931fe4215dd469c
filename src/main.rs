//! The `fleetcert` binary: parse the command line, run, exit with the code the run means.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    fleetcert::run(fleetcert::cli::Args::parse())
}
