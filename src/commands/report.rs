//! The JSON reports on stdout: the only place that writes to stdout.
//!
//! A report that cannot be written is an error of the run (exit 4): printing `{}` instead
//! would hand Ansible a report that says nothing happened.

use std::io::Write as _;

use crate::error::ReportError;

/// Prints a report as one JSON document on stdout.
pub(crate) fn print_json<T: serde::Serialize>(report: &T) -> Result<(), ReportError> {
    let text = serde_json::to_string_pretty(report).map_err(ReportError::Serialize)?;
    print_text(&format!("{text}\n"))
}

/// Prints text for people (`status --format table`).
pub(crate) fn print_text(text: &str) -> Result<(), ReportError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(ReportError::Stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report whose serialization fails, as a map with non-string keys does.
    #[test]
    fn a_report_that_does_not_serialize_is_an_error_not_an_empty_object() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1);
        let err = print_json(&map).expect_err("not serializable");
        assert!(matches!(err, ReportError::Serialize(_)), "{err}");
    }
}
