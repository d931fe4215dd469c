//! The CA's renewal window for a certificate (ARI, RFC 9773), asked with the account of the
//! CA that issued it.

use instant_acme::Account;
use tracing::warn;

use super::replaces_for;
use crate::cert::{Inspection, RenewalWindow};

/// The CA's suggested window for `inspection`'s certificate; `None` when the CA has no
/// renewalInfo (Pebble, some CAs: that is "no ARI", not a failure), does not answer, or
/// answers with a window that ends before it starts. The days rule decides then.
pub(crate) async fn renewal_window(
    account: &Account,
    inspection: &Inspection,
    cert: &str,
) -> Option<RenewalWindow> {
    let id = replaces_for(inspection)?;
    match account.renewal_info(&id).await {
        Ok((info, _)) => {
            let window = RenewalWindow {
                start: info.suggested_window.start,
                end: info.suggested_window.end,
            };
            if window.start > window.end {
                warn!(cert, %window, "the CA's renewal window (ARI) ends before it starts; the days rule decides");
                return None;
            }
            Some(window)
        }
        Err(instant_acme::Error::Unsupported(_)) => None,
        Err(err) => {
            warn!(cert, error = %err, "the CA did not answer for its renewal window (ARI); the days rule decides");
            None
        }
    }
}
