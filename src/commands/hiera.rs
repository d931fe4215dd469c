//! `fleetcert hiera`: one legacy host's issued material as a hiera YAML file for Puppet.
//!
//! The material is read and checked by `crate::hiera`; this writes the file (0600, created
//! new beside the target and renamed over it, only when its bytes or mode change) and prints
//! a report that names the certificates and never carries their material.

use std::ffi::OsStr;
use std::path::Path;

use serde::Serialize;

use super::report::print_json;
use crate::cli::HieraArgs;
use crate::config::HostConfig;
use crate::dns::DnsName;
use crate::error::{Error, Outcome};
use crate::hiera;
use crate::store::{self, Access, Dir, StoreError};

/// The most bytes of an existing hiera file read back to compare (a hundred certificates).
const MAX_HIERA_BYTES: u64 = 16 << 20;

/// The JSON report: what was exported, never the material itself.
#[derive(Debug, Serialize)]
struct Report<'a> {
    host: &'a DnsName,
    path: &'a Path,
    changed: bool,
    certs: Vec<CertReport<'a>>,
}

#[derive(Debug, Serialize)]
struct CertReport<'a> {
    name: &'a str,
    not_after: &'a str,
}

/// Runs `fleetcert hiera`.
pub(crate) fn run(args: &HieraArgs) -> Result<Outcome, Error> {
    let config = HostConfig::load(&args.config)?;
    hiera::check_host(&config, &args.host)?;
    let exported = hiera::read_all(&config)?;
    let text = hiera::render(&config.host, &exported);
    hiera::verify(&config.host, &text, &exported)?;
    let (dir, name) = open_parent(&args.out)?;
    let changed = differs(&dir, &name, text.as_bytes())?;
    if changed && !args.dry_run {
        dir.write_atomic(&name, text.as_bytes(), Access::private(store::SECRET_MODE))?;
    }
    tracing::info!(
        host = %config.host,
        path = %args.out.display(),
        changed,
        dry_run = args.dry_run,
        certs = exported.len(),
        "hiera export"
    );
    print_json(&Report {
        host: &config.host,
        path: &args.out,
        changed,
        certs: exported
            .iter()
            .map(|cert| CertReport {
                name: &cert.name,
                not_after: &cert.not_after,
            })
            .collect(),
    })?;
    Ok(Outcome::Success)
}

/// The directory of `--out`, opened once, and the file's name in it.
fn open_parent(out: &Path) -> Result<(Dir, String), StoreError> {
    let name = out
        .file_name()
        .and_then(OsStr::to_str)
        .filter(|name| store::is_plain_name(name))
        .ok_or_else(|| StoreError::Unsafe {
            path: crate::shown::path(out),
            problem: "is not a file path fleetcert can write (it needs a UTF-8 file name)"
                .to_owned(),
        })?;
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Ok((Dir::open(parent)?, name.to_owned()))
}

/// Whether the file must be (re)written: it is missing, holds other bytes, or has a mode other
/// than 0600 (a file with private keys left readable is fixed, not kept).
fn differs(dir: &Dir, name: &str, contents: &[u8]) -> Result<bool, StoreError> {
    let Some(old) = dir.read_optional(name, MAX_HIERA_BYTES)? else {
        return Ok(true);
    };
    if old != contents {
        return Ok(true);
    }
    let mode = dir.stat_at(name)?.map_or(0, |stat| stat.st_mode & 0o7777);
    Ok(mode != store::SECRET_MODE)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn mode_other_than_0600_counts_as_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Dir::open(dir.path()).expect("open");
        assert!(differs(&store, "h.yaml", b"x").expect("missing"));
        store
            .write_atomic("h.yaml", b"x", Access::private(store::SECRET_MODE))
            .expect("write");
        assert!(!differs(&store, "h.yaml", b"x").expect("same"));
        assert!(differs(&store, "h.yaml", b"y").expect("other bytes"));
        std::fs::set_permissions(
            dir.path().join("h.yaml"),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        assert!(differs(&store, "h.yaml", b"x").expect("loose mode"));
    }
}
