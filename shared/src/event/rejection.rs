//! Why an event (or a whole body) was not loaded, in the shape of the quarantine table.

use std::borrow::Cow;
use std::fmt;

/// A stable, machine-readable reason for a rejection; its [`code`](Reason::code) is what the
/// quarantine table's `REASON` column holds.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The message body is empty or only whitespace.
    EmptyBody,
    /// The text is not valid JSON, repeats a known field, or nests too deeply.
    InvalidJson,
    /// Valid JSON, but not an object (a string, number, array, ...).
    NotAnObject,
    /// A required field is absent or null.
    MissingField,
    /// A field is present but has the wrong type or an unacceptable value.
    InvalidField,
    /// The event passed validation but Snowflake refused its row (set by the loader when it
    /// isolates a failing row; never produced by parsing).
    SnowflakeRejected,
}

impl Reason {
    /// Every reason, in documentation order.
    pub const ALL: [Reason; 6] = [
        Reason::EmptyBody,
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::SnowflakeRejected,
    ];

    /// The snake_case code stored in the quarantine table; never changes once published.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::EmptyBody => "empty_body",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::SnowflakeRejected => "snowflake_rejected",
        }
    }

    /// The reason with this code, if any (the inverse of [`Reason::code`]).
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|reason| reason.code() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An event (or body) that was not loaded: one `RAW_EVENTS_REJECTED` row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection<'a> {
    /// What kind of problem it is.
    pub reason: Reason,
    /// For a person: the field, what was wrong with it, and what is expected.
    pub detail: String,
    /// The rejected text, byte for byte as it appeared in the message body.
    pub raw: &'a str,
    /// `event_id`, when the event could be read and it was a string.
    pub event_id: Option<Cow<'a, str>>,
    /// `merchant_id`, when the event could be read and it was a string.
    pub merchant_id: Option<Cow<'a, str>>,
}

impl<'a> Rejection<'a> {
    /// A rejection that knows neither the event id nor the merchant (unreadable text).
    pub(super) fn unreadable(reason: Reason, detail: String, raw: &'a str) -> Self {
        Rejection {
            reason,
            detail,
            raw,
            event_id: None,
            merchant_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_and_round_trip() {
        for reason in Reason::ALL {
            let code = reason.code();
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
            assert_eq!(Reason::from_code(code), Some(reason));
            assert_eq!(reason.to_string(), code);
        }
        assert_eq!(Reason::from_code("nope"), None);
    }

    #[test]
    fn rejection_displays_reason_and_detail() {
        let rejection =
            Rejection::unreadable(Reason::MissingField, "event_id is missing".into(), "{}");
        assert_eq!(rejection.to_string(), "missing_field: event_id is missing");
    }
}
