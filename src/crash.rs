//! Crash points: places where a test can make the process die, as `kill -9` would.
//!
//! `crash_point!("finalize.key_saved")` marks a point; `crash_point!("install.after_file",
//! name)` marks one point per file, named `install.after_file.<name>`. In a build with the
//! `crash-points` cargo feature (test builds only: a release build with it does not compile),
//! a run whose `FLEETCERT_CRASH_AT` names the point kills itself there with SIGKILL: no
//! destructor runs, no buffer is flushed, exactly what a power cut or the OOM killer leaves.
//! Without the feature the macro expands to nothing, and no environment variable changes what
//! a production binary does.
//!
//! Every point, what a crash there leaves and the test that proves it: docs/dev/crash-safety.md
//! and tests/integration/crash.rs (which also checks that no point goes untested).

#[cfg(all(feature = "crash-points", not(debug_assertions)))]
compile_error!("the crash-points feature is for test builds only, never a release build");

/// Marks a crash point (see the module doc).
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "crash-points")]
        $crate::crash::hit($name, None);
    };
    ($name:literal, $detail:expr) => {
        #[cfg(feature = "crash-points")]
        $crate::crash::hit($name, Some($detail));
    };
}

/// The environment variable that names the crash point to die at.
#[cfg(feature = "crash-points")]
const CRASH_AT: &str = "FLEETCERT_CRASH_AT";

/// Dies at `name` (or `name.detail`) when the test asked for it.
#[cfg(feature = "crash-points")]
pub(crate) fn hit(name: &str, detail: Option<&str>) {
    let Some(wanted) = std::env::var_os(CRASH_AT) else {
        return;
    };
    let here = match detail {
        Some(detail) => format!("{name}.{detail}"),
        None => name.to_owned(),
    };
    if wanted == here.as_str() {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
