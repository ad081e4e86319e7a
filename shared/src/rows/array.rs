//! The one builder of a bound JSON array: ingest's chunks, flush's packed statements, the
//! halves of a refused chunk and the quarantine's rows are all built with it.

use crate::event::{Event, Rejection};

use super::element::{push_event, push_rejection};

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
