//! `value`: a JSON number or numeric string, read as an exact decimal for NUMBER(18,4).
//!
//! The text is never converted through `f64`: its digits are rounded to 4 decimal places half
//! away from zero (what Snowflake does on insert) and checked against the 14 integer digits
//! NUMBER(18,4) holds. Rounding works on the digit string itself, so inputs with more digits
//! than `Decimal` can hold (28) still round exactly, and `1e30` is "too large" rather than an
//! overflow.

use rust_decimal::Decimal;

use super::detail::{quote_for_detail, raw_for_detail};

/// Decimal places kept: the scale of NUMBER(18,4).
pub(super) const SCALE: u32 = 4;

/// Digits of the scaled integer (value × 10⁴) that NUMBER(18,4) holds.
const MAX_DIGITS: usize = 18;

const EXPECTED: &str = "expected a JSON number or a numeric string such as 19.99";

/// Reads `value`; the error is a rejection detail.
pub(super) fn parse(json: &str) -> Result<Decimal, String> {
    let (text, quoted) = match json.as_bytes().first() {
        Some(b'"') => (unquote(json)?, true),
        Some(b'-' | b'0'..=b'9') => (json.into(), false),
        _ => {
            return Err(format!(
                "value: {} is not a number; {EXPECTED}",
                raw_for_detail(json)
            ));
        }
    };
    let shown = || {
        if quoted {
            quote_for_detail(&text)
        } else {
            raw_for_detail(json)
        }
    };
    match parse_decimal(&text) {
        Ok(decimal) => Ok(decimal),
        Err(NotLoadable::Empty) => Err(format!(
            "value: \"\" is empty; {EXPECTED}, or null when there is no value"
        )),
        Err(NotLoadable::TooLarge) => Err(format!(
            "value: {} is out of range for NUMBER(18,4): the absolute value must be below \
             100000000000000 (14 integer digits) after rounding to 4 decimal places",
            shown()
        )),
        Err(NotLoadable::Malformed) => Err(malformed_detail(&shown(), &text)),
    }
}

fn unquote(json: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    if json.contains('\\') {
        serde_json::from_str::<String>(json)
            .map(Into::into)
            .map_err(|_| {
                format!(
                    "value: {} is not a decimal number; {EXPECTED}",
                    raw_for_detail(json)
                )
            })
    } else {
        Ok(json[1..json.len() - 1].into())
    }
}

fn malformed_detail(shown: &str, text: &str) -> String {
    let commas = text.matches(',').count();
    let digits_and_commas = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b',' | b'.' | b'-'));
    // Suggestions repeat the value, so only for values short enough to read.
    let suggest = text.len() <= 32 && digits_and_commas;
    if commas == 1 && !text.contains('.') && suggest {
        let with_dot = text.replace(',', ".");
        format!(
            "value: {shown} is not a decimal number (use a dot as decimal separator, e.g. {with_dot})"
        )
    } else if commas > 0 && suggest {
        let without = text.replace(',', "");
        format!(
            "value: {shown} is not a decimal number (remove the thousands separators, e.g. {without})"
        )
    } else {
        format!("value: {shown} is not a decimal number; {EXPECTED}")
    }
}

/// Why a text is not a loadable decimal.
#[derive(Debug, PartialEq, Eq)]
enum NotLoadable {
    Empty,
    Malformed,
    TooLarge,
}

/// Parses JSON-number syntax (leading zeros allowed) into a scale-4 decimal, rounding half
/// away from zero and checking the NUMBER(18,4) range.
fn parse_decimal(text: &str) -> Result<Decimal, NotLoadable> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(NotLoadable::Empty);
    }
    let negative = bytes[0] == b'-';
    let mut at = usize::from(negative);
    let integer = take_digits(bytes, &mut at);
    let fraction = if bytes.get(at) == Some(&b'.') {
        at += 1;
        let fraction = take_digits(bytes, &mut at);
        if fraction.is_empty() {
            return Err(NotLoadable::Malformed);
        }
        fraction
    } else {
        &[]
    };
    if integer.is_empty() {
        return Err(NotLoadable::Malformed);
    }
    let exponent = if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        let exponent_negative = match bytes.get(at) {
            Some(b'-') => {
                at += 1;
                true
            }
            Some(b'+') => {
                at += 1;
                false
            }
            _ => false,
        };
        let digits = take_digits(bytes, &mut at);
        if digits.is_empty() {
            return Err(NotLoadable::Malformed);
        }
        // Saturating: anything this large is out of range (or rounds to zero) either way.
        let magnitude = digits.iter().fold(0_i64, |acc, digit| {
            (acc * 10 + i64::from(digit - b'0')).min(1_000_000_000)
        });
        if exponent_negative {
            -magnitude
        } else {
            magnitude
        }
    } else {
        0
    };
    if at != bytes.len() {
        return Err(NotLoadable::Malformed);
    }

    // The value is DIGITS × 10^(exponent − fraction.len()); scaled by 10⁴ it is
    // DIGITS × 10^shift, which must be rounded to an integer below 10¹⁸.
    let digit_at = |i: usize| {
        if i < integer.len() {
            integer[i] - b'0'
        } else {
            fraction[i - integer.len()] - b'0'
        }
    };
    let total = integer.len() + fraction.len();
    let Some(first_significant) = (0..total).find(|&i| digit_at(i) != 0) else {
        return Ok(Decimal::new(0, SCALE));
    };
    let significant = total - first_significant;
    let shift = exponent - fraction.len() as i64 + i64::from(SCALE);
    let accumulate = |count: usize| {
        (first_significant..first_significant + count)
            .fold(0_u64, |acc, i| acc * 10 + u64::from(digit_at(i)))
    };
    let scaled = if shift >= 0 {
        if significant as i64 + shift > MAX_DIGITS as i64 {
            return Err(NotLoadable::TooLarge);
        }
        accumulate(significant) * 10_u64.pow(shift as u32)
    } else {
        let dropped = shift.unsigned_abs();
        let kept = (significant as u64).saturating_sub(dropped) as usize;
        if kept > MAX_DIGITS {
            return Err(NotLoadable::TooLarge);
        }
        // Half away from zero: round the magnitude up when the first dropped digit is >= 5.
        let first_dropped = if dropped <= significant as u64 {
            digit_at(first_significant + kept)
        } else {
            0
        };
        accumulate(kept) + u64::from(first_dropped >= 5)
    };
    if scaled >= 10_u64.pow(MAX_DIGITS as u32) {
        return Err(NotLoadable::TooLarge);
    }
    let magnitude = scaled as i64;
    Ok(Decimal::new(
        if negative { -magnitude } else { magnitude },
        SCALE,
    ))
}

fn take_digits<'t>(bytes: &'t [u8], at: &mut usize) -> &'t [u8] {
    let start = *at;
    while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
        *at += 1;
    }
    &bytes[start..*at]
}

/// Appends `value` with exactly four fractional digits, e.g. `19.9900` or `-0.5000`.
pub(crate) fn push_scale4(buf: &mut String, value: Decimal) {
    let mut value = value;
    if value.scale() != SCALE {
        value.rescale(SCALE);
    }
    let mantissa = value.mantissa();
    let Ok(magnitude) = u64::try_from(mantissa.unsigned_abs()) else {
        // Beyond NUMBER(18,4); validated events never get here.
        buf.push_str(&value.to_string());
        return;
    };
    if mantissa < 0 {
        buf.push('-');
    }
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    let mut rest = magnitude;
    while rest > 0 || digits.len() - start <= SCALE as usize {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let text = std::str::from_utf8(&digits[start..]).unwrap_or_default();
    let point = text.len() - SCALE as usize;
    buf.push_str(&text[..point]);
    buf.push('.');
    buf.push_str(&text[point..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale4(json: &str) -> Result<String, String> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(json).unwrap();
        parse(raw.get()).map(|decimal| {
            let mut text = String::new();
            push_scale4(&mut text, decimal);
            assert_eq!(text, decimal.to_string(), "Display and push_scale4 agree");
            text
        })
    }

    #[test]
    fn reads_numbers_and_numeric_strings_exactly_at_scale_4() {
        assert_eq!(scale4("19.99").unwrap(), "19.9900");
        assert_eq!(scale4(r#""19.99""#).unwrap(), "19.9900");
        assert_eq!(scale4("1e2").unwrap(), "100.0000");
        assert_eq!(scale4(r#""1E+2""#).unwrap(), "100.0000");
        assert_eq!(scale4("2.5e-3").unwrap(), "0.0025");
        assert_eq!(scale4("0").unwrap(), "0.0000");
        assert_eq!(scale4("-0").unwrap(), "0.0000");
        assert_eq!(scale4("-12.3").unwrap(), "-12.3000");
        assert_eq!(scale4(r#""007.50""#).unwrap(), "7.5000");
        assert_eq!(scale4("0.1").unwrap(), "0.1000");
        assert_eq!(scale4("123456789").unwrap(), "123456789.0000");
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(scale4("1.00005").unwrap(), "1.0001");
        assert_eq!(scale4("-1.00005").unwrap(), "-1.0001");
        assert_eq!(scale4("1.00004999").unwrap(), "1.0000");
        assert_eq!(scale4("0.00005").unwrap(), "0.0001");
        assert_eq!(scale4("0.00004").unwrap(), "0.0000");
        assert_eq!(scale4("-0.00004").unwrap(), "0.0000");
        assert_eq!(scale4("5e-5").unwrap(), "0.0001");
        assert_eq!(scale4("1e-300").unwrap(), "0.0000");
        assert_eq!(scale4("9.99995").unwrap(), "10.0000");
    }

    #[test]
    fn rounds_exactly_beyond_28_significant_digits() {
        assert_eq!(
            scale4("1.000049999999999999999999999999999999").unwrap(),
            "1.0000"
        );
        assert_eq!(
            scale4("0.000050000000000000000000000000000001").unwrap(),
            "0.0001"
        );
    }

    #[test]
    fn enforces_number_18_4_range_after_rounding() {
        assert_eq!(
            scale4("99999999999999.99994").unwrap(),
            "99999999999999.9999"
        );
        assert_eq!(
            scale4("-99999999999999.99994").unwrap(),
            "-99999999999999.9999"
        );
        for too_large in [
            "99999999999999.99995",
            "-99999999999999.99995",
            "100000000000000",
            "1e14",
            "1e30",
            r#""1e30""#,
            "1e999999999999",
            "123456789012345678901234567890",
        ] {
            let detail = scale4(too_large).unwrap_err();
            assert!(
                detail.contains("out of range for NUMBER(18,4)"),
                "{too_large}: {detail}"
            );
        }
        assert_eq!(scale4("0e999999999999").unwrap(), "0.0000");
    }

    #[test]
    fn explains_a_comma_decimal_separator() {
        assert_eq!(
            scale4(r#""12,50""#).unwrap_err(),
            r#"value: "12,50" is not a decimal number (use a dot as decimal separator, e.g. 12.50)"#
        );
        assert_eq!(
            scale4(r#""1,234.50""#).unwrap_err(),
            r#"value: "1,234.50" is not a decimal number (remove the thousands separators, e.g. 1234.50)"#
        );
    }

    #[test]
    fn rejects_text_that_is_not_a_decimal() {
        for bad in [
            r#""NaN""#,
            r#""Infinity""#,
            r#""abc""#,
            r#""19.99 EUR""#,
            r#"" 19.99""#,
            r#""+19.99""#,
            r#"".5""#,
            r#""5.""#,
            r#""1e""#,
            r#""0x10""#,
            r#""--1""#,
        ] {
            let detail = scale4(bad).unwrap_err();
            assert!(
                detail.contains("is not a decimal number"),
                "{bad}: {detail}"
            );
        }
        assert_eq!(
            scale4(r#""NaN""#).unwrap_err(),
            format!("value: \"NaN\" is not a decimal number; {EXPECTED}")
        );
    }

    #[test]
    fn rejects_empty_strings_booleans_and_containers() {
        assert!(
            scale4(r#""""#)
                .unwrap_err()
                .starts_with(r#"value: "" is empty"#)
        );
        assert_eq!(
            scale4("true").unwrap_err(),
            format!("value: true is not a number; {EXPECTED}")
        );
        assert_eq!(
            scale4(r#"{"amount":1}"#).unwrap_err(),
            format!("value: an object is not a number; {EXPECTED}")
        );
        assert_eq!(
            scale4("[1]").unwrap_err(),
            format!("value: an array is not a number; {EXPECTED}")
        );
    }
}
