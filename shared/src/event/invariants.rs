//! Invariants of body parsing, checked by the fuzzers through `rows::invariants::check_body`
//! (which adds the encoding's). Not part of the loader's API.

use super::fields::Fields;
use super::scan::read_event;
use super::validate::nests_deeper_than_limit;
use super::{Parsed, parse_body};

/// Panics unless, for any `body`: parsing accounts for every event (a non-array body gives at
/// least one row), and each row's raw text is a slice of the body. Returns the rows.
pub fn check_parse(body: &str) -> Vec<Parsed<'_>> {
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
    for row in &parsed {
        let raw = match row {
            Ok(event) => event.raw(),
            Err(rejection) => {
                assert!(!rejection.detail.is_empty());
                rejection.raw
            }
        };
        let start = raw.as_ptr() as usize;
        assert!(
            start >= base && start + raw.len() <= base + body.len(),
            "raw text is a slice of the body"
        );
    }
    parsed
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
