//! One event's JSON text to an [`Event`] or a [`Rejection`]: the field rules of the contract.

use std::borrow::Cow;

use rust_decimal::Decimal;
use time::OffsetDateTime;

use super::detail::raw_for_detail;
use super::fields::{Fields, Scalar};
use super::json::trim_json_whitespace;
use super::{Event, MAX_EVENT_ID_CHARS, MAX_NESTING_DEPTH, Parsed, Reason, Rejection};
use super::{scan, timestamp, value};

/// Validates the JSON text of one event (an object); `text` becomes the raw payload.
///
/// Surrounding JSON whitespace is not part of the raw payload. Text that is valid JSON but not
/// an object is `not_an_object`; anything unreadable is `invalid_json`.
pub fn parse_event(text: &str) -> Parsed<'_> {
    let raw = trim_json_whitespace(text);
    if !raw.starts_with('{') {
        return Err(not_an_object(raw));
    }
    // The usual event is read by the fast reader, which also keeps to the depth limit.
    if let Some((fields, len)) = scan::read_event(raw)
        && len == raw.len()
    {
        return validate(raw, fields);
    }
    // Reading nests no deeper than the event object itself (nested values are skipped
    // iteratively), so the depth limit can be checked once the text is known to be one object.
    match serde_json::from_str::<Fields<'_>>(raw) {
        Ok(fields) => parse_read_event(raw, fields),
        Err(error) => Err(Rejection::unreadable(
            Reason::InvalidJson,
            format!("event is not valid JSON: {error}"),
            raw,
        )),
    }
}

/// Validates an event that serde_json read from `raw`, its JSON text (an object), as
/// [`parse_event`] would.
pub(super) fn parse_read_event<'a>(raw: &'a str, fields: Fields<'a>) -> Parsed<'a> {
    if nests_deeper_than_limit(raw) {
        return Err(too_deep(raw));
    }
    validate(raw, fields)
}

fn too_deep(raw: &str) -> Rejection<'_> {
    Rejection::unreadable(
        Reason::InvalidJson,
        format!(
            "event nests objects or arrays more than {MAX_NESTING_DEPTH} levels deep; \
             flatten the payload"
        ),
        raw,
    )
}

/// The rejection for text that does not start an object: `not_an_object` if it is some other
/// JSON value, `invalid_json` if it is not JSON at all.
pub(super) fn not_an_object(raw: &str) -> Rejection<'_> {
    let kind = match raw.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'-' | b'0'..=b'9') => "a number",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "",
    };
    let is_json = serde_json::from_str::<serde::de::IgnoredAny>(raw);
    match is_json {
        Ok(_) if !kind.is_empty() => Rejection::unreadable(
            Reason::NotAnObject,
            format!(
                "event is {kind}, not a JSON object; expected an object like {{\"event_id\": ...}}"
            ),
            raw,
        ),
        Ok(_) => Rejection::unreadable(
            Reason::NotAnObject,
            "event is not a JSON object; expected an object like {\"event_id\": ...}".to_owned(),
            raw,
        ),
        Err(error) => Rejection::unreadable(
            Reason::InvalidJson,
            format!("event is not valid JSON: {error}"),
            raw,
        ),
    }
}

/// Whether `raw` nests objects/arrays deeper than serde_json would parse. serde_json skips
/// unknown fields and raw values without a depth limit, so the limit is checked here.
pub(super) fn nests_deeper_than_limit(raw: &str) -> bool {
    // Cheap: fewer brackets than the limit cannot nest past it.
    if count_opening_brackets(raw.as_bytes()) <= MAX_NESTING_DEPTH {
        return false;
    }
    let bytes = raw.as_bytes();
    let (mut depth, mut in_string, mut escaped) = (0_usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_NESTING_DEPTH {
                        return true;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    false
}

/// Counts `{` and `[` bytes (they differ only in bit 0x20). A byte-wide counter per chunk of
/// 240 bytes cannot overflow, and compilers turn the fold into vector compares and subtracts.
fn count_opening_brackets(bytes: &[u8]) -> usize {
    bytes
        .chunks(240)
        .map(|chunk| {
            let count = chunk
                .iter()
                .fold(0_u8, |count, &b| count + u8::from((b | 0x20) == b'{'));
            usize::from(count)
        })
        .sum()
}

/// A field that breaks the contract: becomes the rejection's reason and detail.
struct Problem {
    reason: Reason,
    detail: String,
}

impl Problem {
    fn missing(detail: String) -> Self {
        Problem {
            reason: Reason::MissingField,
            detail,
        }
    }

    fn invalid(detail: String) -> Self {
        Problem {
            reason: Reason::InvalidField,
            detail,
        }
    }
}

/// What checking produced beyond the fields that are taken over as they are.
struct Checked {
    event_time: OffsetDateTime,
    value: Option<Decimal>,
    currency: Option<[u8; 3]>,
}

/// Validates an event read from `raw` by [`scan::read_event`] (which keeps to the depth limit)
/// or by serde_json with the depth checked.
pub(super) fn validate<'a>(raw: &'a str, fields: Fields<'a>) -> Parsed<'a> {
    match check(&fields) {
        Ok(checked) => Ok(assemble(raw, fields, checked)),
        Err(problem) => Err(Rejection {
            reason: problem.reason,
            detail: problem.detail,
            raw,
            event_id: fields.event_id.into_str(),
            merchant_id: fields.merchant_id.into_str(),
        }),
    }
}

/// Checks every field in a fixed order and reports the first problem.
fn check(fields: &Fields<'_>) -> Result<Checked, Problem> {
    required_text(
        "event_id",
        fields.event_id.present(),
        Some(MAX_EVENT_ID_CHARS),
    )?;
    let event_time = match fields.event_time {
        Some(raw) => timestamp::parse(raw).map_err(Problem::invalid)?,
        None => {
            return Err(Problem::missing(
                "event_time is missing or null; expected an RFC 3339 timestamp such as \
                 2026-11-02T10:00:00+02:00, or epoch milliseconds"
                    .to_owned(),
            ));
        }
    };
    required_text("merchant_id", fields.merchant_id.present(), None)?;
    required_text("event_name", fields.event_name.present(), None)?;
    for (name, field) in [
        ("user_id", &fields.user_id),
        ("anonymous_id", &fields.anonymous_id),
        ("order_id", &fields.order_id),
        ("platform", &fields.platform),
        ("source", &fields.source),
        ("consent_status", &fields.consent_status),
    ] {
        optional_text(name, field.present())?;
    }
    let value = fields
        .value
        .map(value::parse)
        .transpose()
        .map_err(Problem::invalid)?;
    let currency = fields.currency.present().map(currency).transpose()?;
    if let Some(properties) = fields.properties {
        properties_object(properties)?;
    }
    Ok(Checked {
        event_time,
        value,
        currency,
    })
}

fn assemble<'a>(raw: &'a str, fields: Fields<'a>, checked: Checked) -> Event<'a> {
    let text = |field: Scalar<'a>| field.into_text();
    let event_name = match text(fields.event_name).unwrap_or_default() {
        Cow::Borrowed(name) => Cow::Borrowed(name.trim()),
        Cow::Owned(name) if name.trim().len() == name.len() => Cow::Owned(name),
        Cow::Owned(name) => Cow::Owned(name.trim().to_owned()),
    };
    Event {
        raw,
        event_id: text(fields.event_id).unwrap_or_default(),
        event_time: checked.event_time,
        merchant_id: text(fields.merchant_id).unwrap_or_default(),
        event_name,
        user_id: text(fields.user_id),
        anonymous_id: text(fields.anonymous_id),
        order_id: text(fields.order_id),
        platform: text(fields.platform),
        source: text(fields.source),
        value: checked.value,
        currency: checked.currency,
        consent_status: text(fields.consent_status),
        properties: fields.properties,
    }
}

fn required_text(
    name: &str,
    field: Option<&Scalar<'_>>,
    max_chars: Option<usize>,
) -> Result<(), Problem> {
    let expected = || match max_chars {
        Some(max) => format!("a non-empty string of at most {max} characters"),
        None => "a non-empty string".to_owned(),
    };
    let Some(field) = field else {
        return Err(Problem::missing(format!(
            "{name} is missing or null; expected {}",
            expected()
        )));
    };
    let Some(text) = field.as_str() else {
        return Err(Problem::invalid(format!(
            "{name}: {} is not a string; expected {}",
            field.describe(),
            expected()
        )));
    };
    if text.trim().is_empty() {
        return Err(Problem::invalid(format!(
            "{name}: {} is empty or only whitespace; expected {}",
            field.describe(),
            expected()
        )));
    }
    if let Some(max) = max_chars {
        // Bytes bound characters from above: count characters only when it can matter.
        if text.len() > max && text.chars().count() > max {
            return Err(Problem::invalid(format!(
                "{name} is {} characters long; expected {}",
                text.chars().count(),
                expected()
            )));
        }
    }
    Ok(())
}

fn optional_text(name: &str, field: Option<&Scalar<'_>>) -> Result<(), Problem> {
    match field {
        None | Some(Scalar::Str(_) | Scalar::Int(_)) => Ok(()),
        Some(other) => Err(Problem::invalid(format!(
            "{name}: {} is not allowed; expected a string, an integer, or null",
            other.describe()
        ))),
    }
}

fn currency(field: &Scalar<'_>) -> Result<[u8; 3], Problem> {
    const EXPECTED: &str = "expected a 3-letter ISO 4217 code such as EUR, USD or GBP, or null";
    let code = match field.as_str().map(str::as_bytes) {
        Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_alphabetic) => {
            [a, b, c].map(|letter| letter.to_ascii_uppercase())
        }
        Some(_) => {
            return Err(Problem::invalid(format!(
                "currency: {} is not a 3-letter currency code; {EXPECTED}",
                field.describe()
            )));
        }
        None => {
            return Err(Problem::invalid(format!(
                "currency: {} is not a string; {EXPECTED}",
                field.describe()
            )));
        }
    };
    Ok(code)
}

fn properties_object(properties: &str) -> Result<(), Problem> {
    if properties.starts_with('{') {
        Ok(())
    } else {
        Err(Problem::invalid(format!(
            "properties: {} is not allowed; expected a JSON object such as \
             {{\"product_id\": \"SKU-1\"}}, or null",
            raw_for_detail(properties)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"event_id":"e-1","event_time":"2026-11-02T10:00:00+02:00","merchant_id":"m-1","event_name":"purchase","value":19.99,"currency":"eur"}"#;

    /// GOOD with `field` replaced by `json` (or removed when `json` is None).
    fn with(field: &str, json: Option<&str>) -> String {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(GOOD).unwrap();
        object.remove(field);
        let mut text = serde_json::to_string(&object).unwrap();
        if let Some(json) = json {
            text.pop();
            text.push_str(&format!(",\"{field}\":{json}}}"));
        }
        text
    }

    fn rejection(text: &str) -> Rejection<'_> {
        parse_event(text).expect_err("should be rejected")
    }

    #[test]
    fn accepts_a_minimal_event() {
        let event = parse_event(GOOD).unwrap();
        assert_eq!(event.event_id(), "e-1");
        assert_eq!(event.merchant_id(), "m-1");
        assert_eq!(event.event_name(), "purchase");
        assert_eq!(event.value().unwrap().to_string(), "19.9900");
        assert_eq!(event.currency(), Some("EUR"));
        assert_eq!(event.raw(), GOOD);
        assert_eq!(event.user_id(), None);
        assert_eq!(event.properties(), None);
    }

    #[test]
    fn rejects_event_without_merchant_id() {
        let text = with("merchant_id", None);
        let rejection = rejection(&text);
        assert_eq!(rejection.reason, Reason::MissingField);
        assert_eq!(
            rejection.detail,
            "merchant_id is missing or null; expected a non-empty string"
        );
        assert_eq!(rejection.event_id.as_deref(), Some("e-1"));
        assert_eq!(rejection.merchant_id, None);
        assert_eq!(rejection.raw, text);
    }

    #[test]
    fn rejects_missing_or_null_required_fields_naming_the_field() {
        for field in ["event_id", "event_time", "merchant_id", "event_name"] {
            for text in [with(field, None), with(field, Some("null"))] {
                let rejection = rejection(&text);
                assert_eq!(rejection.reason, Reason::MissingField, "{text}");
                assert!(rejection.detail.starts_with(&format!("{field} is missing")));
            }
        }
    }

    #[test]
    fn rejects_empty_or_whitespace_required_strings() {
        for field in ["event_id", "merchant_id", "event_name"] {
            for empty in [r#""""#, r#"" \t ""#, r#""\u00a0""#] {
                let text = with(field, Some(empty));
                let rejection = rejection(&text);
                assert_eq!(rejection.reason, Reason::InvalidField, "{text}");
                assert!(
                    rejection.detail.starts_with(&format!("{field}: ")),
                    "{}",
                    rejection.detail
                );
                assert!(rejection.detail.contains("empty"), "{}", rejection.detail);
            }
        }
    }

    #[test]
    fn rejects_required_strings_of_other_types() {
        let text = with("event_id", Some("42"));
        let rejection = rejection(&text);
        assert_eq!(rejection.reason, Reason::InvalidField);
        assert_eq!(
            rejection.detail,
            "event_id: 42 is not a string; expected a non-empty string of at most 1024 characters"
        );
        assert_eq!(rejection.event_id, None);
        assert_eq!(rejection.merchant_id.as_deref(), Some("m-1"));
    }

    #[test]
    fn trims_event_name() {
        let text = with("event_name", Some(r#""  add_to_cart\n""#));
        assert_eq!(parse_event(&text).unwrap().event_name(), "add_to_cart");
        let text = with("event_name", Some(r#""\tview_content ""#));
        assert_eq!(parse_event(&text).unwrap().event_name(), "view_content");
    }

    #[test]
    fn accepts_event_id_of_1024_characters_and_rejects_1025() {
        let text = with("event_id", Some(&format!("\"{}\"", "é".repeat(1024))));
        assert_eq!(parse_event(&text).unwrap().event_id().chars().count(), 1024);
        let long = "x".repeat(1025);
        let text = with("event_id", Some(&format!("\"{long}\"")));
        let rejection = rejection(&text);
        assert_eq!(rejection.reason, Reason::InvalidField);
        assert_eq!(
            rejection.detail,
            "event_id is 1025 characters long; expected a non-empty string of at most 1024 characters"
        );
        assert_eq!(rejection.event_id.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn optional_strings_accept_strings_integers_and_null() {
        for field in [
            "user_id",
            "anonymous_id",
            "order_id",
            "platform",
            "source",
            "consent_status",
        ] {
            let read = |json: &str| {
                let text = with(field, Some(json));
                let event = parse_event(&text).unwrap();
                let value = match field {
                    "user_id" => event.user_id(),
                    "anonymous_id" => event.anonymous_id(),
                    "order_id" => event.order_id(),
                    "platform" => event.platform(),
                    "source" => event.source(),
                    _ => event.consent_status(),
                };
                value.map(str::to_owned)
            };
            assert_eq!(read(r#""abc""#).as_deref(), Some("abc"));
            assert_eq!(read("12345678901234").as_deref(), Some("12345678901234"));
            assert_eq!(read("-3").as_deref(), Some("-3"));
            assert_eq!(read("null"), None);
            assert_eq!(read(r#""""#).as_deref(), Some(""));
        }
    }

    #[test]
    fn optional_strings_reject_booleans_floats_objects_and_arrays() {
        for (json, shown) in [
            ("true", "true"),
            ("1.5", "1.5"),
            ("{}", "an object"),
            ("[1]", "an array"),
        ] {
            let text = with("user_id", Some(json));
            let rejection = rejection(&text);
            assert_eq!(rejection.reason, Reason::InvalidField);
            assert_eq!(
                rejection.detail,
                format!("user_id: {shown} is not allowed; expected a string, an integer, or null")
            );
        }
    }

    #[test]
    fn value_problems_are_invalid_field() {
        let text = with("value", Some(r#""12,50""#));
        let rejection = rejection(&text);
        assert_eq!(rejection.reason, Reason::InvalidField);
        assert_eq!(
            rejection.detail,
            r#"value: "12,50" is not a decimal number (use a dot as decimal separator, e.g. 12.50)"#
        );
        for bad in [r#""NaN""#, "true", "1e30", r#""""#, "{}"] {
            let text = with("value", Some(bad));
            assert_eq!(rejection_reason(&text), Reason::InvalidField, "{bad}");
        }
        assert_eq!(
            parse_event(&with("value", Some("null"))).unwrap().value(),
            None
        );
        assert_eq!(parse_event(&with("value", None)).unwrap().value(), None);
    }

    fn rejection_reason(text: &str) -> Reason {
        rejection(text).reason
    }

    #[test]
    fn currency_is_three_ascii_letters_stored_upper_case() {
        let read = |json: &str| {
            let text = with("currency", Some(json));
            parse_event(&text)
                .map(|e| e.currency().map(str::to_owned))
                .map_err(|r| r.reason)
        };
        assert_eq!(read(r#""eur""#).unwrap().as_deref(), Some("EUR"));
        assert_eq!(read(r#""GbP""#).unwrap().as_deref(), Some("GBP"));
        assert_eq!(read("null").unwrap(), None);
        let text = with("currency", Some(r#""EURO""#));
        let rejection = rejection(&text);
        assert_eq!(rejection.reason, Reason::InvalidField);
        assert_eq!(
            rejection.detail,
            "currency: \"EURO\" is not a 3-letter currency code; expected a 3-letter ISO 4217 \
             code such as EUR, USD or GBP, or null"
        );
        for bad in [
            r#""EU""#,
            r#""€UR""#,
            r#""E1R""#,
            r#""""#,
            "978",
            "true",
            "{}",
        ] {
            let text = with("currency", Some(bad));
            assert_eq!(rejection_reason(&text), Reason::InvalidField, "{bad}");
        }
    }

    #[test]
    fn properties_must_be_an_object_or_null() {
        let text = with("properties", Some(r#"{"sku":"A-1","tags":["x"]}"#));
        assert_eq!(
            parse_event(&text).unwrap().properties(),
            Some(r#"{"sku":"A-1","tags":["x"]}"#)
        );
        assert_eq!(
            parse_event(&with("properties", Some("null")))
                .unwrap()
                .properties(),
            None
        );
        let text = with("properties", Some(r#"[{"sku":"A-1"}]"#));
        let rejection = rejection(&text);
        assert_eq!(rejection.reason, Reason::InvalidField);
        assert!(
            rejection
                .detail
                .starts_with("properties: an array is not allowed; expected a JSON object"),
            "{}",
            rejection.detail
        );
        for bad in [r#""{}""#, "1", "true"] {
            assert_eq!(
                rejection_reason(&with("properties", Some(bad))),
                Reason::InvalidField
            );
        }
    }

    #[test]
    fn event_time_problems_are_invalid_field() {
        let text = with("event_time", Some(r#""2026-11-02 10:00""#));
        let rejection = rejection(&text);
        assert_eq!(rejection.reason, Reason::InvalidField);
        assert!(
            rejection
                .detail
                .starts_with("event_time: \"2026-11-02 10:00\" is not an RFC 3339")
        );
    }

    #[test]
    fn normalizes_event_time_to_utc_milliseconds() {
        let event = parse_event(GOOD).unwrap();
        let utc = event.event_time();
        assert_eq!(utc.offset(), time::UtcOffset::UTC);
        assert_eq!((utc.hour(), utc.minute(), utc.millisecond()), (8, 0, 0));
    }

    #[test]
    fn unknown_fields_are_allowed_and_kept_in_raw() {
        let text = with(
            "context",
            Some(r#"{"ip":"203.0.113.9","nested":[[{"deep":true}]]}"#),
        );
        let event = parse_event(&text).unwrap();
        assert_eq!(event.raw(), text);
        assert!(event.raw().contains(r#""nested":[[{"deep":true}]]"#));
    }

    #[test]
    fn duplicate_known_keys_are_invalid_json() {
        let text =
            r#"{"event_id":"a","event_id":"b","event_time":0,"merchant_id":"m","event_name":"x"}"#;
        let rejection = rejection(text);
        assert_eq!(rejection.reason, Reason::InvalidJson);
        assert!(
            rejection.detail.contains("duplicate field `event_id`"),
            "{}",
            rejection.detail
        );
    }

    #[test]
    fn reports_the_first_problem_in_field_order_with_both_ids() {
        let text = r#"{"event_id":"e-9","event_time":"bad","merchant_id":"m-9","currency":"EURO"}"#;
        let rejection = rejection(text);
        assert!(rejection.detail.starts_with("event_time: "));
        assert_eq!(rejection.event_id.as_deref(), Some("e-9"));
        assert_eq!(rejection.merchant_id.as_deref(), Some("m-9"));
    }

    #[test]
    fn rejection_ids_are_unescaped_strings() {
        let text = r#"{"event_id":"e\"1","merchant_id":"m\u00e9","event_time":null}"#;
        let rejection = rejection(text);
        assert_eq!(rejection.event_id.as_deref(), Some("e\"1"));
        assert_eq!(rejection.merchant_id.as_deref(), Some("mé"));
    }

    #[test]
    fn nesting_at_the_limit_is_accepted_and_beyond_it_is_invalid_json() {
        let nested = |depth: usize| {
            let inner = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            with("context", Some(&inner))
        };
        // The event object is one level, so `MAX_NESTING_DEPTH - 1` arrays fit inside it.
        let text = nested(MAX_NESTING_DEPTH - 1);
        assert!(parse_event(&text).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
        let text = nested(MAX_NESTING_DEPTH);
        assert_eq!(rejection_reason(&text), Reason::InvalidJson);
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    }

    #[test]
    fn counts_opening_brackets_exactly() {
        for text in [
            String::new(),
            "{".to_owned(),
            "[{]}{[[".repeat(97),
            format!("{}{{", "a[\"{{\u{7b}}é".repeat(300)),
            "{[{[".repeat(1000),
        ] {
            let expected = text.bytes().filter(|&b| b == b'{' || b == b'[').count();
            for start in 0..8.min(text.len() + 1) {
                let slice = &text.as_bytes()[start..];
                let expected_here = slice.iter().filter(|&&b| b == b'{' || b == b'[').count();
                assert_eq!(count_opening_brackets(slice), expected_here);
            }
            assert_eq!(count_opening_brackets(text.as_bytes()), expected);
        }
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        let text = with(
            "note",
            Some(&format!("\"{}\\\"{}\"", "[".repeat(300), "{".repeat(300))),
        );
        assert!(parse_event(&text).is_ok());
    }

    #[test]
    fn ten_thousand_levels_of_nesting_are_rejected_without_overflow() {
        for inner in [
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)),
        ] {
            for field in ["context", "properties", "user_id", "value", "event_time"] {
                let text = with(field, Some(&inner));
                assert_eq!(rejection_reason(&text), Reason::InvalidJson, "{field}");
            }
        }
        let unbalanced = "[".repeat(10_000);
        assert_eq!(
            rejection_reason(&with("context", Some(&unbalanced))),
            Reason::InvalidJson
        );
    }

    #[test]
    fn text_that_is_not_an_object_is_not_an_object() {
        for (text, detail) in [
            (r#""hello""#, "event is a string, not a JSON object"),
            ("42", "event is a number, not a JSON object"),
            ("[1]", "event is an array, not a JSON object"),
            ("null", "event is null, not a JSON object"),
            ("true", "event is a boolean, not a JSON object"),
        ] {
            let rejection = rejection(text);
            assert_eq!(rejection.reason, Reason::NotAnObject);
            assert!(rejection.detail.starts_with(detail), "{}", rejection.detail);
        }
        assert_eq!(rejection_reason("nonsense"), Reason::InvalidJson);
        assert_eq!(rejection_reason(r#"{"event_id":"#), Reason::InvalidJson);
    }

    #[test]
    fn details_quote_at_most_an_excerpt_of_huge_values() {
        let digits = "9".repeat(100_000);
        for (field, json) in [
            ("value", digits.clone()),
            ("value", format!("\"{digits},5\"")),
            ("event_time", format!("{digits}.5")),
            ("event_time", digits.clone()),
            ("event_time", format!("\"{digits}\"")),
            ("currency", format!("\"{digits}\"")),
            ("event_id", format!("\"{digits}\"")),
            ("user_id", format!("[\"{digits}\"]")),
            ("user_id", format!("{}.5", &digits[..300])),
        ] {
            let text = with(field, Some(&json));
            let rejection = rejection(&text);
            assert_eq!(rejection.reason, Reason::InvalidField, "{field}");
            assert!(
                rejection.detail.len() < 400,
                "{field}: {}",
                rejection.detail.len()
            );
        }
    }

    #[test]
    fn numbers_beyond_f64_in_string_fields_are_invalid_json() {
        // serde_json cannot read such a number as a value of any type; `value` takes its text.
        let text = with("user_id", Some("1e400"));
        let rejection = rejection(&text);
        assert_eq!(rejection.reason, Reason::InvalidJson);
        assert!(
            rejection.detail.contains("number out of range"),
            "{}",
            rejection.detail
        );
        assert_eq!(
            rejection_reason(&with("value", Some("1e400"))),
            Reason::InvalidField
        );
        assert!(parse_event(&with("extra", Some("1e400"))).is_ok());
    }

    #[test]
    fn sql_looking_strings_are_taken_verbatim() {
        let text = with("event_name", Some(r#""'); DROP TABLE RAW_EVENTS; --""#));
        let event = parse_event(&text).unwrap();
        assert_eq!(event.event_name(), "'); DROP TABLE RAW_EVENTS; --");
    }
}
