//! Any text as a rendered zone: what the re-parse accepts must hold only the validated records.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fleetcert::fuzz::zone_check(data);
});
