//! The reason line of a certificate that is not due: how long it has left, and when it
//! renews by which rule. `request` prints it with a CA and with a test issuer alike.

use time::OffsetDateTime;

use super::{Inspection, Rule, Schedule};
use crate::timestamp::rfc3339;

/// "not due: N days left, renews from T (rule)"; plain "not due" without a certificate or a
/// schedule.
pub(crate) fn not_due(
    inspection: Option<&Inspection>,
    now: OffsetDateTime,
    schedule: Option<Schedule>,
) -> String {
    let (Some(inspection), Some(schedule)) = (inspection, schedule) else {
        return "not due".to_owned();
    };
    let rule = match schedule.rule {
        Rule::Days { .. } => "renew.before_days, spread".to_owned(),
        Rule::Ari(window) => format!("inside the CA's renewal window (ARI) {window}"),
        Rule::AriSafetyNet(window) => {
            format!("the safety net: the CA's renewal window (ARI) {window} comes too late")
        }
    };
    format!(
        "not due: {} days left, renews from {} ({rule})",
        inspection.remaining(now).as_secs() / 86_400,
        rfc3339(schedule.at)
    )
}
