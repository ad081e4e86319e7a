//! The TrackLayer event contract: message bodies to validated events or rejections.
//!
//! One SQS message body holds one event object, a JSON array of event objects, or NDJSON
//! ([`parse_body`] tells them apart). Each event becomes an [`Event`] ready for the
//! `RAW_EVENTS` table or a [`Rejection`] for the quarantine table; the row format
//! ([`crate::rows`]) turns either into one element of the JSON array that a Snowflake statement
//! binds. The full contract,
//! with every rule and reason code, is in `docs/events.md`.
//!
//! Files, in the order a body flows through them: `body` (body shapes), `scan` (the fast reader
//! of one event object), `fields` (the borrowed view of one event's known fields, and serde_json's
//! reading of it when the fast reader gives up), `validate` (field rules), `timestamp` and
//! `value` (the two fields that need conversion), `rejection` (reasons). Beneath them, `json` (string escaping and byte finding; all of this module's
//! `unsafe`) and `detail` (how sent values are quoted in rejection details). Imports run one
//! way: `json` ← `detail` ← `fields`, `timestamp`, `value` ← `scan` ← `validate` ← `body`; this
//! file's types are used by all of them.

mod body;
mod detail;
mod fields;
#[cfg(any(test, feature = "testkit"))]
pub mod invariants;
mod json;
mod rejection;
mod scan;
mod timestamp;
mod validate;
mod value;

use std::borrow::Cow;

use rust_decimal::Decimal;
use time::OffsetDateTime;

pub use body::parse_body;
pub use rejection::{Reason, Rejection};
pub use validate::parse_event;

// The row format (`crate::rows`) writes these three the way the contract reads them.
pub(crate) use json::push_json_string;
pub(crate) use timestamp::push_ntz;
pub(crate) use value::push_scale4;

/// The outcome for one event of a message body: a loadable event or the reason it is not.
pub type Parsed<'a> = Result<Event<'a>, Rejection<'a>>;

/// Longest accepted `event_id`, in characters.
pub const MAX_EVENT_ID_CHARS: usize = 1024;

/// Deepest accepted nesting of objects and arrays in one event (the event object counts as
/// one level): the limit serde_json enforces, checked separately because skipped values are
/// read without it.
pub const MAX_NESTING_DEPTH: usize = 127;

/// A validated event: the columns of one `RAW_EVENTS` row, borrowing from the message body.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    raw: &'a str,
    event_id: Cow<'a, str>,
    event_time: OffsetDateTime,
    merchant_id: Cow<'a, str>,
    event_name: Cow<'a, str>,
    user_id: Option<Cow<'a, str>>,
    anonymous_id: Option<Cow<'a, str>>,
    order_id: Option<Cow<'a, str>>,
    platform: Option<Cow<'a, str>>,
    source: Option<Cow<'a, str>>,
    value: Option<Decimal>,
    currency: Option<[u8; 3]>,
    consent_status: Option<Cow<'a, str>>,
    properties: Option<&'a str>,
}

impl<'a> Event<'a> {
    /// The event's own JSON text, byte for byte as it appeared in the message body.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// `event_id` as sent (non-empty after trimming, at most [`MAX_EVENT_ID_CHARS`]).
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// `event_time` converted to UTC and truncated to whole milliseconds.
    pub fn event_time(&self) -> OffsetDateTime {
        self.event_time
    }

    /// `merchant_id` as sent (non-empty after trimming).
    pub fn merchant_id(&self) -> &str {
        &self.merchant_id
    }

    /// `event_name` with surrounding whitespace trimmed: the form that is stored.
    pub fn event_name(&self) -> &str {
        &self.event_name
    }

    /// `user_id`; an integer in the payload is given as its decimal digits.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// `anonymous_id`; an integer in the payload is given as its decimal digits.
    pub fn anonymous_id(&self) -> Option<&str> {
        self.anonymous_id.as_deref()
    }

    /// `order_id`; an integer in the payload is given as its decimal digits.
    pub fn order_id(&self) -> Option<&str> {
        self.order_id.as_deref()
    }

    /// `platform`; an integer in the payload is given as its decimal digits.
    pub fn platform(&self) -> Option<&str> {
        self.platform.as_deref()
    }

    /// `source`; an integer in the payload is given as its decimal digits.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// `consent_status`; an integer in the payload is given as its decimal digits.
    pub fn consent_status(&self) -> Option<&str> {
        self.consent_status.as_deref()
    }

    /// `value` rounded half away from zero to scale 4, within NUMBER(18,4).
    pub fn value(&self) -> Option<Decimal> {
        self.value
    }

    /// `currency` as three upper-case ASCII letters.
    pub fn currency(&self) -> Option<&str> {
        self.currency
            .as_ref()
            .and_then(|code| std::str::from_utf8(code).ok())
    }

    /// `properties` as the JSON text of an object, as sent.
    pub fn properties(&self) -> Option<&'a str> {
        self.properties
    }
}
