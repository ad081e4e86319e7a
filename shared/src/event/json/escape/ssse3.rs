//! JSON string escaping sixteen bytes per step with SSSE3 byte shuffles (x86_64 only).
//!
//! Each half of a block is spread out by one `pshufb` whose indices come from a table keyed by
//! the half's 8-bit mask of quotes and backslashes, so a block costs the same few instructions
//! however many of its bytes need escaping: no branch depends on where the quotes fall.

use std::arch::x86_64::{
    __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
    _mm_set1_epi8, _mm_shuffle_epi8, _mm_storeu_si128, _mm_unpackhi_epi64, _mm_unpacklo_epi64,
};

use super::{BLOCK_ROOM, grow, write_byte};

/// Whether this CPU can run [`escape_blocks`]; the answer is cached by the standard library.
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("ssse3") && std::is_x86_feature_detected!("popcnt")
}

/// Bit masks (bit i for byte i) of the control characters in `bytes`, and of its quotes and
/// backslashes. SSE2 only, which every x86_64 CPU has: the string scanner uses it too.
#[inline]
pub(in crate::event) fn special_bytes(bytes: __m128i) -> (usize, usize) {
    // SAFETY: SSE2 is part of the x86_64 baseline; these intrinsics only compute on registers.
    unsafe {
        let controls = _mm_cmpeq_epi8(_mm_min_epu8(bytes, _mm_set1_epi8(0x1f)), bytes);
        let quotes = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
        let backslashes = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
        (
            _mm_movemask_epi8(controls) as usize,
            _mm_movemask_epi8(_mm_or_si128(quotes, backslashes)) as usize,
        )
    }
}

/// For each 8-bit mask of bytes to escape: the shuffle that spreads bytes 0–7 (lanes 0–7) and
/// puts a backslash (lane 8) before each flagged one. Unused trailing lanes are overwritten by
/// the next store or cut off at the end.
static SPREAD: [[u8; 16]; 256] = {
    let mut table = [[0_u8; 16]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut byte) = (0, 0);
        while byte < 8 {
            if mask >> byte & 1 == 1 {
                table[mask][lane] = 8;
                lane += 1;
            }
            table[mask][lane] = byte as u8;
            lane += 1;
            byte += 1;
        }
        mask += 1;
    }
    table
};

/// Escapes `input` into `out` from index `written`, sixteen bytes per step, while at least
/// sixteen are left; returns the index after the output and the number of input bytes done.
/// A block holding a control character goes byte by byte (they are rare and take `\u00XX`).
///
/// # Safety
/// The CPU must support SSSE3 and POPCNT ([`available`]).
#[target_feature(enable = "ssse3,popcnt")]
pub(super) unsafe fn escape_blocks(
    out: &mut Vec<u8>,
    mut written: usize,
    input: &[u8],
) -> (usize, usize) {
    let backslashes = _mm_set1_epi8(b'\\' as i8);
    let mut at = 0;
    while let Some(block) = input.get(at..at + 16) {
        if written + BLOCK_ROOM > out.len() {
            grow(out, input.len() - at);
        }
        // SAFETY: `block` is 16 readable bytes.
        let bytes = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        let (controls, mask) = special_bytes(bytes);
        if controls != 0 {
            for &byte in block {
                written = write_byte(out, written, byte);
            }
            at += 16;
            continue;
        }
        let (low, high) = (mask & 0xff, mask >> 8);
        let low_len = 8 + low.count_ones() as usize;
        let high_len = 8 + high.count_ones() as usize;
        // SAFETY: the room check above leaves at least BLOCK_ROOM (> 32) bytes from `written`,
        // and the two 16-byte stores end at most 16 + 16 bytes past it. The table rows are
        // 16 bytes each.
        unsafe {
            let to = out.as_mut_ptr().add(written);
            let spread = _mm_loadu_si128(SPREAD[low].as_ptr().cast::<__m128i>());
            let low_half = _mm_shuffle_epi8(_mm_unpacklo_epi64(bytes, backslashes), spread);
            _mm_storeu_si128(to.cast::<__m128i>(), low_half);
            let spread = _mm_loadu_si128(SPREAD[high].as_ptr().cast::<__m128i>());
            let high_half = _mm_shuffle_epi8(_mm_unpackhi_epi64(bytes, backslashes), spread);
            _mm_storeu_si128(to.add(low_len).cast::<__m128i>(), high_half);
        }
        written += low_len + high_len;
        at += 16;
    }
    (written, at)
}
