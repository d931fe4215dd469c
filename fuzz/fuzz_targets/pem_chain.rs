//! PEM chains as a CA sends them and as certificate files hold them.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// A throwaway P-256 key made for this target alone; the seed chain was issued for it.
const KEY: &str = include_str!("../keys/fuzz-leaf.key");

fuzz_target!(|data: &[u8]| {
    fleetcert::fuzz::pem_chain(data, KEY);
});
