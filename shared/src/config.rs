//! Settings errors and environment reading: every bad setting names itself and the fix.

use std::fmt::Display;
use std::str::FromStr;

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
