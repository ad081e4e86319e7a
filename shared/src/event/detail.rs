//! How a sent value is shown in a rejection detail: quoted, shortened, never the whole of it.

use super::json::push_json_string;

/// Longest excerpt of a sent value quoted in a rejection detail, in characters.
const DETAIL_EXCERPT_CHARS: usize = 64;

/// `text` as a JSON string literal, shortened with `…` when long.
pub(super) fn quote_for_detail(text: &str) -> String {
    let excerpt = excerpt(text);
    let mut quoted = String::with_capacity(excerpt.len() + 4);
    push_json_string(&mut quoted, excerpt);
    if excerpt.len() < text.len() {
        quoted.insert(quoted.len() - 1, '…');
    }
    quoted
}

/// Raw JSON text of a value for a rejection detail, shortened with `…` when long.
pub(super) fn raw_for_detail(text: &str) -> String {
    match text.as_bytes().first() {
        Some(b'{') => "an object".to_owned(),
        Some(b'[') => "an array".to_owned(),
        _ => {
            let excerpt = excerpt(text);
            if excerpt.len() < text.len() {
                format!("{excerpt}…")
            } else {
                excerpt.to_owned()
            }
        }
    }
}

fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(DETAIL_EXCERPT_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}
