//! JSON primitives the event reader and the row encoder share: writing string literals and
//! finding the bytes that matter. All of `event`'s `unsafe` code (SSE2/SSSE3 intrinsics and the
//! in-place escaping into a `String`) lives here, each block with its `SAFETY` argument.

mod escape;
mod lex;

pub(crate) use escape::push_json_string;
pub(super) use lex::{next_special, trim_json_whitespace};
