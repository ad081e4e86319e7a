//! Any bytes as an SQS message body (SQS bodies are UTF-8, so other inputs are skipped):
//! parsing never panics, and every invariant of `check_body` holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracklayer::rows::invariants::check_body;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = std::str::from_utf8(data) {
        check_body(body);
    }
});
