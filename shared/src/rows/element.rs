//! Events and rejections to the JSON array elements that the load statements bind.
//!
//! The wire format is fixed; the SQL that reads it (`FLATTEN(INPUT => PARSE_JSON(?))`) is in
//! `sql.rs`. A `RAW_EVENTS` element is
//! `{"r":<raw event text>,"t":"YYYY-MM-DD HH:MM:SS.mmm","n":<event_name>,"v":"19.9900","c":"EUR"}`
//! (`v` and `c` only when present); the server reads every other column out of `r`. A
//! `RAW_EVENTS_REJECTED` element is
//! `{"m":<message id>,"e":<event_id|null>,"mi":<merchant_id|null>,"re":<reason>,"d":<detail>,"r":<raw>}`.
//!
//! Elements are appended to a `String` that holds an array under construction: [`push_event`]
//! and [`push_rejection`] write a separating comma unless the buffer is empty or ends with
//! `[`. [`JsonArray`](super::JsonArray) wraps that with the brackets and counts.

use std::borrow::Cow;
use std::fmt::Display;

use crate::event::{Event, Reason, Rejection, push_json_string, push_ntz, push_scale4};

/// Appends one RAW_EVENTS element (a JSON object) to a JSON array being built in `buf`.
pub fn push_event(buf: &mut String, event: &Event<'_>) {
    buf.reserve(event.encoded_len_hint());
    separate(buf);
    buf.push_str("{\"r\":");
    push_json_string(buf, event.raw());
    buf.push_str(",\"t\":\"");
    push_ntz(buf, event.event_time());
    buf.push_str("\",\"n\":");
    push_json_string(buf, event.event_name());
    if let Some(amount) = event.value() {
        buf.push_str(",\"v\":\"");
        push_scale4(buf, amount);
        buf.push('"');
    }
    if let Some(code) = event.currency() {
        buf.push_str(",\"c\":\"");
        buf.push_str(code);
        buf.push('"');
    }
    buf.push('}');
}

/// Appends one RAW_EVENTS_REJECTED element.
pub fn push_rejection(buf: &mut String, rejection: &Rejection<'_>, source_message_id: &str) {
    buf.reserve(rejection.encoded_len_hint() + source_message_id.len());
    separate(buf);
    buf.push_str("{\"m\":");
    push_json_string(buf, source_message_id);
    buf.push_str(",\"e\":");
    push_json_string_or_null(buf, rejection.event_id.as_deref());
    buf.push_str(",\"mi\":");
    push_json_string_or_null(buf, rejection.merchant_id.as_deref());
    buf.push_str(",\"re\":\"");
    buf.push_str(rejection.reason.code());
    buf.push_str("\",\"d\":");
    push_json_string(buf, &rejection.detail);
    buf.push_str(",\"r\":");
    push_json_string(buf, rejection.raw);
    buf.push('}');
}

/// Appends the quarantine row for a `RAW_EVENTS` element Snowflake refused: the element's raw
/// event text (the element itself when it has none), the event and merchant ids read from that
/// text, reason `snowflake_rejected`, and Snowflake's error as the detail.
pub fn push_refused(buf: &mut String, element: &str, error: &dyn Display, source_message_id: &str) {
    let raw = serde_json::from_str::<EncodedEvent<'_>>(element)
        .map(|e| e.r.into_owned())
        .unwrap_or_else(|_| element.to_string());
    let ids: Ids<'_> = serde_json::from_str(&raw).unwrap_or(Ids {
        event_id: None,
        merchant_id: None,
    });
    let rejection = Rejection {
        reason: Reason::SnowflakeRejected,
        detail: format!("Snowflake refused this row: {error}"),
        raw: &raw,
        event_id: ids.event_id.map(|c| Cow::Owned(c.into_owned())),
        merchant_id: ids.merchant_id.map(|c| Cow::Owned(c.into_owned())),
    };
    push_rejection(buf, &rejection, source_message_id);
}

/// The raw text of a `RAW_EVENTS` element.
#[derive(serde::Deserialize)]
struct EncodedEvent<'a> {
    #[serde(borrow)]
    r: Cow<'a, str>,
}

/// The ids in an event's raw text.
#[derive(serde::Deserialize)]
struct Ids<'a> {
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    merchant_id: Option<Cow<'a, str>>,
}

/// A comma before every element but the first of an array.
fn separate(buf: &mut String) {
    if !buf.is_empty() && !buf.ends_with('[') {
        buf.push(',');
    }
}

/// Room for escaping: raw JSON is full of quotes, each of which doubles.
fn escaped_len_hint(text: &str) -> usize {
    text.len() + text.len() / 8 + 2
}

impl Event<'_> {
    /// About how many bytes [`push_event`] appends for this event, for sizing buffers and
    /// batches; [`JsonArray::len_bytes`](super::JsonArray::len_bytes) gives exact sizes.
    pub fn encoded_len_hint(&self) -> usize {
        // {"r":,"t":"YYYY-MM-DD HH:MM:SS.mmm","n":,"v":"-99999999999999.9999","c":"EUR"}
        const FIXED: usize = 80;
        FIXED + escaped_len_hint(self.raw()) + escaped_len_hint(self.event_name())
    }
}

impl Rejection<'_> {
    /// About how many bytes [`push_rejection`] appends for this rejection.
    pub fn encoded_len_hint(&self) -> usize {
        // {"m":,"e":,"mi":,"re":"not_an_object","d":,"r":}
        const FIXED: usize = 56;
        FIXED
            + escaped_len_hint(self.raw)
            + escaped_len_hint(&self.detail)
            + self.event_id.as_deref().map_or(4, escaped_len_hint)
            + self.merchant_id.as_deref().map_or(4, escaped_len_hint)
    }
}

fn push_json_string_or_null(buf: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_json_string(buf, text),
        None => buf.push_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{parse_body, parse_event};
    use crate::rows::JsonArray;
    use serde_json::{Value, json};

    const EVENT: &str = r#"{"event_id":"e-1","event_time":"2026-11-02T10:00:00.123456+02:00","merchant_id":"m-1","event_name":" purchase ","value":"19.99","currency":"eur","extra":{"x":[1,2]}}"#;

    #[test]
    fn encodes_an_event_in_the_fixed_wire_format() {
        let event = parse_event(EVENT).unwrap();
        let mut array = JsonArray::new();
        array.push_event(&event);
        let text = array.finish();
        let expected = format!(
            r#"[{{"r":{},"t":"2026-11-02 08:00:00.123","n":"purchase","v":"19.9900","c":"EUR"}}]"#,
            serde_json::to_string(EVENT).unwrap()
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn omits_value_and_currency_when_absent() {
        let raw = r#"{"event_id":"e","event_time":1793606400000,"merchant_id":"m","event_name":"view_content"}"#;
        let mut buf = String::new();
        push_event(&mut buf, &parse_event(raw).unwrap());
        assert_eq!(
            buf,
            format!(
                r#"{{"r":{},"t":"2026-11-02 08:00:00.000","n":"view_content"}}"#,
                serde_json::to_string(raw).unwrap()
            )
        );
    }

    #[test]
    fn encodes_rejections_with_null_ids_when_unknown() {
        let body = r#"[{"event_id":"e-7","merchant_id":"m-7"}, 5]"#;
        let parsed = parse_body(body);
        let mut array = JsonArray::new();
        for rejection in parsed.iter().filter_map(|p| p.as_ref().err()) {
            array.push_rejection(rejection, "msg-1");
        }
        assert_eq!(array.len(), 2);
        let value: Value = serde_json::from_str(&array.finish()).unwrap();
        assert_eq!(
            value[0],
            json!({
                "m": "msg-1", "e": "e-7", "mi": "m-7", "re": "missing_field",
                "d": "event_time is missing or null; expected an RFC 3339 timestamp such as 2026-11-02T10:00:00+02:00, or epoch milliseconds",
                "r": r#"{"event_id":"e-7","merchant_id":"m-7"}"#,
            })
        );
        assert_eq!(value[1]["e"], Value::Null);
        assert_eq!(value[1]["mi"], Value::Null);
        assert_eq!(value[1]["re"], "not_an_object");
        assert_eq!(value[1]["r"], "5");
    }

    #[test]
    fn free_functions_separate_elements_with_commas() {
        let event = parse_event(EVENT).unwrap();
        let rejection = parse_body("42").remove(0).unwrap_err();
        let mut buf = String::from("[");
        push_event(&mut buf, &event);
        push_rejection(&mut buf, &rejection, "m");
        push_event(&mut buf, &event);
        buf.push(']');
        let value: Value = serde_json::from_str(&buf).unwrap();
        assert_eq!(value.as_array().unwrap().len(), 3);
        let mut bare = String::new();
        push_event(&mut bare, &event);
        assert!(bare.starts_with('{'));
    }

    #[test]
    fn length_hints_are_close_to_the_truth() {
        let event = parse_event(EVENT).unwrap();
        let mut buf = String::new();
        push_event(&mut buf, &event);
        let hint = event.encoded_len_hint();
        assert!(
            hint >= buf.len() && hint < buf.len() * 2,
            "{hint} vs {}",
            buf.len()
        );
        let rejection = parse_body("[1]").remove(0).unwrap_err();
        let mut buf = String::new();
        push_rejection(&mut buf, &rejection, "");
        assert!(rejection.encoded_len_hint() >= buf.len());
    }

    #[test]
    fn non_ascii_and_emoji_in_every_field_round_trip_through_encode() {
        let fields = json!({
            "event_id": "évt-🎉-1",
            "event_time": "2026-11-02T10:00:00+02:00",
            "merchant_id": "händler-東京-\"quoted\"",
            "event_name": "  kaufen 🛒 \\ back\tslash  ",
            "user_id": "ユーザー-1",
            "anonymous_id": "anon-ü\u{0}\u{1f}",
            "order_id": "ORD-№-42",
            "platform": "wéb",
            "source": "tracklayer-js/3 ☕",
            "consent_status": "erteilt ✓",
            "value": "-12.345678",
            "currency": "chf",
            "properties": {"name": "Café «crème» 👩‍👩‍👧", "line\nbreak": "\u{2028}"},
            "unknown_extra": "ĳ 😀",
        });
        let raw = serde_json::to_string(&fields).unwrap();
        let body = format!("[{raw}, {{\"event_id\":\"rejected-é🎉\",\"merchant_id\":\"m-ß\"}}]");
        let mut events = JsonArray::new();
        let mut rejections = JsonArray::new();
        for parsed in parse_body(&body) {
            match parsed {
                Ok(event) => events.push_event(&event),
                Err(rejection) => rejections.push_rejection(&rejection, "msg-✉️-\"1\""),
            }
        }
        let events: Value = serde_json::from_str(&events.finish()).unwrap();
        let element = &events[0];
        assert_eq!(element["r"].as_str().unwrap(), raw);
        let back: Value = serde_json::from_str(element["r"].as_str().unwrap()).unwrap();
        assert_eq!(back, fields);
        assert_eq!(element["n"], "kaufen 🛒 \\ back\tslash");
        assert_eq!(element["t"], "2026-11-02 08:00:00.000");
        assert_eq!(element["v"], "-12.3457");
        assert_eq!(element["c"], "CHF");

        let rejections: Value = serde_json::from_str(&rejections.finish()).unwrap();
        let element = &rejections[0];
        assert_eq!(element["m"], "msg-✉️-\"1\"");
        assert_eq!(element["e"], "rejected-é🎉");
        assert_eq!(element["mi"], "m-ß");
        assert_eq!(element["re"], Reason::MissingField.code());
        assert_eq!(
            element["r"],
            "{\"event_id\":\"rejected-é🎉\",\"merchant_id\":\"m-ß\"}"
        );
    }

    #[test]
    fn sql_looking_strings_are_encoded_verbatim() {
        let raw = r#"{"event_id":"x'; DROP TABLE RAW_EVENTS;--","event_time":0,"merchant_id":"m' OR '1'='1","event_name":"$$ SELECT 1 $$","note":"\\' ?"}"#;
        let event = parse_event(raw).unwrap();
        let mut array = JsonArray::new();
        array.push_event(&event);
        let value: Value = serde_json::from_str(&array.finish()).unwrap();
        assert_eq!(value[0]["r"], raw);
        assert_eq!(value[0]["n"], "$$ SELECT 1 $$");
    }

    #[test]
    fn a_refused_element_becomes_a_quarantine_row_with_its_raw_text_and_ids() {
        let element = r#"{"r":"{\"event_id\":\"e1\",\"merchant_id\":\"m\"}","t":"2026-01-01 00:00:00.000","n":"x"}"#;
        let mut buf = String::new();
        push_refused(
            &mut buf,
            element,
            &"100038 (22018): Numeric value 'abc' is not recognized",
            "msg-1",
        );
        assert_eq!(
            buf,
            r#"{"m":"msg-1","e":"e1","mi":"m","re":"snowflake_rejected","d":"Snowflake refused this row: 100038 (22018): Numeric value 'abc' is not recognized","r":"{\"event_id\":\"e1\",\"merchant_id\":\"m\"}"}"#
        );
        // An element that is not an encoded event is kept whole, with no ids.
        let mut buf = String::new();
        push_refused(&mut buf, "[1]", &"x", "msg-2");
        assert_eq!(
            buf,
            r#"{"m":"msg-2","e":null,"mi":null,"re":"snowflake_rejected","d":"Snowflake refused this row: x","r":"[1]"}"#
        );
    }

    /// One event and one rejection as they travel, pinned whole.
    #[test]
    fn an_encoded_event_and_rejection_are_pinned() {
        let body = format!("[{EVENT},{{\"event_id\":\"e-2\",\"merchant_id\":\"m-1\"}}]");
        let mut array = JsonArray::new();
        for row in parse_body(&body) {
            match row {
                Ok(event) => array.push_event(&event),
                Err(rejection) => array.push_rejection(&rejection, "sqs-message-1"),
            }
        }
        let text = array.finish();
        let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text).unwrap());
        insta::assert_snapshot!("encoded_rows", format!("{text}\n\n{}", pretty.unwrap()));
    }
}
