//! Versioned JSON state files: [`Versioned`] says what a file is and which version this
//! build reads; a file of another version is refused with that said, not as a parse error.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Access, Dir, SECRET_MODE, StoreError};
use crate::shown::{MAX_EXCERPT, bare, path as shown_path};

impl Dir {
    /// A versioned JSON state file (see [`Versioned`]); `None` when it does not exist.
    pub(crate) fn load_state<T: Versioned>(&self, name: &str) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.read_optional(name, T::MAX_BYTES)? else {
            return Ok(None);
        };
        let path = self.path.join(name);
        let state = |problem: String| StoreError::State {
            path: shown_path(&path),
            problem,
        };
        #[derive(serde::Deserialize)]
        struct Peek {
            version: u32,
        }
        let peek: Peek = serde_json::from_slice(&bytes).map_err(|err| {
            state(format!(
                "is not {} ({})",
                T::WHAT,
                bare(&err.to_string(), MAX_EXCERPT)
            ))
        })?;
        if peek.version != T::VERSION {
            return Err(state(format!(
                "has version {}, this fleetcert reads {}: use the matching fleetcert",
                peek.version,
                T::VERSION
            )));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            state(format!(
                "is not {} ({})",
                T::WHAT,
                bare(&err.to_string(), MAX_EXCERPT)
            ))
        })
    }

    /// Writes a versioned JSON state file atomically, 0600.
    pub(crate) fn save_state<T: Versioned>(&self, name: &str, state: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|err| StoreError::State {
            path: shown_path(&self.path.join(name)),
            problem: format!("cannot be written: {err}"),
        })?;
        self.write_atomic(name, &bytes, Access::private(SECRET_MODE))
    }
}

/// A JSON state file fleetcert keeps: it carries `version` at the top level, and a file of
/// another version is refused with that said, not as a parse error.
pub(crate) trait Versioned: Serialize + DeserializeOwned {
    /// The version this build reads and writes.
    const VERSION: u32;
    /// What the file is, for messages ("an ACME account file").
    const WHAT: &'static str;
    /// The most bytes it may hold.
    const MAX_BYTES: u64 = 16 << 20;
}
