//! One function per subcommand: load the config, do the work, print the JSON report.

mod finalize;
mod installed;
mod publish;
mod request;
mod status;

use crate::cli::Command;
use crate::error::{Error, Outcome};

/// Runs one subcommand to completion.
pub(crate) fn run(command: Command) -> Result<Outcome, Error> {
    // One thread: every command is I/O-bound, and a single thread keeps start-up and RSS low.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    match command {
        Command::Request(args) => runtime.block_on(request::run(args)),
        Command::Finalize(args) => runtime.block_on(finalize::run(args)),
        Command::Publish(args) => runtime.block_on(publish::run(args)),
        Command::Hiera(args) => crate::hiera::run(args),
        Command::Status(args) => status::run(args),
    }
}

/// Prints a report as one JSON document on stdout.
pub(crate) fn print_json<T: serde::Serialize>(report: &T) -> Result<(), Error> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    // Serializing our own report types cannot fail; a closed stdout can, and is reported.
    let text = serde_json::to_string_pretty(report).unwrap_or_else(|_| "{}".to_owned());
    writeln!(stdout, "{text}")
        .map_err(|err| crate::store::StoreError::new("cannot write to", "stdout".as_ref(), err))?;
    Ok(())
}
