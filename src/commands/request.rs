//! `fleetcert request`.

use crate::error::{Error, Outcome};

pub(crate) async fn run(_args: crate::cli::HostArgs) -> Result<Outcome, Error> {
    todo!("request")
}
