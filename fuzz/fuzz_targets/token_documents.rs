//! Token documents as `publish --tokens` reads them: parse, shape, identity, every record.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fleetcert::fuzz::token_documents(data);
});
