//! The borrowed serde view of one event object: known fields, nothing checked yet.
//!
//! Every known field is read leniently (any JSON type is accepted here) so that `validate` can
//! say exactly which field is wrong and why; serde only rejects broken JSON and duplicate known
//! keys. Unknown fields are skipped without being materialized.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::detail::quote_for_detail;

/// The known fields of an event; [`Scalar::Null`] and `None` mean absent or JSON `null`.
/// `event_time`, `value` and `properties` are the raw JSON text of the value.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(super) struct Fields<'a> {
    #[serde(borrow, default)]
    pub event_id: Scalar<'a>,
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub event_time: Option<&'a str>,
    #[serde(borrow, default)]
    pub merchant_id: Scalar<'a>,
    #[serde(borrow, default)]
    pub event_name: Scalar<'a>,
    #[serde(borrow, default)]
    pub user_id: Scalar<'a>,
    #[serde(borrow, default)]
    pub anonymous_id: Scalar<'a>,
    #[serde(borrow, default)]
    pub order_id: Scalar<'a>,
    #[serde(borrow, default)]
    pub platform: Scalar<'a>,
    #[serde(borrow, default)]
    pub source: Scalar<'a>,
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub value: Option<&'a str>,
    #[serde(borrow, default)]
    pub currency: Scalar<'a>,
    #[serde(borrow, default)]
    pub consent_status: Scalar<'a>,
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub properties: Option<&'a str>,
}

/// A value's JSON text as serde_json found it (`None` for null).
fn raw_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de str>, D::Error> {
    Option::<&'de RawValue>::deserialize(deserializer).map(|raw| raw.map(RawValue::get))
}

/// Any JSON value, keeping strings (borrowed when unescaped) and integers. Null doubles as
/// "absent" (the default), which spares serde a separate `Option` layer.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) enum Scalar<'a> {
    #[default]
    Null,
    Str(Cow<'a, str>),
    Int(i128),
    Float(f64),
    Bool(bool),
    Object,
    Array,
}

impl<'a> Scalar<'a> {
    /// The value, unless it is null or absent.
    pub fn present(&self) -> Option<&Self> {
        match self {
            Scalar::Null => None,
            present => Some(present),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The string, if this is one, without copying.
    pub fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The string, or an integer's decimal digits (what Snowflake's `::STRING` gives).
    pub fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(text) => Some(text),
            Scalar::Int(number) => Some(Cow::Owned(number.to_string())),
            _ => None,
        }
    }

    /// How the value reads in a rejection detail: `"abc"`, `42`, `true`, `an object`.
    pub fn describe(&self) -> String {
        match self {
            Scalar::Null => "null".to_owned(),
            Scalar::Str(text) => quote_for_detail(text),
            Scalar::Int(number) => number.to_string(),
            Scalar::Float(number) => number.to_string(),
            Scalar::Bool(flag) => flag.to_string(),
            Scalar::Object => "an object".to_owned(),
            Scalar::Array => "an array".to_owned(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor(PhantomData))
    }
}

struct ScalarVisitor<'a>(PhantomData<Scalar<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(text)))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(number.into()))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(number.into()))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(number))
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(flag))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(json: &str) -> Scalar<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_any_json_type_without_failing() {
        assert_eq!(scalar(r#""abc""#), Scalar::Str(Cow::Borrowed("abc")));
        assert_eq!(scalar("42"), Scalar::Int(42));
        assert_eq!(scalar("-7"), Scalar::Int(-7));
        assert_eq!(scalar("1.5"), Scalar::Float(1.5));
        assert_eq!(scalar("true"), Scalar::Bool(true));
        assert_eq!(scalar("null"), Scalar::Null);
        assert_eq!(scalar("null").present(), None);
        assert_eq!(scalar(r#"{"a":[1,{"b":2}]}"#), Scalar::Object);
        assert_eq!(scalar("[1,[2]]"), Scalar::Array);
    }

    #[test]
    fn borrows_unescaped_strings_and_owns_escaped_ones() {
        assert!(matches!(
            scalar(r#""plain""#),
            Scalar::Str(Cow::Borrowed("plain"))
        ));
        match scalar(r#""a\"b""#) {
            Scalar::Str(Cow::Owned(text)) => assert_eq!(text, "a\"b"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn integers_become_their_digits() {
        assert_eq!(
            scalar("18446744073709551615").into_text().unwrap(),
            "18446744073709551615"
        );
        assert_eq!(
            scalar("-9223372036854775808").into_text().unwrap(),
            "-9223372036854775808"
        );
        assert_eq!(scalar("1.0").into_text(), None);
    }

    #[test]
    fn long_values_are_shortened_in_details() {
        let long = "é".repeat(100);
        let described = Scalar::Str(Cow::Borrowed(&long)).describe();
        assert_eq!(described, format!("\"{}…\"", "é".repeat(64)));
        assert_eq!(quote_for_detail("a\"b"), r#""a\"b""#);
    }
}
