//! Finding the bytes that matter in JSON text without reading all of it.

use super::escape::{control_bytes, quotes_and_backslashes};

/// `text` without leading and trailing JSON whitespace (space, tab, CR, LF; narrower than
/// Unicode whitespace).
pub(in crate::event) fn trim_json_whitespace(text: &str) -> &str {
    let is_whitespace = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !is_whitespace(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_whitespace(b))
        .map_or(start, |last| last + 1);
    // Whitespace is ASCII, so both cuts fall on character boundaries.
    &text[start..end]
}

/// Index of the first `"`, `\` or control character at or after `at`: sixteen bytes per step
/// with SSE2 (part of every x86_64 CPU), then eight per step, then one.
pub(in crate::event) fn next_special(bytes: &[u8], mut at: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use super::escape::ssse3::special_bytes;
        use std::arch::x86_64::{__m128i, _mm_loadu_si128};
        while let Some(chunk) = bytes.get(at..at + 16) {
            // SAFETY: SSE2 is part of the x86_64 baseline, and `chunk` is 16 readable bytes.
            let chunk = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
            let (controls, escapes) = special_bytes(chunk);
            let found = controls | escapes;
            if found != 0 {
                return Some(at + found.trailing_zeros() as usize);
            }
            at += 16;
        }
    }
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let flags = quotes_and_backslashes(word) | control_bytes(word);
        if flags != 0 {
            return Some(at + flags.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let rest = bytes.get(at..)?;
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|found| at + found)
}
