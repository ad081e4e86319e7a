//! Object names from the secret (`database`, `schema`, `warehouse`, `role`), read the way
//! Snowflake reads identifiers.
//!
//! The SQL API's body fields are case-sensitive: they "must match the case of the field returned
//! by a SQL SHOW command" (<https://docs.snowflake.com/en/developer-guide/sql-api/submitting-requests>;
//! `sqlapi.yaml` in snowflakedb/snowflake-rest-api-specs: "The value in this field is
//! case-sensitive"). So a name is resolved once, like an identifier in SQL
//! (<https://docs.snowflake.com/en/sql-reference/identifiers-syntax>): unquoted, it means the
//! upper-case name (`analytics_wh` is `ANALYTICS_WH`); in double quotes, exactly what is inside
//! (`"Analytics_wh"`, with `""` standing for one `"`). The body carries the exact name; that
//! this also holds for names with characters outside the unquoted set (a space, a hyphen) is
//! not confirmed against a real account.

use std::fmt;

/// The rule every secret name follows, for error and fix texts.
pub const CASE_RULE: &str = "names in the secret are read as Snowflake identifiers: unquoted they mean the upper-case name (analytics_wh is ANALYTICS_WH); a name created in double quotes keeps its case and is written with the quotes (\"Analytics_wh\")";

/// An object name resolved to the exact name Snowflake stores (as SHOW shows it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    exact: String,
    written: String,
}

impl Identifier {
    /// Resolves a name written as `raw` (already trimmed).
    pub fn parse(raw: &str) -> Result<Self, InvalidIdentifier> {
        let invalid = |why| InvalidIdentifier {
            raw: raw.to_string(),
            why,
        };
        let exact = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            unquote(inner)
                .ok_or_else(|| invalid("a quote inside a quoted name must be doubled (\"\")"))?
        } else if is_unquoted(raw) {
            raw.to_ascii_uppercase()
        } else {
            return Err(invalid(
                "an unquoted name holds only letters, digits, _ and $ and does not start with a digit or $",
            ));
        };
        if exact.is_empty() {
            return Err(invalid("the name is empty"));
        }
        Ok(Identifier {
            exact,
            written: raw.to_string(),
        })
    }

    /// The exact name, as the SQL API's body fields and `CURRENT_*()` functions spell it.
    pub fn as_str(&self) -> &str {
        &self.exact
    }

    /// How the secret wrote it.
    pub fn written(&self) -> &str {
        &self.written
    }

    /// The name as a SQL identifier that means exactly it: always double-quoted.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.exact.replace('"', "\"\""))
    }

    /// The name as a single-quoted SQL string literal (for `LIKE` and `=` on SHOW output and
    /// INFORMATION_SCHEMA columns).
    pub fn literal(&self) -> String {
        format!("'{}'", self.exact.replace('\'', "''"))
    }
}

/// The shortest SQL form that means the exact name: unquoted when that reads back as the same
/// name (`ANALYTICS_WH`), quoted otherwise (`"Analytics_wh"`). For texts people paste.
impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_unquoted(&self.exact) && self.exact == self.exact.to_ascii_uppercase() {
            f.write_str(&self.exact)
        } else {
            f.write_str(&self.quoted())
        }
    }
}

fn is_unquoted(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The inside of a quoted name with `""` read as `"`; None when a lone `"` remains.
fn unquote(inner: &str) -> Option<String> {
    let mut exact = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' && chars.next() != Some('"') {
            return None;
        }
        exact.push(c);
    }
    Some(exact)
}

/// A name Snowflake would not read as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{raw:?} is not a Snowflake identifier: {why}")]
pub struct InvalidIdentifier {
    /// The name as written.
    pub raw: String,
    /// Which rule it breaks.
    pub why: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_names_mean_the_upper_case_name() {
        for (raw, exact) in [
            ("analytics_wh", "ANALYTICS_WH"),
            ("tracklayer", "TRACKLAYER"),
            ("Events", "EVENTS"),
            ("_x$1", "_X$1"),
            ("TRACKLAYER_WRITER", "TRACKLAYER_WRITER"),
        ] {
            let id = Identifier::parse(raw).unwrap();
            assert_eq!(id.as_str(), exact, "{raw}");
            assert_eq!(id.written(), raw);
            assert_eq!(id.to_string(), exact);
        }
    }

    #[test]
    fn quoted_names_keep_their_case_and_quotes_inside() {
        for (raw, exact, shown) in [
            ("\"Analytics_wh\"", "Analytics_wh", "\"Analytics_wh\""),
            ("\"my wh\"", "my wh", "\"my wh\""),
            ("\"a\"\"b\"", "a\"b", "\"a\"\"b\""),
            ("\"EVENTS\"", "EVENTS", "EVENTS"),
        ] {
            let id = Identifier::parse(raw).unwrap();
            assert_eq!(id.as_str(), exact, "{raw}");
            assert_eq!(id.to_string(), shown, "{raw}");
        }
    }

    #[test]
    fn sql_forms_always_mean_the_exact_name() {
        let id = Identifier::parse("\"Wh's \"\"x\"\"\"").unwrap();
        assert_eq!(id.as_str(), "Wh's \"x\"");
        assert_eq!(id.quoted(), "\"Wh's \"\"x\"\"\"");
        assert_eq!(id.literal(), "'Wh''s \"x\"'");
        let plain = Identifier::parse("analytics_wh").unwrap();
        assert_eq!(plain.quoted(), "\"ANALYTICS_WH\"");
        assert_eq!(plain.literal(), "'ANALYTICS_WH'");
    }

    #[test]
    fn names_snowflake_would_not_read_are_refused_with_the_rule_they_break() {
        let unquoted = "an unquoted name holds only letters, digits, _ and $ and does not start with a digit or $";
        let doubled = "a quote inside a quoted name must be doubled (\"\")";
        for (raw, why) in [
            ("my-wh", unquoted),
            ("my wh", unquoted),
            ("1wh", unquoted),
            ("$wh", unquoted),
            ("\"a\"b\"", doubled),
            ("\"\"", "the name is empty"),
            ("wh\"", unquoted),
            ("\"wh", unquoted),
        ] {
            let err = Identifier::parse(raw).unwrap_err();
            assert_eq!(
                err,
                InvalidIdentifier {
                    raw: raw.into(),
                    why
                },
                "{raw}"
            );
            assert_eq!(
                err.to_string(),
                format!("{raw:?} is not a Snowflake identifier: {why}")
            );
        }
    }
}
