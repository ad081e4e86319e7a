//! Invariants of body parsing and encoding, checked by the fuzzers (`shared/tests/fuzz_body.rs`,
//! a proptest; `fuzz/fuzz_targets/body.rs`, cargo-fuzz). Not part of the loader's API.

use serde_json::Value;

use super::encode::JsonArray;
use super::fields::Fields;
use super::parse_body;
use super::scan::read_event;
use super::validate::nests_deeper_than_limit;

/// Panics unless, for any `body`: parsing accounts for every event (a non-array body gives at
/// least one row), each row's raw text is a slice of the body, the encoded arrays stay within
/// a bound of the input, parse back as JSON and carry each raw text exactly.
pub fn check_body(body: &str) {
    // Every object the body holds, at any depth, as text the fast reader may be given.
    for (at, _) in body.match_indices('{') {
        check_event_reader(&body[at..]);
    }
    let parsed = parse_body(body);
    assert!(
        !parsed.is_empty() || body.trim_start().starts_with('['),
        "a non-array body yields at least one row"
    );
    let base = body.as_ptr() as usize;
    let mut events = JsonArray::new();
    let mut rejects = JsonArray::new();
    let mut raws = (Vec::new(), Vec::new());
    for row in &parsed {
        let raw = match row {
            Ok(event) => {
                events.push_event(event);
                raws.0.push(event.raw());
                event.raw()
            }
            Err(rejection) => {
                assert!(!rejection.detail.is_empty());
                rejects.push_rejection(rejection, "message-id");
                raws.1.push(rejection.raw);
                rejection.raw
            }
        };
        let start = raw.as_ptr() as usize;
        assert!(
            start >= base && start + raw.len() <= base + body.len(),
            "raw text is a slice of the body"
        );
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

/// Panics unless the fast event reader agrees with serde_json on `text`: whenever it reads an
/// object, serde_json reads exactly that text to the same fields, and it nests within the
/// limit. (When it gives up, serde_json decides, so that direction needs no check.)
pub fn check_event_reader(text: &str) {
    let Some((fields, len)) = read_event(text) else {
        return;
    };
    let object = &text[..len];
    let read: Fields<'_> = serde_json::from_str(object).unwrap_or_else(|error| {
        panic!("the fast reader took text serde_json refuses ({error}): {object:?}")
    });
    assert_eq!(
        fields, read,
        "fast reader and serde_json differ on {object:?}"
    );
    assert!(
        !nests_deeper_than_limit(object),
        "the fast reader took an object nested past the limit"
    );
}
