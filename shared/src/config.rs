//! Settings errors and environment reading: every bad setting names itself and the fix.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A missing or invalid setting (environment variable or secret field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is absent or empty.
    #[error("{field}: missing; set it (see README, Configuration)")]
    Missing {
        /// The setting's name, e.g. `TRACKLAYER_SECRET_ID` or the secret field `account`.
        field: &'static str,
    },
    /// A setting is present but unusable.
    #[error("{field}: {detail}")]
    Invalid {
        /// The setting's name.
        field: &'static str,
        /// What is wrong and what is expected.
        detail: String,
    },
}

impl ConfigError {
    /// A missing required setting.
    pub fn missing(field: &'static str) -> Self {
        ConfigError::Missing { field }
    }

    /// The setting's name.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::Missing { field } | ConfigError::Invalid { field, .. } => field,
        }
    }

    /// An invalid setting, with the underlying reason.
    pub fn invalid(field: &'static str, reason: impl Display) -> Self {
        ConfigError::Invalid {
            field,
            detail: reason.to_string(),
        }
    }

    /// `Ok` when `holds`, else the setting `field` is invalid because of `rule`.
    pub fn require(holds: bool, field: &'static str, rule: &'static str) -> Result<(), Self> {
        if holds {
            Ok(())
        } else {
            Err(ConfigError::invalid(field, rule))
        }
    }
}

/// Reads an optional environment variable, treating an empty value as unset.
pub fn env_opt(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads a required environment variable.
pub fn env_required(name: &'static str) -> Result<String, ConfigError> {
    env_opt(name).ok_or(ConfigError::missing(name))
}

/// Reads and parses an environment variable, with a default when unset.
pub fn env_parse<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match env_opt(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e| ConfigError::Invalid {
            field: name,
            detail: format!("{raw:?} is not valid: {e}"),
        }),
    }
}

/// A setting read at cold start, or the error logged as what to fix before the function can
/// start (`function` names it in the log).
pub fn at_start<T>(function: &str, setting: Result<T, ConfigError>) -> Result<T, ConfigError> {
    setting.inspect_err(|e| {
        tracing::error!(error = %e, "{function} cannot start: fix this setting");
    })
}

/// A function's JSON input: `null` (no input) is `T::default()`; anything else must read as
/// `T`, or the error says what was `expected`. Fields `T` does not name are ignored.
pub fn input_or_default<T: Default + serde::de::DeserializeOwned>(
    payload: serde_json::Value,
    expected: &str,
) -> Result<T, String> {
    match payload {
        serde_json::Value::Null => Ok(T::default()),
        payload => serde_json::from_value(payload)
            .map_err(|e| format!("invalid input ({e}); expected {expected}")),
    }
}

/// Deadline for an invocation: Lambda's deadline minus a safety margin for the answer.
pub fn invocation_deadline(
    lambda_deadline: std::time::SystemTime,
    margin: Duration,
) -> tokio::time::Instant {
    let left = lambda_deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::Instant::now() + left.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    struct Input {
        max_seconds: Option<u64>,
    }

    #[test]
    fn no_input_is_the_default_and_bad_input_says_what_was_expected() {
        let expected = r#"{} or {"max_seconds": N}"#;
        assert_eq!(
            input_or_default::<Input>(serde_json::Value::Null, expected),
            Ok(Input::default())
        );
        assert_eq!(
            input_or_default::<Input>(serde_json::json!({"max_seconds": 5, "other": 1}), expected),
            Ok(Input {
                max_seconds: Some(5)
            })
        );
        assert_eq!(
            input_or_default::<Input>(serde_json::json!({"max_seconds": "soon"}), expected),
            Err(r#"invalid input (invalid type: string "soon", expected u64); expected {} or {"max_seconds": N}"#.to_string())
        );
    }

    #[test]
    fn a_rule_that_holds_passes_and_one_that_does_not_names_the_setting() {
        assert!(ConfigError::require(true, "TRACKLAYER_X", "must be 1").is_ok());
        let error = ConfigError::require(false, "TRACKLAYER_X", "must be 1").unwrap_err();
        assert!(
            matches!(error, ConfigError::Invalid { field: "TRACKLAYER_X", ref detail } if detail == "must be 1")
        );
    }

    #[test]
    fn the_invocation_deadline_keeps_the_margin() {
        let now = std::time::SystemTime::now();
        let deadline = invocation_deadline(now + Duration::from_secs(30), Duration::from_secs(5));
        let left = deadline - tokio::time::Instant::now();
        assert!(
            left <= Duration::from_secs(25) && left > Duration::from_secs(24),
            "{left:?}"
        );
        let past = invocation_deadline(now - Duration::from_secs(1), Duration::from_secs(5));
        assert!(past <= tokio::time::Instant::now());
    }
}
