//! A fast, strict reader for the usual event object, tried before serde_json.
//!
//! It reads one JSON object in a single pass straight into a [`Fields`], checking the JSON as
//! strictly as serde_json does. It gives up (`None`) on anything out of the ordinary: broken
//! JSON, an escape in a key or in a known string field, a number in a known field that is not
//! a plain integer, a known field given twice, or nesting past [`MAX_NESTING_DEPTH`]. The
//! caller then reads the text with serde_json, which also words the error. So this reader
//! never decides a rejection; it only makes the common case cheap. The fuzzers hold it to
//! serde_json's result (`invariants::check_event_reader`).

use std::borrow::Cow;

use super::MAX_NESTING_DEPTH;
use super::fields::{Fields, Scalar};
use super::json::next_special;

/// Reads the object at the start of `text`: the event's known fields and the length of the
/// object's text. `None` when serde_json must decide.
pub(super) fn read_event(text: &str) -> Option<(Fields<'_>, usize)> {
    let mut reader = Reader { text, at: 0 };
    let fields = reader.event()?;
    Some((fields, reader.at))
}

/// Where a known field's value goes.
enum Slot<'w, 'a> {
    Scalar(&'w mut Scalar<'a>),
    Raw(&'w mut Option<&'a str>),
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    /// Steps over `byte`, or `None` if something else comes next.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn event(&mut self) -> Option<Fields<'a>> {
        self.eat(b'{')?;
        let mut fields = Fields::default();
        let mut seen = 0_u16;
        self.skip_whitespace();
        if self.eat(b'}').is_some() {
            return Some(fields);
        }
        loop {
            let key = self.plain_string()?;
            self.skip_whitespace();
            self.eat(b':')?;
            self.skip_whitespace();
            let (bit, slot) = match key {
                "event_id" => (0, Slot::Scalar(&mut fields.event_id)),
                "event_time" => (1, Slot::Raw(&mut fields.event_time)),
                "merchant_id" => (2, Slot::Scalar(&mut fields.merchant_id)),
                "event_name" => (3, Slot::Scalar(&mut fields.event_name)),
                "user_id" => (4, Slot::Scalar(&mut fields.user_id)),
                "anonymous_id" => (5, Slot::Scalar(&mut fields.anonymous_id)),
                "order_id" => (6, Slot::Scalar(&mut fields.order_id)),
                "platform" => (7, Slot::Scalar(&mut fields.platform)),
                "source" => (8, Slot::Scalar(&mut fields.source)),
                "value" => (9, Slot::Raw(&mut fields.value)),
                "currency" => (10, Slot::Scalar(&mut fields.currency)),
                "consent_status" => (11, Slot::Scalar(&mut fields.consent_status)),
                "properties" => (12, Slot::Raw(&mut fields.properties)),
                _ => {
                    self.skip_value(1)?;
                    if self.end_of_item(b'}')? {
                        return Some(fields);
                    }
                    continue;
                }
            };
            // serde_json rejects a known field given twice.
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
            match slot {
                Slot::Scalar(scalar) => *scalar = self.scalar()?,
                Slot::Raw(raw) => *raw = self.raw()?,
            }
            if self.end_of_item(b'}')? {
                return Some(fields);
            }
        }
    }

    /// After an object member or array element: `Some(false)` past a comma (another one
    /// follows), `Some(true)` past the container's `close`.
    fn end_of_item(&mut self, close: u8) -> Option<bool> {
        self.skip_whitespace();
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.skip_whitespace();
                Some(false)
            }
            byte if byte == close => {
                self.at += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// A known string field's value, as serde_json would give it to [`Scalar`]: only strings
    /// without escapes, null and integers that fit i64 (`-0` reads as a float there).
    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self
                .plain_string()
                .map(|text| Scalar::Str(Cow::Borrowed(text))),
            b'n' => self.literal("null").map(|()| Scalar::Null),
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                self.skip_number()?;
                let number = &self.text[start..self.at];
                if number.len() > 18 || number == "-0" || number.contains(['.', 'e', 'E']) {
                    return None;
                }
                number
                    .parse::<i64>()
                    .ok()
                    .map(|number| Scalar::Int(number.into()))
            }
            _ => None,
        }
    }

    /// A value's JSON text, or `None` inside for null.
    fn raw(&mut self) -> Option<Option<&'a str>> {
        if self.peek()? == b'n' {
            return self.literal("null").map(|()| None);
        }
        let start = self.at;
        self.skip_value(1)?;
        Some(Some(&self.text[start..self.at]))
    }

    /// Skips one value inside a container that is `depth` levels deep.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.skip_object(depth + 1),
            b'[' => self.skip_array(depth + 1),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => None,
        }
    }

    fn skip_object(&mut self, depth: usize) -> Option<()> {
        if self.open(depth, b'}')? {
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            self.skip_string()?;
            self.skip_whitespace();
            self.eat(b':')?;
            self.skip_whitespace();
            self.skip_value(depth)?;
            if self.end_of_item(b'}')? {
                return Some(());
            }
        }
    }

    fn skip_array(&mut self, depth: usize) -> Option<()> {
        if self.open(depth, b']')? {
            return Some(());
        }
        loop {
            self.skip_value(depth)?;
            if self.end_of_item(b']')? {
                return Some(());
            }
        }
    }

    /// Steps into a container that is `depth` levels deep (`None` past the limit); `Some(true)`
    /// if it closes with `close` right away.
    fn open(&mut self, depth: usize, close: u8) -> Option<bool> {
        if depth > MAX_NESTING_DEPTH {
            return None;
        }
        self.at += 1;
        self.skip_whitespace();
        Some(self.eat(close).is_some())
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let next = self.bytes().get(self.at..self.at + word.len())?;
        (next == word.as_bytes()).then(|| self.at += word.len())
    }

    /// A number by JSON's grammar: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn skip_number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.skip_digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    /// One or more digits.
    fn digits(&mut self) -> Option<()> {
        self.peek()?.is_ascii_digit().then(|| self.skip_digits())
    }

    fn skip_digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// A string without escapes, borrowed; `None` for anything else.
    fn plain_string(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let end = next_special(self.bytes(), start)?;
        if self.bytes()[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        // Both ends are ASCII quotes, hence character boundaries.
        self.text.get(start..end)
    }

    /// Skips a string, checking its escapes as serde_json does for a skipped string: `\u`
    /// needs four hex digits but may be a lone surrogate.
    fn skip_string(&mut self) -> Option<()> {
        self.at += 1;
        loop {
            self.at = next_special(self.bytes(), self.at)?;
            match self.bytes()[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => match *self.bytes().get(self.at + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                    b'u' => {
                        let hex = self.bytes().get(self.at + 2..self.at + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.at += 6;
                    }
                    _ => return None,
                },
                // A raw control character: not allowed in a JSON string.
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::invariants::check_event_reader;

    /// Whether the fast reader takes `text` whole; it must then agree with serde_json.
    fn takes(text: &str) -> bool {
        check_event_reader(text);
        read_event(text).is_some_and(|(_, len)| len == text.len())
    }

    #[test]
    fn reads_usual_events_like_serde_json() {
        for text in [
            r#"{}"#,
            r#"{"event_id":"e-1","event_time":"2026-11-02T10:00:00+02:00","merchant_id":"m","event_name":"purchase","value":19.99,"currency":"EUR"}"#,
            r#"{ "event_id" : "e" ,	"user_id" : 123456789012345678 , "order_id": -42, "source": null }"#,
            r#"{"event_time":1793606400000,"value":"12.50","properties":{"a":[1,{"b":"\"x\u00e9"}],"c":null}}"#,
            r#"{"context":{"locale":"de-DE","ip":"203.0.113.9"},"extra":[true,false,null,-0,1.5e-3,"\ud800"]}"#,
            r#"{"event_time":null,"value":null,"properties":null,"user_id":null}"#,
            r#"{"properties":[1],"value":true,"event_time":{"x":1}}"#,
        ] {
            assert!(takes(text), "{text}");
        }
    }

    #[test]
    fn leaves_to_serde_json_what_only_it_reads_exactly() {
        for text in [
            // Escapes in keys and known strings, floats and huge or negative-zero integers in
            // known string fields, a known field twice.
            r#"{"event\u005fid":"e"}"#,
            r#"{"event_id":"e\"1"}"#,
            r#"{"user_id":1.5}"#,
            r#"{"user_id":-0}"#,
            r#"{"user_id":1234567890123456789}"#,
            r#"{"user_id":true}"#,
            r#"{"user_id":{}}"#,
            r#"{"event_id":"a","event_id":"b"}"#,
            r#"{"event_id":null,"event_id":"b"}"#,
        ] {
            assert!(!takes(text), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in [
            "{",
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12g4"}"#,
            r#"{"a":"\u12"}"#,
            "{\"a\":\"raw\u{1}control\"}",
            "{\"a\":\"tab\tinside\"}",
            "{\"ke\u{1f}y\":1}",
            "{\"event_id\":\"a\nb\"}",
            r#"{"a":'x'}"#,
            "{\"a\":1}\u{a0}",
        ] {
            assert!(!takes(text), "{text:?}");
        }
    }

    #[test]
    fn keeps_to_the_nesting_limit() {
        let nested = |depth: usize, open: &str, close: &str| {
            format!(r#"{{"a":{}1{}}}"#, open.repeat(depth), close.repeat(depth))
        };
        // The event object is the first level.
        let limit = MAX_NESTING_DEPTH - 1;
        for (open, close) in [("[", "]"), (r#"{"k":"#, "}")] {
            assert!(takes(&nested(limit, open, close)));
            assert!(!takes(&nested(limit + 1, open, close)));
            assert!(!takes(&nested(10_000, open, close)));
        }
    }

    #[test]
    fn finds_where_the_object_ends() {
        let text = r#"{"event_id":"e"} , {"event_id":"f"}"#;
        let (fields, len) = read_event(text).unwrap();
        assert_eq!(len, 16);
        assert_eq!(fields.event_id, Scalar::Str(Cow::Borrowed("e")));
    }
}
