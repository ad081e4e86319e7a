//! Invariants of body parsing and encoding, checked by the fuzzers (`shared/tests/fuzz_body.rs`,
//! a proptest; `fuzz/fuzz_targets/body.rs`, cargo-fuzz). Not part of the loader's API.

use serde_json::Value;

use super::JsonArray;
use crate::event::invariants::check_parse;

/// Panics unless, for any `body`: parsing holds its invariants
/// ([`check_parse`]), and the encoded arrays stay within a bound of the input, parse back as
/// JSON and carry each raw text exactly.
pub fn check_body(body: &str) {
    let parsed = check_parse(body);
    let mut events = JsonArray::new();
    let mut rejects = JsonArray::new();
    let mut raws = (Vec::new(), Vec::new());
    for row in &parsed {
        match row {
            Ok(event) => {
                events.push_event(event);
                raws.0.push(event.raw());
            }
            Err(rejection) => {
                rejects.push_rejection(rejection, "message-id");
                raws.1.push(rejection.raw);
            }
        }
    }
    for (array, raws, key) in [(events, raws.0, "r"), (rejects, raws.1, "r")] {
        let text = array.finish();
        assert!(
            text.len() <= 64 + 8 * body.len() + 200 * parsed.len(),
            "bounded output"
        );
        let decoded: Vec<Value> =
            serde_json::from_str(&text).expect("encoded rows are a JSON array");
        assert_eq!(decoded.len(), raws.len());
        for (row, raw) in decoded.iter().zip(raws) {
            assert_eq!(row[key].as_str(), Some(raw), "raw text round-trips exactly");
        }
    }
}
