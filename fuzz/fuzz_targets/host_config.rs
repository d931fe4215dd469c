//! The host config loader (`request`, `finalize`, `status`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fleetcert::fuzz::host_config(data);
});
