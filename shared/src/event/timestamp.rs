//! `event_time`: RFC 3339 or epoch milliseconds in, UTC wall-clock milliseconds out.
//!
//! TIMESTAMP_NTZ keeps the wall-clock digits and silently drops any offset, so every time is
//! converted to UTC here, before it reaches Snowflake.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::detail::{quote_for_detail, raw_for_detail};

const EXPECTED: &str = "expected an RFC 3339 timestamp with an offset, \
     e.g. 2026-11-02T10:00:00+02:00 or 2026-11-02T08:00:00.123Z, \
     or epoch milliseconds as a JSON integer, e.g. 1793606400000";

/// Reads `event_time`; the error is a rejection detail.
pub(super) fn parse(text: &str) -> Result<OffsetDateTime, String> {
    let parsed = match text.as_bytes().first() {
        Some(b'"') => from_rfc3339(text)?,
        Some(b'-' | b'0'..=b'9') => from_epoch_millis(text)?,
        _ => {
            return Err(format!(
                "event_time: {} is not a timestamp; {EXPECTED}",
                raw_for_detail(text)
            ));
        }
    };
    let utc = parsed
        .checked_to_offset(UtcOffset::UTC)
        .filter(|utc| (1..=9999).contains(&utc.year()))
        .ok_or_else(|| {
            format!(
                "event_time: {} is outside the years 0001 to 9999 once converted to UTC",
                raw_for_detail(text)
            )
        })?;
    Ok(truncate_to_millis(utc))
}

fn from_rfc3339(json: &str) -> Result<OffsetDateTime, String> {
    let text: std::borrow::Cow<'_, str> = if json.contains('\\') {
        serde_json::from_str::<String>(json)
            .map(Into::into)
            .map_err(|_| {
                format!(
                    "event_time: {} is not an RFC 3339 timestamp; {EXPECTED}",
                    raw_for_detail(json)
                )
            })?
    } else {
        json[1..json.len() - 1].into()
    };
    // The `time` crate accepts any byte between date and time; RFC 3339 allows `T`, `t` or space.
    let separator_ok = matches!(text.as_bytes().get(10), Some(b'T' | b't' | b' '));
    match OffsetDateTime::parse(&text, &Rfc3339) {
        Ok(parsed) if separator_ok => Ok(parsed),
        _ => Err(format!(
            "event_time: {} is not an RFC 3339 timestamp; {EXPECTED}",
            quote_for_detail(&text)
        )),
    }
}

fn from_epoch_millis(json: &str) -> Result<OffsetDateTime, String> {
    let digits = json.strip_prefix('-').unwrap_or(json);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "event_time: {} is not a whole number of epoch milliseconds; {EXPECTED}",
            raw_for_detail(json)
        ));
    }
    json.parse::<i64>()
        .ok()
        .and_then(|millis| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
        })
        .ok_or_else(|| {
            format!(
                "event_time: {} epoch milliseconds is outside the years 0001 to 9999",
                raw_for_detail(json)
            )
        })
}

fn truncate_to_millis(time: OffsetDateTime) -> OffsetDateTime {
    let millis_in_nanos = time.nanosecond() / 1_000_000 * 1_000_000;
    time.replace_nanosecond(millis_in_nanos).unwrap_or(time)
}

/// Appends `time` (already UTC) as `YYYY-MM-DD HH:MM:SS.mmm`, the TIMESTAMP_NTZ input format.
pub(crate) fn push_ntz(buf: &mut String, time: OffsetDateTime) {
    let (year, month, day) = time.to_calendar_date();
    let (hour, minute, second, millisecond) = time.to_hms_milli();
    let mut text = *b"0000-00-00 00:00:00.000";
    put_digits(&mut text[0..4], year.unsigned_abs());
    put_digits(&mut text[5..7], u32::from(u8::from(month)));
    put_digits(&mut text[8..10], u32::from(day));
    put_digits(&mut text[11..13], u32::from(hour));
    put_digits(&mut text[14..16], u32::from(minute));
    put_digits(&mut text[17..19], u32::from(second));
    put_digits(&mut text[20..23], u32::from(millisecond));
    buf.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Writes `number`'s last `slot.len()` decimal digits, zero-padded, into `slot`.
fn put_digits(slot: &mut [u8], mut number: u32) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (number % 10) as u8;
        number /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntz(json: &str) -> Result<String, String> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(json).unwrap();
        parse(raw.get()).map(|time| {
            let mut text = String::new();
            push_ntz(&mut text, time);
            text
        })
    }

    #[test]
    fn converts_offsets_to_utc_wall_clock() {
        for (input, expected) in [
            (r#""2026-11-02T10:00:00+02:00""#, "2026-11-02 08:00:00.000"),
            (r#""2026-11-02T10:00:00-05:30""#, "2026-11-02 15:30:00.000"),
            (r#""2026-11-02T01:00:00+05:00""#, "2026-11-01 20:00:00.000"),
            (r#""2026-11-02T10:00:00Z""#, "2026-11-02 10:00:00.000"),
            (r#""2026-11-02t10:00:00z""#, "2026-11-02 10:00:00.000"),
            (r#""2026-11-02 10:00:00-00:00""#, "2026-11-02 10:00:00.000"),
        ] {
            assert_eq!(ntz(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn keeps_milliseconds_and_truncates_finer_digits() {
        for (input, expected) in [
            (r#""2026-11-02T10:00:00.5Z""#, "2026-11-02 10:00:00.500"),
            (
                r#""2026-11-02T10:00:00.123999Z""#,
                "2026-11-02 10:00:00.123",
            ),
            (
                r#""2026-11-02T10:00:00.987654321987+01:00""#,
                "2026-11-02 09:00:00.987",
            ),
        ] {
            assert_eq!(ntz(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn reads_epoch_milliseconds() {
        assert_eq!(ntz("1793606400000").unwrap(), "2026-11-02 08:00:00.000");
        assert_eq!(ntz("1793606400123").unwrap(), "2026-11-02 08:00:00.123");
        assert_eq!(ntz("0").unwrap(), "1970-01-01 00:00:00.000");
        assert_eq!(ntz("-1").unwrap(), "1969-12-31 23:59:59.999");
    }

    #[test]
    fn accepts_escaped_strings() {
        assert_eq!(
            ntz(r#""2026-11-02T10:00:00\u002B02:00""#).unwrap(),
            "2026-11-02 08:00:00.000"
        );
    }

    #[test]
    fn rejects_years_outside_1_to_9999_after_conversion() {
        assert!(ntz(r#""0000-06-01T00:00:00Z""#).is_err());
        assert!(ntz(r#""0001-01-01T00:30:00+01:00""#).is_err());
        assert!(ntz(r#""9999-12-31T23:30:00-01:00""#).is_err());
        assert_eq!(
            ntz(r#""0001-01-01T00:00:00Z""#).unwrap(),
            "0001-01-01 00:00:00.000"
        );
        assert_eq!(
            ntz(r#""9999-12-31T23:59:59.999Z""#).unwrap(),
            "9999-12-31 23:59:59.999"
        );
        assert!(ntz("253402300800000").is_err());
        assert!(ntz("-62135596800001").is_err());
        assert!(ntz("99999999999999999999").is_err());
    }

    #[test]
    fn rejects_non_rfc3339_text_and_non_integer_numbers() {
        for bad in [
            r#""2026-11-02T10:00:00""#,
            r#""2026-11-02""#,
            r#""2026-11-02X10:00:00Z""#,
            r#""02/11/2026 10:00""#,
            r#""1793606400000""#,
            r#""""#,
            "1793606400000.5",
            "1.7936064e12",
            "true",
            "{}",
            "[]",
        ] {
            let detail = ntz(bad).unwrap_err();
            assert!(detail.starts_with("event_time: "), "{detail}");
            assert!(detail.contains("RFC 3339"), "{detail}");
        }
    }

    #[test]
    fn detail_names_the_sent_text() {
        assert_eq!(
            ntz(r#""yesterday""#).unwrap_err(),
            format!("event_time: \"yesterday\" is not an RFC 3339 timestamp; {EXPECTED}")
        );
    }
}
