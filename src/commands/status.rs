//! `fleetcert status`.

use crate::error::{Error, Outcome};

pub(crate) fn run(_args: crate::cli::StatusArgs) -> Result<Outcome, Error> {
    todo!("status")
}
