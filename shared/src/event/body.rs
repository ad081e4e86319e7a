//! Message body shapes: one object, a JSON array of objects, or NDJSON.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::fields::Fields;
use super::json::trim_json_whitespace;
use super::scan;
use super::validate::{not_an_object, parse_read_event, validate};
use super::{Parsed, Reason, Rejection, parse_event};

const EXPECTED_BODY: &str = "expected a JSON object, a JSON array of objects, \
     or NDJSON (one object per line)";

/// Splits an SQS message body into events and validates each one, in body order.
///
/// After leading whitespace, `[` starts an array (each element is one event; a malformed
/// array rejects the whole body), and `{` starts one event, unless more text follows the
/// first complete value: then the body is NDJSON and every non-blank line is one event.
/// Anything else, and an empty body, is one rejection of the whole body. An empty array
/// yields nothing.
pub fn parse_body(body: &str) -> Vec<Parsed<'_>> {
    let text = trim_json_whitespace(body);
    match text.as_bytes().first() {
        None => vec![Err(Rejection::unreadable(
            Reason::EmptyBody,
            format!("message body is empty; {EXPECTED_BODY}"),
            body,
        ))],
        Some(b'[') => parse_array(body, text),
        Some(b'{') => parse_object_or_lines(body, text),
        Some(_) => vec![Err(not_a_body(body, text))],
    }
}

fn parse_array<'a>(body: &'a str, text: &'a str) -> Vec<Parsed<'a>> {
    parse_array_of_objects(text).unwrap_or_else(|| parse_any_array(body, text))
}

/// Any array: read whole as raw elements first, so a malformed array is one rejection.
fn parse_any_array<'a>(body: &'a str, text: &'a str) -> Vec<Parsed<'a>> {
    match serde_json::from_str::<Vec<&RawValue>>(text) {
        Ok(elements) => elements
            .into_iter()
            .map(|element| parse_event(element.get()))
            .collect(),
        Err(error) => vec![Err(Rejection::unreadable(
            Reason::InvalidJson,
            format!("message body is not a valid JSON array: {error}; {EXPECTED_BODY}"),
            body,
        ))],
    }
}

/// The common array, in one pass: every element an object that reads as an event, each parsed
/// in place with its end found by the fast reader or else serde_json. `None` for anything else
/// (a non-object element, broken JSON, a repeated field), which the general path then handles,
/// reading the array twice but reporting exactly.
fn parse_array_of_objects(text: &str) -> Option<Vec<Parsed<'_>>> {
    let skip_whitespace = |at: usize| {
        at + text.as_bytes()[at..]
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count()
    };
    let mut parsed = Vec::new();
    let mut at = skip_whitespace(1);
    if text.as_bytes().get(at) == Some(&b']') {
        return (at + 1 == text.len()).then_some(parsed);
    }
    loop {
        if text.as_bytes().get(at) != Some(&b'{') {
            return None;
        }
        let end = match scan::read_event(&text[at..]) {
            Some((fields, len)) => {
                parsed.push(validate(&text[at..at + len], fields));
                at + len
            }
            None => {
                let mut stream =
                    serde_json::Deserializer::from_str(&text[at..]).into_iter::<Fields<'_>>();
                let fields = stream.next()?.ok()?;
                let end = at + stream.byte_offset();
                parsed.push(parse_read_event(&text[at..end], fields));
                end
            }
        };
        at = skip_whitespace(end);
        match text.as_bytes().get(at) {
            Some(b',') => at = skip_whitespace(at + 1),
            // `text` is trimmed, so the closing bracket must be its last byte.
            Some(b']') => return (at + 1 == text.len()).then_some(parsed),
            _ => return None,
        }
    }
}

/// One event, or NDJSON when the first complete object is followed by more text. A rejected
/// single-event body keeps the whole body, surrounding whitespace included, as its raw text.
fn parse_object_or_lines<'a>(body: &'a str, text: &'a str) -> Vec<Parsed<'a>> {
    // The common case, one event per message, is parsed once.
    let single = parse_event(text);
    match single {
        Err(rejection) if rejection.reason == Reason::InvalidJson && is_ndjson(text) => {
            parse_lines(text)
        }
        Err(rejection) => vec![Err(Rejection {
            raw: body,
            ..rejection
        })],
        ok => vec![ok],
    }
}

fn parse_lines(text: &str) -> Vec<Parsed<'_>> {
    // Sized up front: growing a vector of ~300-byte results would copy them repeatedly.
    let lines = text.split('\n').count();
    let mut parsed = Vec::with_capacity(lines);
    parsed.extend(
        text.split('\n')
            .map(trim_json_whitespace)
            .filter(|line| !line.is_empty())
            .map(parse_event),
    );
    parsed
}

/// Whether a body starting with `{` (and not one valid event) holds several lines of events.
///
/// If the first value parses, the body is NDJSON when anything follows it. If it does not
/// parse, the body is taken as NDJSON with a broken first line only when it has several
/// non-blank lines and each starts with `{`; a pretty-printed object never looks like that.
fn is_ndjson(text: &str) -> bool {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match <&RawValue>::deserialize(&mut deserializer) {
        Ok(first) => !trim_json_whitespace(&text[first.get().len()..]).is_empty(),
        Err(_) => {
            let mut lines = text
                .split('\n')
                .map(trim_json_whitespace)
                .filter(|line| !line.is_empty());
            let all_objects = lines.clone().all(|line| line.starts_with('{'));
            all_objects && lines.nth(1).is_some()
        }
    }
}

fn not_a_body<'a>(body: &'a str, text: &str) -> Rejection<'a> {
    let rejection = not_an_object(text);
    let detail = match rejection.reason {
        Reason::NotAnObject => rejection.detail.replacen("event is", "message body is", 1),
        _ => rejection.detail.replacen("event is", "message body is", 1) + "; " + EXPECTED_BODY,
    };
    Rejection::unreadable(rejection.reason, detail, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_single_event_body_keeps_its_whitespace() {
        let body = "  {\"event_id\": \"x\", \"merchant_id\": \n";
        let parsed = parse_body(body);
        assert_eq!(parsed.len(), 1);
        let rejection = parsed[0].as_ref().unwrap_err();
        assert_eq!(rejection.reason, Reason::InvalidJson);
        assert_eq!(rejection.raw, body);
    }

    fn event(id: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","event_time":"2026-11-02T10:00:00Z","merchant_id":"m","event_name":"view_content"}}"#
        )
    }

    fn outcome(parsed: &Parsed<'_>) -> String {
        match parsed {
            Ok(event) => format!("ok {}", event.event_id()),
            Err(rejection) => format!("{} {}", rejection.reason, rejection.raw),
        }
    }

    fn outcomes(body: &str) -> Vec<String> {
        parse_body(body).iter().map(outcome).collect()
    }

    #[test]
    fn single_object_body_is_one_event_with_exact_raw() {
        let body = format!("\n  {}\t\r\n", event("a"));
        let parsed = parse_body(&body);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].as_ref().unwrap().raw(), event("a"));
    }

    #[test]
    fn empty_or_whitespace_body_is_empty_body() {
        for body in ["", "   ", "\n\r\n\t"] {
            let parsed = parse_body(body);
            assert_eq!(parsed.len(), 1);
            let rejection = parsed[0].as_ref().unwrap_err();
            assert_eq!(rejection.reason, Reason::EmptyBody);
            assert_eq!(rejection.raw, body);
            assert!(rejection.detail.starts_with("message body is empty"));
        }
    }

    #[test]
    fn array_body_mixing_good_and_bad_keeps_order_and_exact_raw_slices() {
        let bad_currency = r#"{"event_id":"c","event_time":0,"merchant_id":"m","event_name":"x","currency":"EURO"}"#;
        let body = format!(
            "[ {} ,\n 42, \"text\", {}, {bad_currency},\n[1, 2] , null ]",
            event("a"),
            event("b")
        );
        assert_eq!(
            outcomes(&body),
            [
                "ok a".to_owned(),
                "not_an_object 42".to_owned(),
                "not_an_object \"text\"".to_owned(),
                "ok b".to_owned(),
                format!("invalid_field {bad_currency}"),
                "not_an_object [1, 2]".to_owned(),
                "not_an_object null".to_owned(),
            ]
        );
        let parsed = parse_body(&body);
        assert_eq!(parsed[0].as_ref().unwrap().raw(), event("a"));
        assert_eq!(parsed[3].as_ref().unwrap().raw(), event("b"));
    }

    #[test]
    fn raw_slices_point_into_the_body() {
        let body = format!("[{},{}]", event("a"), event("b"));
        for parsed in parse_body(&body) {
            let raw = parsed.unwrap().raw();
            let offset = raw.as_ptr() as usize - body.as_ptr() as usize;
            assert_eq!(&body[offset..offset + raw.len()], raw);
        }
    }

    #[test]
    fn malformed_array_body_is_one_invalid_json_rejection() {
        let body = format!("[{}, {}", event("a"), event("b"));
        let parsed = parse_body(&body);
        assert_eq!(parsed.len(), 1);
        let rejection = parsed[0].as_ref().unwrap_err();
        assert_eq!(rejection.reason, Reason::InvalidJson);
        assert_eq!(rejection.raw, body);
        assert!(
            rejection
                .detail
                .starts_with("message body is not a valid JSON array: ")
        );
    }

    #[test]
    fn one_pass_array_reading_agrees_with_the_general_path() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let arrays = [
            "[]".to_owned(),
            "[ \n ]".to_owned(),
            format!("[{}]", event("a")),
            format!("[ {} ,\r\n\t{} ]", event("a"), event("b")),
            format!("[{},{{\"event_id\":\"z\"}},{}]", event("a"), event("c")),
            format!("[{},{{\"event_id\":\"d\",\"x\":{deep}}}]", event("a")),
            format!(
                "[{{\"event_id\":\"e\\\"q\",\"merchant_id\":\"m\\u00e9\"}},{}]",
                event("a")
            ),
        ];
        for text in &arrays {
            let one_pass = parse_array_of_objects(text).expect(text);
            assert_eq!(one_pass, parse_any_array(text, text), "{text}");
        }
        let fallbacks = [
            format!("[{},]", event("a")),
            format!("[{}}}", event("a")),
            format!("[{}{}]", event("a"), event("b")),
            format!("[{}] x", event("a")),
            format!("[{}, 42]", event("a")),
            format!("[{{\"event_id\":\"a\",\"event_id\":\"b\"}},{}]", event("a")),
            format!("[{}, {{\"event_id\":", event("a")),
            "[1]".to_owned(),
        ];
        for text in &fallbacks {
            assert_eq!(parse_array_of_objects(text), None, "{text}");
        }
    }

    #[test]
    fn empty_array_yields_nothing() {
        assert!(parse_body("[]").is_empty());
        assert!(parse_body(" [ ] ").is_empty());
    }

    #[test]
    fn ndjson_body_rejects_only_the_bad_line() {
        let body = format!(
            "{}\r\n\n{{\"event_id\":\"broken\n{}\n   \n42\n{}\n",
            event("a"),
            event("b"),
            event("c")
        );
        assert_eq!(
            outcomes(&body),
            [
                "ok a".to_owned(),
                "invalid_json {\"event_id\":\"broken".to_owned(),
                "ok b".to_owned(),
                "not_an_object 42".to_owned(),
                "ok c".to_owned(),
            ]
        );
    }

    #[test]
    fn ndjson_with_a_broken_first_line_is_still_ndjson() {
        let body = format!("{{\"event_id\": \n{}\n{}", event("a"), event("b"));
        assert_eq!(
            outcomes(&body),
            ["invalid_json {\"event_id\":", "ok a", "ok b"]
        );
    }

    #[test]
    fn ndjson_lines_with_a_validation_error_are_rejected_alone() {
        let body = format!("{}\n{}", event("a"), r#"{"event_id":"z"}"#);
        assert_eq!(
            outcomes(&body),
            ["ok a", r#"missing_field {"event_id":"z"}"#]
        );
    }

    #[test]
    fn pretty_printed_object_is_one_event() {
        let pretty = "{\n  \"event_id\": \"p\",\n  \"event_time\": 0,\n  \"merchant_id\": \"m\",\n  \"event_name\": \"x\",\n  \"properties\": {\n    \"a\": 1\n  }\n}\n";
        assert_eq!(outcomes(pretty), ["ok p"]);
        let broken = "{\n  \"event_id\": \"p\",\n  \"event_time\": 0,\n  \"merchant_id\": \n}";
        let parsed = parse_body(broken);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].as_ref().unwrap_err().reason, Reason::InvalidJson);
    }

    #[test]
    fn object_followed_by_garbage_on_the_same_line_is_one_bad_line() {
        let body = format!("{} trailing", event("a"));
        let parsed = parse_body(&body);
        assert_eq!(parsed.len(), 1);
        let rejection = parsed[0].as_ref().unwrap_err();
        assert_eq!(rejection.reason, Reason::InvalidJson);
        assert_eq!(rejection.raw, body);
    }

    #[test]
    fn json_string_number_or_garbage_body_is_one_rejection() {
        for (body, reason, detail) in [
            (
                "\"just a string\"",
                Reason::NotAnObject,
                "message body is a string, not a JSON object",
            ),
            (
                " 12.5 ",
                Reason::NotAnObject,
                "message body is a number, not a JSON object",
            ),
            ("true", Reason::NotAnObject, "message body is a boolean"),
            (
                "hello world",
                Reason::InvalidJson,
                "message body is not valid JSON",
            ),
            (
                "<xml/>",
                Reason::InvalidJson,
                "message body is not valid JSON",
            ),
        ] {
            let parsed = parse_body(body);
            assert_eq!(parsed.len(), 1, "{body}");
            let rejection = parsed[0].as_ref().unwrap_err();
            assert_eq!(rejection.reason, reason, "{body}");
            assert_eq!(rejection.raw, body);
            assert!(rejection.detail.starts_with(detail), "{}", rejection.detail);
        }
    }

    #[test]
    fn deep_nesting_does_not_panic_in_any_body_shape() {
        let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        let in_event = format!(
            r#"{{"event_id":"d","event_time":0,"merchant_id":"m","event_name":"x","properties":{deep_object}}}"#
        );
        assert_eq!(outcomes(&deep_array).len(), 1);
        assert_eq!(
            parse_body(&deep_object)[0].as_ref().unwrap_err().reason,
            Reason::InvalidJson
        );
        assert_eq!(
            parse_body(&in_event)[0].as_ref().unwrap_err().reason,
            Reason::InvalidJson
        );
        let array_of = format!("[{in_event},{}]", event("ok"));
        let parsed = parse_body(&array_of);
        assert_eq!(parsed[0].as_ref().unwrap_err().reason, Reason::InvalidJson);
        assert_eq!(parsed[0].as_ref().unwrap_err().raw, in_event);
        assert!(parsed[1].is_ok());
        let ndjson = format!("{in_event}\n{}", event("ok"));
        let parsed = parse_body(&ndjson);
        assert_eq!(parsed.len(), 2);
        assert!(parsed[1].is_ok());
        let unterminated = "[".repeat(10_000);
        assert_eq!(
            parse_body(&unterminated)[0].as_ref().unwrap_err().reason,
            Reason::InvalidJson
        );
    }
}
