//! One module per subcommand: load the config, do the work, print the JSON report.

mod caa;
mod check;
mod failure;
mod finalize;
mod finalize_report;
mod hiera;
mod install;
mod install_set;
mod installed;
mod issuing;
mod local;
mod publish;
mod record;
mod renew;
mod report;
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
    // Every command ends by rewriting the metrics file, pass or fail (record.rs).
    let record = record::Record::start(&command);
    let mut observed = record::Observed::default();
    let host_config = match &command {
        Command::Request(args) | Command::Finalize(args) | Command::Renew(args) => {
            Some(args.config.clone())
        }
        _ => None,
    };
    let result = match command {
        Command::Request(args) => runtime.block_on(request::run(args, &mut observed)),
        Command::Finalize(args) => runtime.block_on(finalize::run(args, &mut observed)),
        Command::Publish(args) => runtime.block_on(publish::run(args, &mut observed)),
        Command::Renew(args) => runtime.block_on(renew::run(args, &mut observed)),
        Command::Install(args) => runtime.block_on(install::run(&args)),
        Command::Hiera(args) => hiera::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Check(args) => runtime.block_on(check::run(&args, &mut observed)),
    };
    // A CA that does not answer is named by the key that points at it, in its file.
    let result = match host_config {
        Some(config) => result.map_err(|err| err.naming_config(&config)),
        None => result,
    };
    if let Some(record) = record {
        runtime.block_on(record.finish(&result, observed));
    }
    result
}
