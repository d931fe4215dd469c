//! The zone config loader (`publish`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fleetcert::fuzz::zone_config(data);
});
