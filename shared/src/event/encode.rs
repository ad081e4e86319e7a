//! Events and rejections to the JSON array elements that the load statements bind.
//!
//! The wire format is fixed; the SQL that reads it (`FLATTEN(INPUT => PARSE_JSON(?))`) lives
//! with the Snowflake statements. A `RAW_EVENTS` element is
//! `{"r":<raw event text>,"t":"YYYY-MM-DD HH:MM:SS.mmm","n":<event_name>,"v":"19.9900","c":"EUR"}`
//! (`v` and `c` only when present); the server reads every other column out of `r`. A
//! `RAW_EVENTS_REJECTED` element is
//! `{"m":<message id>,"e":<event_id|null>,"mi":<merchant_id|null>,"re":<reason>,"d":<detail>,"r":<raw>}`.
//!
//! Elements are appended to a `String` that holds an array under construction: [`push_event`]
//! and [`push_rejection`] write a separating comma unless the buffer is empty or ends with
//! `[`. [`JsonArray`] wraps that with the brackets and counts.

use super::{Event, Rejection, timestamp, value};

#[cfg(target_arch = "x86_64")]
pub(super) mod ssse3;

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

/// Appends one RAW_EVENTS element (a JSON object) to a JSON array being built in `buf`.
pub fn push_event(buf: &mut String, event: &Event<'_>) {
    buf.reserve(event_len_hint(event));
    separate(buf);
    buf.push_str("{\"r\":");
    push_json_string(buf, event.raw);
    buf.push_str(",\"t\":\"");
    timestamp::push_ntz(buf, event.event_time);
    buf.push_str("\",\"n\":");
    push_json_string(buf, &event.event_name);
    if let Some(amount) = event.value {
        buf.push_str(",\"v\":\"");
        value::push_scale4(buf, amount);
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
    buf.reserve(rejection_len_hint(rejection) + source_message_id.len());
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

pub(super) fn event_len_hint(event: &Event<'_>) -> usize {
    // {"r":,"t":"YYYY-MM-DD HH:MM:SS.mmm","n":,"v":"-99999999999999.9999","c":"EUR"}
    const FIXED: usize = 80;
    FIXED + escaped_len_hint(event.raw) + escaped_len_hint(&event.event_name)
}

pub(super) fn rejection_len_hint(rejection: &Rejection<'_>) -> usize {
    // {"m":,"e":,"mi":,"re":"not_an_object","d":,"r":}
    const FIXED: usize = 56;
    FIXED
        + escaped_len_hint(rejection.raw)
        + escaped_len_hint(&rejection.detail)
        + rejection.event_id.as_deref().map_or(4, escaped_len_hint)
        + rejection.merchant_id.as_deref().map_or(4, escaped_len_hint)
}

fn push_json_string_or_null(buf: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_json_string(buf, text),
        None => buf.push_str("null"),
    }
}

/// What a byte becomes inside a JSON string: 0 = itself, `u` = `\u00XX`, else `\` + that byte.
static ESCAPE: [u8; 256] = {
    let mut table = [0_u8; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = b'u';
        byte += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `text` as a JSON string literal, copying eight bytes at a time where nothing needs
/// escaping.
pub(super) fn push_json_string(buf: &mut String, text: &str) {
    // SAFETY: `escape_into` leaves the vector as it was plus `text`'s bytes in order, some ASCII
    // bytes replaced by ASCII escape sequences: valid UTF-8 again whenever it returns. Should it
    // unwind part-way, `RestoreOnUnwind` truncates back to the previous, valid content.
    let bytes = unsafe { buf.as_mut_vec() };
    let mut guard = RestoreOnUnwind {
        len: bytes.len(),
        bytes,
    };
    escape_into(guard.bytes, text.as_bytes());
    guard.len = usize::MAX;
}

/// Truncates to `len` when dropped, unless `len` has been set to `usize::MAX`.
struct RestoreOnUnwind<'v> {
    bytes: &'v mut Vec<u8>,
    len: usize,
}

impl Drop for RestoreOnUnwind<'_> {
    fn drop(&mut self) {
        if self.len != usize::MAX {
            self.bytes.truncate(self.len);
        }
    }
}

/// Appends `input` (UTF-8) as a quoted, escaped JSON string: with SSSE3 shuffles where the
/// CPU has them ([`ssse3`]), else with eight-byte words ([`escape_words`]).
fn escape_into(out: &mut Vec<u8>, input: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if ssse3::available() {
        // SAFETY: the CPU supports SSSE3 and POPCNT, checked just above.
        return escape_with(out, input, |out, written, input| unsafe {
            ssse3::escape_blocks(out, written, input)
        });
    }
    escape_with(out, input, escape_words);
}

/// Opens the string, lets `blocks` escape the bulk of `input` (returning the index after its
/// output and the input bytes it took), escapes what is left byte by byte, and closes it.
/// The output is written through a local index into zeroed room, so the vector's length is
/// not reloaded for every byte.
fn escape_with(
    out: &mut Vec<u8>,
    input: &[u8],
    blocks: impl FnOnce(&mut Vec<u8>, usize, &[u8]) -> (usize, usize),
) {
    let mut written = out.len();
    grow(out, input.len());
    out[written] = b'"';
    written += 1;
    let at;
    (written, at) = blocks(out, written, input);
    // Fewer than 32 bytes are left, each at most a 6-byte `\u00XX`, then the closing quote.
    let tail_room = (input.len() - at) * 6 + 1;
    if written + tail_room > out.len() {
        out.resize(written + tail_room, 0);
    }
    for &byte in &input[at..] {
        written = write_byte(out, written, byte);
    }
    out[written] = b'"';
    out.truncate(written + 1);
}

/// Escapes `input` into `out` from index `written` sixteen bytes per step while 32 are left;
/// returns the index after the output and the number of input bytes done.
///
/// Sixteen bytes are checked at once (two SWAR words, gathered into a bit mask): each block is
/// copied whole and then once more per quote or backslash, frequent in raw JSON, rather than
/// handled byte by byte; only blocks with control characters go byte by byte.
fn escape_words(out: &mut Vec<u8>, mut written: usize, input: &[u8]) -> (usize, usize) {
    let mut at = 0;
    // Sixteen bytes per step, while a 16-byte copy from anywhere in the step stays in `input`.
    while let Some(ahead) = input.get(at..at + 32) {
        if written + BLOCK_ROOM > out.len() {
            grow(out, input.len() - at);
        }
        let Ok(ahead) = <&[u8; 32]>::try_from(ahead) else {
            break;
        };
        let words = [word_at(ahead, 0), word_at(ahead, 8)];
        if control_bytes(words[0]) | control_bytes(words[1]) == 0 {
            let escapes = byte_mask(quotes_and_backslashes(words[0]))
                | byte_mask(quotes_and_backslashes(words[1])) << 8;
            written += escape_block(&mut out[written..written + BLOCK_ROOM], ahead, escapes);
        } else {
            for &byte in &ahead[..16] {
                written = write_byte(out, written, byte);
            }
        }
        at += 16;
    }
    (written, at)
}

/// Room one step of `escape_into` may take: 16 bytes as `\u00XX` escapes (96), or 16 bytes
/// with escapes plus the 16-byte copies that follow each one (48).
const BLOCK_ROOM: usize = 16 * 6;

/// Writes the first 16 bytes of `ahead` into `window`, a backslash before each byte flagged in
/// `escapes` (bit i for byte i); returns the bytes written. After each backslash the rest of
/// the block is copied again, shifted by one; bytes past the end are overwritten by the next
/// step.
fn escape_block(window: &mut [u8], ahead: &[u8; 32], mut escapes: u32) -> usize {
    let Ok(window) = <&mut [u8; BLOCK_ROOM]>::try_from(window) else {
        return 0;
    };
    window[..16].copy_from_slice(&ahead[..16]);
    let mut shift = 0;
    while escapes != 0 {
        let at = escapes.trailing_zeros() as usize & 15;
        // At most `at` escapes come before byte `at`, so `at + shift` stays below 31.
        let to = (at + shift) & 31;
        window[to] = b'\\';
        window[to + 1..to + 17].copy_from_slice(&ahead[at..at + 16]);
        shift += 1;
        escapes &= escapes - 1;
    }
    16 + shift
}

/// The little-endian word of `bytes` starting at `at`.
fn word_at(bytes: &[u8; 32], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Gathers the high bit of each byte of `flags` into bit i for byte i.
fn byte_mask(flags: u64) -> u32 {
    ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// Extends `out` with zeroed room for about `remaining` more input bytes: a quarter more for
/// escapes, the usual case, plus one chunk's worst case.
fn grow(out: &mut Vec<u8>, remaining: usize) {
    out.resize(out.len() + remaining + remaining / 4 + 2 * BLOCK_ROOM, 0);
}

/// Writes `byte` at `at`, escaped if needed, returning the index after it.
fn write_byte(out: &mut [u8], at: usize, byte: u8) -> usize {
    let escape = ESCAPE[usize::from(byte)];
    if escape == b'u' {
        return write_unicode_escape(out, at, byte);
    }
    out[at] = if escape == 0 { byte } else { b'\\' };
    out[at + 1] = escape;
    at + 1 + usize::from(escape != 0)
}

/// Writes `\u00XX` for a control character, returning the index after it.
#[cold]
fn write_unicode_escape(out: &mut [u8], at: usize, byte: u8) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out[at..at + 6].copy_from_slice(&[
        b'\\',
        b'u',
        b'0',
        b'0',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 0xf)],
    ]);
    at + 6
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = ONES * 0x7f;

/// Flags (sets the high bit of) each byte of `word` that is `"` or `\`. Exact per byte: the
/// arithmetic never carries from one byte into the next.
pub(super) fn quotes_and_backslashes(word: u64) -> u64 {
    let zero = |x: u64| !(((x & LOW7) + LOW7) | x) & !LOW7;
    zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))
}

/// Flags each byte of `word` below 0x20, exactly.
pub(super) fn control_bytes(word: u64) -> u64 {
    !(((word & LOW7) + ONES * (0x80 - 0x20)) | word) & !LOW7
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Reason, parse_body, parse_event};
    use serde_json::{Value, json};

    fn special_bytes(word: u64) -> u64 {
        quotes_and_backslashes(word) | control_bytes(word)
    }

    /// `text` escaped by `push_json_string`, after checking that the word-at-a-time path (the
    /// one on CPUs without SSSE3, and on arm64) gives the same bytes as the one this CPU takes.
    fn escaped(text: &str) -> String {
        let mut buf = String::new();
        push_json_string(&mut buf, text);
        let mut words = Vec::new();
        escape_with(&mut words, text.as_bytes(), escape_words);
        assert_eq!(buf.as_bytes(), words, "{text:?}");
        buf
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn this_x86_64_machine_takes_the_ssse3_path() {
        // Otherwise the tests below would compare the word path with itself.
        assert!(ssse3::available());
    }

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        assert_eq!(escaped(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(escaped("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(escaped("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        assert_eq!(escaped(""), r#""""#);
        assert_eq!(escaped("é☕🎉 \u{2028}"), "\"é☕🎉 \u{2028}\"");
    }

    #[test]
    fn escaping_round_trips_every_kind_of_character_through_serde_json() {
        let mut all: String = (0_u32..0x800).filter_map(char::from_u32).collect();
        all.push_str("\u{2028}\u{2029}\u{fffd}\u{10ffff}🎉👩‍👩‍👧 ʻokina 東京 \"quoted\" \\path\\");
        // Every offset, so specials land in every position of the eight-byte chunks.
        for start in 0..16 {
            let text: String = all.chars().skip(start).collect();
            let back: String = serde_json::from_str(&escaped(&text)).unwrap();
            assert_eq!(back, text);
            assert_eq!(escaped(&text), serde_json::to_string(&text).unwrap());
        }
        for byte in 0_u8..0x80 {
            let text = format!("abcdefg{}hijklmnop", char::from(byte));
            let back: String = serde_json::from_str(&escaped(&text)).unwrap();
            assert_eq!(back, text);
        }
    }

    #[test]
    fn escaping_matches_serde_json_on_random_mixes_of_special_characters() {
        let alphabet = [
            '"', '\\', '\n', '\u{1}', '\u{1f}', 'a', 'Z', ' ', '/', 'é', '€', '🎉', '{', ':',
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 120) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            assert_eq!(
                escaped(&text),
                serde_json::to_string(&text).unwrap(),
                "{text:?}"
            );
        }
        let quotes = "\"".repeat(64);
        assert_eq!(escaped(&quotes), serde_json::to_string(&quotes).unwrap());
    }

    #[test]
    fn escaping_appends_after_existing_content() {
        let mut buf = String::from("[1,");
        push_json_string(&mut buf, "a\"b");
        push_json_string(&mut buf, "\u{0}x");
        assert_eq!(buf, r#"[1,"a\"b""\u0000x""#);
    }

    #[test]
    fn swar_check_matches_the_table_for_every_byte() {
        for byte in 0_u8..=255 {
            for position in 0..8 {
                let mut chunk = *b"abcdefgh";
                chunk[position] = byte;
                let special = special_bytes(u64::from_le_bytes(chunk));
                let expected = if ESCAPE[usize::from(byte)] != 0 {
                    0x80 << (8 * position)
                } else {
                    0
                };
                assert_eq!(special, expected, "{byte}");
            }
        }
    }

    #[test]
    fn swar_flags_are_exact_for_mixed_words() {
        let interesting = [
            0x00, 0x01, 0x1f, 0x20, 0x21, b'"', 0x23, b'\\', 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff,
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let chunk: [u8; 8] = std::array::from_fn(|i| {
                interesting[(state >> (i * 4)) as usize % interesting.len()]
            });
            let expected = chunk.iter().enumerate().fold(0_u64, |flags, (i, &byte)| {
                flags
                    | if ESCAPE[usize::from(byte)] != 0 {
                        0x80 << (8 * i)
                    } else {
                        0
                    }
            });
            assert_eq!(
                special_bytes(u64::from_le_bytes(chunk)),
                expected,
                "{chunk:?}"
            );
        }
    }

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
    fn any_run_of_control_characters_round_trips_at_any_length() {
        for prefix in 0..40 {
            for controls in 0..70 {
                let text = format!("{}{}", "a".repeat(prefix), "\u{0}\u{1f}".repeat(controls));
                let mut buf = String::from("[");
                push_json_string(&mut buf, &text);
                let decoded: String = serde_json::from_str(&buf[1..]).unwrap();
                assert_eq!(decoded, text, "prefix {prefix}, controls {controls}");
            }
        }
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
}
