//! JSON string literals: escaping sixteen bytes per step with SSSE3 where the CPU has it,
//! eight per step (SWAR, "SIMD within a register") elsewhere.

#[cfg(target_arch = "x86_64")]
pub(super) mod ssse3;

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
pub(crate) fn push_json_string(buf: &mut String, text: &str) {
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
}
