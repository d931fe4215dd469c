//! The state directory of a host: the ACME account, pending orders, the keys made for them,
//! and the lock that keeps two runs on one host apart.
//!
//! ```text
//! state_dir/            0700
//!     account.json      0600  directory URL -> account credentials
//!     orders/<cert>.json 0600 an order waiting between request and finalize
//!     keys/<cert>.pem   0600  the key made at finalize, kept until the chain is installed
//!     limits/<cert>.json 0600 the primary CA's rate limit that refused an order, until it ends
//!     limits-<ca>/<cert>.json 0600 the same for a fallback CA (`<ca>`: see [`limits_dir`])
//!     issued/<cert>.json 0600 which CA issued the installed certificate, and why that one
//!     reloads/<cert>.json 0600 a `reload` that failed, run again by every run until it works
//!     lock              0600  held by request, finalize and renew for their whole run
//! ```
//!
//! Everything a CA owns is kept per CA: accounts by directory URL in `account.json`, an
//! order names its CA, and each fallback CA has its own rate-limit directory, so the files
//! of a host from before fallback CAs existed are the primary's as they are.
//!
//! Opened without `create` (a dry run, `status`), a state directory that does not exist reads
//! as empty and nothing is created.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lock::{Lock, LockError};
use crate::store::{self, Access, Dir, Existing, StoreError, Versioned};

const ORDERS_DIR: &str = "orders";
const KEYS_DIR: &str = "keys";
const LIMITS_DIR: &str = "limits";
const ISSUED_DIR: &str = "issued";
const RELOADS_DIR: &str = "reloads";
const LOCK_FILE: &str = "lock";
/// How long a run waits for another run on the same host: a finalize takes seconds, a slow
/// CA a minute or two.
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// The state directory, opened once.
#[derive(Debug)]
pub(crate) struct StateDir {
    path: PathBuf,
    /// `None`: it does not exist and may not be created.
    dir: Option<Dir>,
}

impl StateDir {
    /// Opens `path`, creating it (0700) when `create` is set. Refused when it is a symlink or
    /// others could write in it.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Self, StoreError> {
        let access = Access::private(store::PRIVATE_DIR_MODE);
        let dir = if create {
            Some(Dir::ensure(path, access, Existing::Enforce)?)
        } else {
            match Dir::open(path) {
                Ok(dir) => Some(dir),
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    None
                }
                Err(err) => return Err(err),
            }
        };
        if let Some(dir) = &dir {
            dir.sweep()?;
        }
        Ok(Self {
            path: path.to_owned(),
            dir,
        })
    }

    /// Opens the state directory for a run of `request`, `finalize` or `renew`, holding the
    /// host lock so that two runs on one host do not fight over an order. A dry run creates
    /// nothing and takes no lock.
    pub(crate) async fn open_for_run(
        path: &Path,
        dry_run: bool,
    ) -> Result<(Self, Option<Lock>), LockError> {
        let state = Self::open(path, !dry_run)?;
        let lock = match (&state.dir, dry_run) {
            (Some(dir), false) => Some(Lock::acquire(dir, LOCK_FILE, LOCK_TIMEOUT).await?),
            _ => None,
        };
        Ok((state, lock))
    }

    /// Where it is, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn writable(&self) -> Result<&Dir, StoreError> {
        self.dir.as_ref().ok_or_else(|| self.missing())
    }

    /// The subdirectory `name`, created when writing.
    fn sub(&self, name: &str, create: bool) -> Result<Option<Dir>, StoreError> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let sub = if create {
            Some(dir.child(
                name,
                Access::private(store::PRIVATE_DIR_MODE),
                Existing::Enforce,
            )?)
        } else {
            dir.open_child(name)?
        };
        if let Some(sub) = &sub {
            sub.sweep()?;
        }
        Ok(sub)
    }

    /// A top-level state file.
    pub(crate) fn load<T: Versioned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match &self.dir {
            Some(dir) => dir.load_state(name),
            None => Ok(None),
        }
    }

    /// Writes a top-level state file.
    pub(crate) fn save<T: Versioned>(&self, name: &str, state: &T) -> Result<(), StoreError> {
        self.writable()?.save_state(name, state)
    }

    /// Proves that a state file can be written (in `sub`, or at the top) now: before the CA is
    /// asked to create something (an account, an order) whose only record would be that file.
    pub(crate) fn probe(&self, sub: Option<&str>) -> Result<(), StoreError> {
        match sub {
            Some(sub) => self.sub(sub, true)?.ok_or_else(|| self.missing())?.probe(),
            None => self.writable()?.probe(),
        }
    }

    /// The saved order of `cert`.
    pub(crate) fn load_order<T: Versioned>(&self, cert: &str) -> Result<Option<T>, StoreError> {
        self.load_in(ORDERS_DIR, cert)
    }

    /// Whether `cert` has a saved order, without reading it.
    pub(crate) fn has_order(&self, cert: &str) -> bool {
        self.has(ORDERS_DIR, &order_file(cert))
    }

    /// Whether the file `name` is in the subdirectory `sub`.
    fn has(&self, sub: &str, name: &str) -> bool {
        self.sub(sub, false)
            .ok()
            .flatten()
            .and_then(|dir| dir.stat_at(name).ok().flatten())
            .is_some()
    }

    /// Whether a key made for `cert`'s order is saved, without reading it.
    pub(crate) fn has_key(&self, cert: &str) -> bool {
        self.has(KEYS_DIR, &key_file(cert))
    }

    /// Saves the order of `cert`.
    pub(crate) fn save_order<T: Versioned>(&self, cert: &str, order: &T) -> Result<(), StoreError> {
        self.save_in(ORDERS_DIR, cert, order)
    }

    /// Forgets the order of `cert` and the key made for it; nothing to forget is fine. The
    /// order goes first: a key without an order is only clutter (the next finalize removes
    /// it), an order without its key could not be completed.
    pub(crate) fn remove_order(&self, cert: &str) -> Result<(), StoreError> {
        self.remove_in(ORDERS_DIR, &order_file(cert))?;
        crash_point!("finalize.order_forgotten");
        self.remove_in(KEYS_DIR, &key_file(cert))
    }

    /// Saves the key made for `cert`'s order (PEM), 0600.
    pub(crate) fn save_key(&self, cert: &str, pem: &[u8]) -> Result<(), StoreError> {
        let dir = self.sub(KEYS_DIR, true)?.ok_or_else(|| self.missing())?;
        dir.write_atomic(&key_file(cert), pem, Access::private(store::SECRET_MODE))
    }

    /// The key saved for `cert`'s order.
    pub(crate) fn saved_key(&self, cert: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.sub(KEYS_DIR, false)? {
            Some(dir) => dir.read_optional(&key_file(cert), 1 << 20),
            None => Ok(None),
        }
    }

    /// The saved rate limit of `cert` in `limits` (a CA's, [`limits_dir`]).
    pub(crate) fn load_rate_limit<T: Versioned>(
        &self,
        limits: &str,
        cert: &str,
    ) -> Result<Option<T>, StoreError> {
        self.load_in(limits, cert)
    }

    /// Saves the rate limit of `cert` in `limits`.
    pub(crate) fn save_rate_limit<T: Versioned>(
        &self,
        limits: &str,
        cert: &str,
        limit: &T,
    ) -> Result<(), StoreError> {
        self.save_in(limits, cert, limit)
    }

    /// Forgets the rate limit of `cert` in `limits`; nothing to forget is fine.
    pub(crate) fn remove_rate_limit(&self, limits: &str, cert: &str) -> Result<(), StoreError> {
        self.remove_in(limits, &order_file(cert))
    }

    /// The record of the CA that issued `cert`'s installed certificate.
    pub(crate) fn load_issued<T: Versioned>(&self, cert: &str) -> Result<Option<T>, StoreError> {
        self.load_in(ISSUED_DIR, cert)
    }

    /// Saves the record of the CA that issued `cert`'s installed certificate.
    pub(crate) fn save_issued<T: Versioned>(
        &self,
        cert: &str,
        issued: &T,
    ) -> Result<(), StoreError> {
        self.save_in(ISSUED_DIR, cert, issued)
    }

    /// The reload of `cert` that failed and waits to be run again.
    pub(crate) fn load_reload<T: Versioned>(&self, cert: &str) -> Result<Option<T>, StoreError> {
        self.load_in(RELOADS_DIR, cert)
    }

    /// Whether a reload of `cert` waits to be run again, without reading it.
    pub(crate) fn has_reload(&self, cert: &str) -> bool {
        self.has(RELOADS_DIR, &order_file(cert))
    }

    /// Remembers that the reload of `cert` failed.
    pub(crate) fn save_reload<T: Versioned>(
        &self,
        cert: &str,
        pending: &T,
    ) -> Result<(), StoreError> {
        self.save_in(RELOADS_DIR, cert, pending)
    }

    /// Forgets the failed reload of `cert`; nothing to forget is fine.
    pub(crate) fn remove_reload(&self, cert: &str) -> Result<(), StoreError> {
        self.remove_in(RELOADS_DIR, &order_file(cert))
    }

    /// `sub/<cert>.json`, when it is there.
    fn load_in<T: Versioned>(&self, sub: &str, cert: &str) -> Result<Option<T>, StoreError> {
        match self.sub(sub, false)? {
            Some(dir) => dir.load_state(&order_file(cert)),
            None => Ok(None),
        }
    }

    /// Writes `sub/<cert>.json`, creating `sub`.
    fn save_in<T: Versioned>(&self, sub: &str, cert: &str, state: &T) -> Result<(), StoreError> {
        let dir = self.sub(sub, true)?.ok_or_else(|| self.missing())?;
        dir.save_state(&order_file(cert), state)
    }

    /// Removes `sub/<file>` durably; nothing to remove is fine.
    fn remove_in(&self, sub: &str, file: &str) -> Result<(), StoreError> {
        if let Some(dir) = self.sub(sub, false)? {
            dir.remove(file)?;
            dir.sync()?;
        }
        Ok(())
    }

    fn missing(&self) -> StoreError {
        StoreError::Unsafe {
            path: crate::shown::path(&self.path),
            problem: "does not exist, and this run may not create it".to_owned(),
        }
    }
}

/// The rate-limit directory of a CA: `limits` for the primary (where it always was), and
/// `limits-<12 hex digits of the SHA-256 of the directory URL>` for a fallback, a name that
/// stays the same when the config lists the fallbacks in another order.
pub(crate) fn limits_dir(directory: &str, primary: bool) -> String {
    if primary {
        return LIMITS_DIR.to_owned();
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory.as_bytes());
    let hex: String = digest.as_ref()[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{LIMITS_DIR}-{hex}")
}

fn order_file(cert: &str) -> String {
    format!("{cert}.json")
}

fn key_file(cert: &str) -> String {
    format!("{cert}.pem")
}
