//! The row format for Snowpipe Streaming: each element of a bound array (`element.rs`) becomes one
//! NDJSON line keyed by column name, since a table's default pipe maps JSON keys to columns by
//! name (`../shared/notes/snowpipe-streaming.md` §7; the local Snowflake matches them
//! case-sensitively, the stricter reading).
//!
//! What the INSERT's SQL does server-side (`sql.rs`) happens here instead: the raw event text is
//! parsed once, a repeated key keeping its last value as `PARSE_JSON(..., 'd')` does; the plain
//! columns are read out of it as `::STRING` would (a string as it is, anything else as its JSON
//! text, null as NULL); `PROPERTIES` and `RAW_PAYLOAD` go as JSON values, not strings (a default
//! pipe stores a JSON string in a VARIANT as a string, §7). `LOADED_AT` and `REJECTED_AT` are the
//! client's time: a default pipe evaluates `DEFAULT CURRENT_TIMESTAMP()` once, when the pipe is
//! compiled, not per row (§10).
//!
//! `PROPERTIES` and `RAW_PAYLOAD` are the event's own text, not a re-serialization: the pipe then
//! parses exactly what the INSERT's `PARSE_JSON` parses, keys in their order and every number as
//! written (a `serde_json::Value` would sort the keys and round a number past `f64`), so a
//! redelivered chunk's skipping INSERT (`RAW_PAYLOAD = PARSE_JSON(...)`) recognises a streamed
//! row. Only an event that repeats a key is re-serialized, with each key's last value, because
//! a pipe refuses an object with a repeated key (§7).

use std::borrow::Cow;
use std::collections::HashSet;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::snowflake::Table;

/// The columns of `RAW_EVENTS` read out of the raw event, by their JSON key.
const EVENT_FIELDS: [(&str, &str); 8] = [
    ("EVENT_ID", "event_id"),
    ("MERCHANT_ID", "merchant_id"),
    ("USER_ID", "user_id"),
    ("ANONYMOUS_ID", "anonymous_id"),
    ("ORDER_ID", "order_id"),
    ("PLATFORM", "platform"),
    ("SOURCE", "source"),
    ("CONSENT_STATUS", "consent_status"),
];

/// The `RAW_EVENTS_REJECTED` columns, by the element's key.
const REJECTION_FIELDS: [(&str, &str); 6] = [
    ("SOURCE_MESSAGE_ID", "m"),
    ("EVENT_ID", "e"),
    ("MERCHANT_ID", "mi"),
    ("REASON", "re"),
    ("DETAIL", "d"),
    ("RAW_TEXT", "r"),
];

#[derive(serde::Deserialize)]
struct EncodedEvent<'a> {
    #[serde(borrow)]
    r: Cow<'a, str>,
    t: Cow<'a, str>,
    #[serde(borrow)]
    n: Cow<'a, str>,
    #[serde(default)]
    v: Option<Cow<'a, str>>,
    #[serde(default)]
    c: Option<Cow<'a, str>>,
}

/// Appends the NDJSON line (with its `\n`) for one element of a `table` chunk; `now` is the load
/// time as `YYYY-MM-DD HH:MM:SS.mmm` UTC.
pub fn push_line(
    buf: &mut String,
    table: Table,
    element: &str,
    now: &str,
) -> Result<(), serde_json::Error> {
    let mut row = Map::new();
    match table {
        Table::RawEvents => {
            let event: EncodedEvent<'_> = serde_json::from_str(element)?;
            let payload: Value = serde_json::from_str(&event.r)?;
            for (column, key) in EVENT_FIELDS {
                row.insert(column.into(), as_string(payload.get(key)));
            }
            row.insert("EVENT_TIME".into(), Value::from(event.t.as_ref()));
            row.insert("EVENT_NAME".into(), Value::from(event.n.as_ref()));
            row.insert(
                "VALUE".into(),
                event.v.map_or(Value::Null, |v| v.as_ref().into()),
            );
            row.insert(
                "CURRENCY".into(),
                event.c.map_or(Value::Null, |c| c.as_ref().into()),
            );
            row.insert("LOADED_AT".into(), Value::from(now));
            if repeats_a_key(&event.r) {
                row.insert(
                    "PROPERTIES".into(),
                    payload.get("properties").cloned().unwrap_or(Value::Null),
                );
                row.insert("RAW_PAYLOAD".into(), payload);
            } else {
                // The scalar columns, then the two VARIANTs as the event's text.
                let fields: std::collections::HashMap<String, &RawValue> =
                    serde_json::from_str(&event.r)?;
                let line = serde_json::to_string(&row)?;
                buf.push_str(&line[..line.len() - 1]); // without its closing brace
                buf.push_str(",\"PROPERTIES\":");
                push_one_line(buf, fields.get("properties").map_or("null", |v| v.get()));
                buf.push_str(",\"RAW_PAYLOAD\":");
                push_one_line(buf, &event.r);
                buf.push_str("}\n");
                return Ok(());
            }
        }
        Table::Rejected => {
            let element: Map<String, Value> = serde_json::from_str(element)?;
            for (column, key) in REJECTION_FIELDS {
                row.insert(
                    column.into(),
                    element.get(key).cloned().unwrap_or(Value::Null),
                );
            }
            row.insert("REJECTED_AT".into(), Value::from(now));
        }
    }
    buf.push_str(&serde_json::to_string(&row)?);
    buf.push('\n');
    Ok(())
}

/// Appends JSON `text` on one line: a line break in JSON text can only be whitespace between
/// tokens (inside a string it is escaped), so it becomes a space.
fn push_one_line(buf: &mut String, text: &str) {
    buf.extend(
        text.trim()
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
    );
}

/// Whether a JSON object anywhere in `text` repeats a key (`text` is JSON: the event parser
/// read it).
fn repeats_a_key(text: &str) -> bool {
    struct Unique;
    impl<'de> de::Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(Unique)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = Unique;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON without a repeated key")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut keys = HashSet::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if !keys.insert(key) {
                    return Err(de::Error::custom("repeated key"));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
    }
    serde_json::from_str::<Unique>(text).is_err()
}

/// A field as `::STRING` reads it from a VARIANT.
fn as_string(value: Option<&Value>) -> Value {
    match value {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(other) => Value::String(other.to_string()),
    }
}

/// The NDJSON of every element of the array `body` for `table`.
pub fn ndjson(table: Table, body: &str, now: &str) -> Result<String, serde_json::Error> {
    let elements = super::array::elements(body)?;
    let mut out = String::with_capacity(body.len() * 2);
    for element in elements {
        push_line(&mut out, table, element, now)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_body;
    use crate::rows::JsonArray;

    const NOW: &str = "2026-12-02 10:00:00.000";

    #[test]
    fn an_event_becomes_its_columns_with_the_payload_as_an_object() {
        let raw = r#"{"event_id":"e-1","event_time":"2026-11-02T10:00:00.123+02:00","merchant_id":"m-1","event_name":" purchase ","user_id":42,"value":"19.99","currency":"eur","properties":{"sku":"A","sku":"B"},"context":{"page":{"url":"/x"}}}"#;
        let mut array = JsonArray::new();
        array.push_event(&parse_body(raw).remove(0).unwrap());
        let lines = ndjson(Table::RawEvents, &array.finish(), NOW).unwrap();
        assert!(lines.ends_with('\n'));
        let row: Value = serde_json::from_str(lines.trim_end()).unwrap();
        assert_eq!(row["EVENT_ID"], "e-1");
        assert_eq!(row["MERCHANT_ID"], "m-1");
        assert_eq!(row["EVENT_NAME"], "purchase");
        assert_eq!(row["EVENT_TIME"], "2026-11-02 08:00:00.123");
        assert_eq!(row["USER_ID"], "42", "read as ::STRING reads a number");
        assert_eq!(row["ANONYMOUS_ID"], Value::Null);
        assert_eq!(row["VALUE"], "19.9900");
        assert_eq!(row["CURRENCY"], "EUR");
        assert_eq!(
            row["PROPERTIES"],
            serde_json::json!({"sku": "B"}),
            "last value wins"
        );
        assert_eq!(row["RAW_PAYLOAD"]["context"]["page"]["url"], "/x");
        assert_eq!(row["LOADED_AT"], NOW);
        assert_eq!(
            row.as_object().unwrap().len(),
            15,
            "every column of RAW_EVENTS"
        );
    }

    #[test]
    fn the_payload_goes_as_written_keys_in_order_and_numbers_exact() {
        let raw = "{\"merchant_id\":\"m-1\",\"event_id\":\"e-3\",\n  \"event_time\":\"2026-11-02T10:00:00Z\",\"event_name\":\"purchase\",\"properties\":{\"z\":1.50,\"a\":123456789012345678901234567890},\"context\":{\"n\":\"a\\nb\"}}";
        let mut array = JsonArray::new();
        array.push_event(&parse_body(raw).remove(0).unwrap());
        let lines = ndjson(Table::RawEvents, &array.finish(), NOW).unwrap();
        assert_eq!(lines.matches('\n').count(), 1, "one NDJSON line: {lines}");
        let expected = raw.replace('\n', " ");
        assert!(
            lines.ends_with(&format!(
                ",\"PROPERTIES\":{{\"z\":1.50,\"a\":123456789012345678901234567890}},\"RAW_PAYLOAD\":{expected}}}\n"
            )),
            "{lines}"
        );
        let row: Value = serde_json::from_str(lines.trim_end()).unwrap();
        assert_eq!(row["EVENT_ID"], "e-3");
        assert_eq!(row["RAW_PAYLOAD"]["context"]["n"], "a\nb");
        assert_eq!(row.as_object().unwrap().len(), 15);
    }

    #[test]
    fn repeated_keys_are_found_at_any_depth() {
        assert!(!repeats_a_key(
            r#"{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}"#
        ));
        assert!(repeats_a_key(r#"{"a":1,"a":2}"#));
        assert!(repeats_a_key(r#"{"p":{"s":"A","s":"B"}}"#));
        assert!(repeats_a_key(r#"{"c":[{"x":1,"x":1}]}"#));
        assert!(
            repeats_a_key(r#"{"a\u0062":1,"ab":2}"#),
            "keys compare unescaped"
        );
    }

    #[test]
    fn a_rejection_keeps_its_text_and_reason() {
        let mut array = JsonArray::new();
        array.push_rejection(
            &parse_body(r#"{"event_id":"e-2"}"#).remove(0).unwrap_err(),
            "msg-1",
        );
        let lines = ndjson(Table::Rejected, &array.finish(), NOW).unwrap();
        let row: Value = serde_json::from_str(lines.trim_end()).unwrap();
        assert_eq!(row["SOURCE_MESSAGE_ID"], "msg-1");
        assert_eq!(row["EVENT_ID"], "e-2");
        assert_eq!(row["MERCHANT_ID"], Value::Null);
        assert_eq!(row["REASON"], "missing_field");
        assert_eq!(row["RAW_TEXT"], r#"{"event_id":"e-2"}"#);
        assert_eq!(row["REJECTED_AT"], NOW);
        assert_eq!(row.as_object().unwrap().len(), 7);
    }

    #[test]
    fn an_element_that_is_not_ours_is_an_error() {
        assert!(ndjson(Table::RawEvents, "[1]", NOW).is_err());
        assert!(ndjson(Table::RawEvents, "{}", NOW).is_err());
    }
}
