//! flush's settings (read once at cold start) and its invocation input.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, env_opt, env_parse, env_required};
use crate::load::streaming::DEFAULT_CHANNEL;
use crate::load::{LoadMethod, LoadSettings};

/// flush's settings, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushConfig {
    /// `TRACKLAYER_SECRET_ID`.
    pub secret_id: String,
    /// `TRACKLAYER_SECRET_TTL_SECONDS` (default 300).
    pub secret_ttl: Duration,
    /// `TRACKLAYER_STAGING_QUEUE_URL`.
    pub staging_queue_url: String,
    /// Statement size and concurrency.
    pub load: LoadSettings,
    /// `TRACKLAYER_LOAD_METHOD` (default `sql_api`): INSERTs on a warehouse, or Snowpipe
    /// Streaming.
    pub load_method: LoadMethod,
    /// `TRACKLAYER_STREAMING_CHANNEL` (default `TRACKLAYER_FLUSH`): the channel flush writes on
    /// each table's default pipe, upper-cased. One flush at a time may use it (the template
    /// reserves a concurrency of 1).
    pub streaming_channel: String,
    /// `TRACKLAYER_FLUSH_RECEIVERS` (default 1): concurrent long-poll receivers feeding the
    /// packer. One keeps up with it (the statements are the slow part) and holds the least
    /// memory.
    pub receivers: usize,
    /// `TRACKLAYER_FLUSH_MARGIN_SECONDS` (default 10): stop receiving this long before the
    /// deadline, so statements in flight can finish.
    pub margin: Duration,
    /// `TRACKLAYER_VISIBILITY_SECONDS` (default 60): how long a received chunk stays hidden;
    /// extended while its INSERT is in flight.
    pub visibility: Duration,
    /// `TRACKLAYER_SUSPEND_AFTER_FLUSH` (default false): suspend the warehouse after a run that
    /// loaded data (the role needs OPERATE on it).
    pub suspend_after_flush: bool,
    /// `TRACKLAYER_FLUSH_PERIOD_MINUTES` (default 60, as `FlushPeriodMinutes`): the time between
    /// runs. A chunk staged more than two periods before it is received is loaded skipping
    /// rows already there (a redriven chunk, or a first delivery after an outage).
    pub flush_period: Duration,
}

impl FlushConfig {
    /// Reads and validates the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let suspend =
            match env_opt("TRACKLAYER_SUSPEND_AFTER_FLUSH").map(|v| v.to_ascii_lowercase()) {
                None => false,
                Some(v) if v == "true" || v == "1" => true,
                Some(v) if v == "false" || v == "0" => false,
                Some(v) => {
                    return Err(ConfigError::invalid(
                        "TRACKLAYER_SUSPEND_AFTER_FLUSH",
                        format!("{v:?} is not true or false"),
                    ));
                }
            };
        let config = FlushConfig {
            secret_id: env_required("TRACKLAYER_SECRET_ID")?,
            secret_ttl: Duration::from_secs(env_parse("TRACKLAYER_SECRET_TTL_SECONDS", 300u64)?),
            staging_queue_url: env_required("TRACKLAYER_STAGING_QUEUE_URL")?,
            load: LoadSettings::from_env()?,
            load_method: LoadMethod::from_env()?,
            streaming_channel: env_opt("TRACKLAYER_STREAMING_CHANNEL")
                .map_or(DEFAULT_CHANNEL.to_string(), |c| {
                    c.trim().to_ascii_uppercase()
                }),
            receivers: env_parse("TRACKLAYER_FLUSH_RECEIVERS", 1usize)?,
            margin: Duration::from_secs(env_parse("TRACKLAYER_FLUSH_MARGIN_SECONDS", 10u64)?),
            visibility: Duration::from_secs(env_parse("TRACKLAYER_VISIBILITY_SECONDS", 60u64)?),
            suspend_after_flush: suspend,
            flush_period: Duration::from_secs(
                60 * env_parse("TRACKLAYER_FLUSH_PERIOD_MINUTES", 60u64)?,
            ),
        };
        ConfigError::require(
            !config.streaming_channel.is_empty()
                && config.streaming_channel.len() <= 64
                && config
                    .streaming_channel
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "TRACKLAYER_STREAMING_CHANNEL",
            "must be 1 to 64 letters, digits or _ (default TRACKLAYER_FLUSH)",
        )?;
        ConfigError::require(
            (60..=1440 * 60).contains(&config.flush_period.as_secs()),
            "TRACKLAYER_FLUSH_PERIOD_MINUTES",
            "must be between 1 and 1440 minutes, the stack's FlushPeriodMinutes (default 60)",
        )?;
        ConfigError::require(
            (1..=16).contains(&config.receivers),
            "TRACKLAYER_FLUSH_RECEIVERS",
            "must be between 1 and 16 (default 1)",
        )?;
        ConfigError::require(
            (10..=43_200).contains(&config.visibility.as_secs()),
            "TRACKLAYER_VISIBILITY_SECONDS",
            "must be between 10 and 43200 (default 60)",
        )?;
        Ok(config)
    }

    /// How long ago a chunk must have been staged to be loaded skipping rows already there
    /// even on its first delivery: two flush periods.
    pub fn overdue_after(&self) -> Duration {
        self.flush_period * 2
    }
}

/// The optional invocation input: `{"max_seconds": N}` caps the run below Lambda's deadline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct FlushRequest {
    /// Stop receiving after about this many seconds.
    #[serde(default)]
    pub max_seconds: Option<u64>,
}
