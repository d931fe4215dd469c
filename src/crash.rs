//! Crash points: places where a test can make the process die, as `kill -9` would.
//!
//! `crash_point!("finalize.after_key")` marks a point. In a build with the `crash-points`
//! cargo feature (test builds only: a release build with it does not compile), a run whose
//! `FLEETCERT_CRASH_AT` names the point kills itself there with SIGKILL: no destructor runs,
//! no buffer is flushed, exactly what a power cut or the OOM killer leaves. Without the
//! feature the macro expands to nothing, and no environment variable changes what a
//! production binary does.

#[cfg(all(feature = "crash-points", not(debug_assertions)))]
compile_error!("the crash-points feature is for test builds only, never a release build");

/// Marks a crash point (see the module doc).
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "crash-points")]
        $crate::crash::hit($name);
    };
}

/// The environment variable that names the crash point to die at.
#[cfg(feature = "crash-points")]
const CRASH_AT: &str = "FLEETCERT_CRASH_AT";

/// Dies at `name` when the test asked for it.
#[cfg(feature = "crash-points")]
pub(crate) fn hit(name: &str) {
    if std::env::var_os(CRASH_AT).is_some_and(|wanted| wanted == name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
