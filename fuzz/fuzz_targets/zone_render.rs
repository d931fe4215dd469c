//! Validated records rendered into the signing zone and parsed back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fleetcert::fuzz::zone_render(data);
});
