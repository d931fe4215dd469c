//! `metrics:` of the host and the zone config: where the textfile for node_exporter goes.
//!
//! ```yaml
//! metrics: {textfile_dir: /var/lib/prometheus/node-exporter}
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::shown::path as shown_path;

/// `metrics:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `textfile_dir`")]
pub(super) struct RawMetrics {
    textfile_dir: PathBuf,
}

/// Where every command writes `fleetcert.prom` (docs/monitoring.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Metrics {
    /// node_exporter's `--collector.textfile.directory`.
    pub(crate) textfile_dir: PathBuf,
}

/// Checks `metrics:`. The directory is not touched here: a missing one costs the metrics of a
/// run (with a warning), never a renewal.
pub(super) fn check_metrics(
    path: &Path,
    raw: Option<RawMetrics>,
) -> Result<Option<Metrics>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    // node_exporter is started with an absolute directory; a relative one here would depend on
    // where the command happens to be started (Ansible, cron and a shell differ).
    if !raw.textfile_dir.is_absolute() {
        return Err(invalid(
            path,
            "metrics.textfile_dir",
            format!(
                "{} is not an absolute path: give node_exporter's \
                 --collector.textfile.directory, like /var/lib/prometheus/node-exporter",
                shown_path(&raw.textfile_dir)
            ),
        ));
    }
    Ok(Some(Metrics {
        textfile_dir: raw.textfile_dir,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Option<Metrics>, String> {
        let raw: Option<RawMetrics> = serde_yaml::from_str(text).map_err(|err| err.to_string())?;
        check_metrics(Path::new("/etc/fleetcert/h.yaml"), raw).map_err(|err| err.to_string())
    }

    #[test]
    fn textfile_dir_must_be_absolute_and_alone() {
        assert_eq!(
            check("{textfile_dir: /var/lib/prometheus/node-exporter}"),
            Ok(Some(Metrics {
                textfile_dir: "/var/lib/prometheus/node-exporter".into()
            }))
        );
        assert_eq!(check("null"), Ok(None));
        let err = check("{textfile_dir: node-exporter}").expect_err("relative");
        assert!(
            err.contains("`metrics.textfile_dir`") && err.contains("absolute"),
            "{err}"
        );
        let err = check("{textfile_dir: /x, dir: /y}").expect_err("unknown key");
        assert!(err.contains("unknown field"), "{err}");
    }
}
