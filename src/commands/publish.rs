//! `fleetcert publish`.

use crate::error::{Error, Outcome};

pub(crate) async fn run(_args: crate::cli::PublishArgs) -> Result<Outcome, Error> {
    todo!("publish")
}
