//! The one builder of a bound JSON array: ingest's chunks, flush's packed statements, the
//! halves of a refused chunk and the quarantine's rows are all built with it.

use crate::event::{Event, Rejection};

use std::fmt::Display;

use super::element::{push_event, push_refused, push_rejection};

/// A JSON array of encoded elements under construction: `[` on creation, `]` on finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonArray {
    buf: String,
    elements: usize,
}

impl JsonArray {
    /// An empty array.
    pub fn new() -> Self {
        JsonArray::with_capacity(0)
    }

    /// An empty array with room for `bytes` bytes of encoded elements.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = String::with_capacity(bytes.saturating_add(2));
        buf.push('[');
        JsonArray { buf, elements: 0 }
    }

    /// An empty array in `buf`'s allocation (its text is discarded): a buffer whose statement
    /// has been sent can carry the next one without allocating and faulting in fresh memory.
    pub fn reuse(mut buf: String) -> Self {
        buf.clear();
        buf.push('[');
        JsonArray { buf, elements: 0 }
    }

    /// Appends one `RAW_EVENTS` element.
    pub fn push_event(&mut self, event: &Event<'_>) {
        push_event(&mut self.buf, event);
        self.elements += 1;
    }

    /// Appends one `RAW_EVENTS_REJECTED` element.
    pub fn push_rejection(&mut self, rejection: &Rejection<'_>, source_message_id: &str) {
        push_rejection(&mut self.buf, rejection, source_message_id);
        self.elements += 1;
    }

    /// Appends one encoded element (text [`elements`] returned, or one of `element`'s).
    pub fn push_element(&mut self, element: &str) {
        self.push_elements(element, 1);
    }

    /// Appends `count` encoded elements given as their comma-separated text, no brackets (the
    /// inside of an array, or elements `element`'s free functions wrote to a buffer).
    pub fn push_elements(&mut self, elements: &str, count: usize) {
        if count == 0 {
            return;
        }
        if self.elements > 0 {
            self.buf.push(',');
        }
        self.buf.push_str(elements);
        self.elements += count;
    }

    /// Appends the quarantine row for a `RAW_EVENTS` element Snowflake refused (see
    /// [`push_refused`]).
    pub fn push_refused(&mut self, element: &str, error: &dyn Display, source: &str) {
        push_refused(&mut self.buf, element, error, source);
        self.elements += 1;
    }

    /// Number of elements pushed so far.
    pub fn len(&self) -> usize {
        self.elements
    }

    /// Whether nothing has been pushed.
    pub fn is_empty(&self) -> bool {
        self.elements == 0
    }

    /// Exact length in bytes of the text [`finish`](JsonArray::finish) would return now.
    pub fn len_bytes(&self) -> usize {
        self.buf.len() + 1
    }

    /// The complete JSON array text.
    pub fn finish(mut self) -> String {
        self.buf.push(']');
        self.buf
    }
}

/// The elements of a JSON array's text, each as its exact text (to load part of an array, or
/// read one back).
pub fn elements(array: &str) -> Result<Vec<&str>, serde_json::Error> {
    let elements: Vec<&serde_json::value::RawValue> = serde_json::from_str(array)?;
    Ok(elements.into_iter().map(|e| e.get()).collect())
}

/// The text between an array's brackets, or `None` when `array` is not bracketed.
pub fn inside(array: &str) -> Option<&str> {
    array.trim().strip_prefix('[')?.strip_suffix(']')
}

impl Default for JsonArray {
    fn default() -> Self {
        JsonArray::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;
    use serde_json::Value;

    const EVENT: &str = r#"{"event_id":"e-1","event_time":"2026-11-02T10:00:00.123456+02:00","merchant_id":"m-1","event_name":" purchase ","value":"19.99","currency":"eur","extra":{"x":[1,2]}}"#;

    #[test]
    fn json_array_reports_exact_length_and_count() {
        let mut array = JsonArray::default();
        assert!(array.is_empty());
        assert_eq!(array.len_bytes(), 2);
        let event = parse_event(EVENT).unwrap();
        array.push_event(&event);
        array.push_event(&event);
        let expected_len = array.len_bytes();
        assert_eq!(array.len(), 2);
        assert_eq!(array.finish().len(), expected_len);
        assert_eq!(JsonArray::new().finish(), "[]");
    }

    #[test]
    fn elements_pushed_as_text_are_separated_and_counted() {
        let mut array = JsonArray::new();
        array.push_elements("", 0);
        array.push_element("1");
        array.push_elements("2,3", 2);
        array.push_elements("", 0);
        assert_eq!(array.len(), 3);
        let text = array.finish();
        assert_eq!(text, "[1,2,3]");
        assert_eq!(elements(&text).unwrap(), ["1", "2", "3"]);
        assert_eq!(
            elements(r#"[ {"a": [1]} , "x"]"#).unwrap(),
            [r#"{"a": [1]}"#, r#""x""#]
        );
        assert!(elements("{}").is_err());
        assert_eq!(inside(" [1,2] "), Some("1,2"));
        assert_eq!(inside("[]"), Some(""));
        assert_eq!(inside("{}"), None);
    }

    #[test]
    fn reused_buffer_starts_a_fresh_array() {
        let event = parse_event(EVENT).unwrap();
        let mut first = JsonArray::with_capacity(4096);
        first.push_event(&event);
        let text = first.finish();
        let capacity = text.capacity();
        let mut second = JsonArray::reuse(text);
        assert!(second.is_empty());
        assert_eq!(second.len_bytes(), 2);
        second.push_event(&event);
        let text = second.finish();
        assert_eq!(text.capacity(), capacity);
        assert_eq!(
            serde_json::from_str::<Value>(&text)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
