//! ingest's settings, read once at cold start, and the mode they choose.

use std::time::Duration;

use crate::config::{ConfigError, env_opt, env_parse, env_required};
use crate::load::{LoadMethod, LoadSettings};

/// Where validated events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Insert into Snowflake at once.
    Stream,
    /// Stage insert-ready chunks on the staging queue; `flush` loads them on a schedule.
    Scheduled,
}

impl LoadMode {
    /// `stream` or `scheduled`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Stream => "stream",
            LoadMode::Scheduled => "scheduled",
        }
    }
}

/// ingest's settings, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// `TRACKLAYER_LOAD_MODE` (default `stream`).
    pub mode: LoadMode,
    /// `TRACKLAYER_SECRET_ID`: required in stream mode.
    pub secret_id: Option<String>,
    /// `TRACKLAYER_SECRET_TTL_SECONDS` (default 300).
    pub secret_ttl: Duration,
    /// `TRACKLAYER_STAGING_QUEUE_URL`: required in scheduled mode.
    pub staging_queue_url: Option<String>,
    /// `TRACKLAYER_EVENTS_QUEUE_URL` (stream mode, optional): the queue ingest reads, where a
    /// message that landed in part is sent back marked. Without it such a message is only
    /// retried, and a redrive of it from the dead-letter queue inserts its landed rows again.
    pub events_queue_url: Option<String>,
    /// Statement size and concurrency.
    pub load: LoadSettings,
}

impl IngestConfig {
    /// Reads and validates the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mode = match env_opt("TRACKLAYER_LOAD_MODE").as_deref().map(str::trim) {
            None | Some("stream") => LoadMode::Stream,
            Some("scheduled") => LoadMode::Scheduled,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "TRACKLAYER_LOAD_MODE",
                    format!(
                        "{other:?} is not a mode; use stream (insert at once) or scheduled (stage for flush)"
                    ),
                ));
            }
        };
        let config = IngestConfig {
            mode,
            secret_id: match mode {
                LoadMode::Stream => Some(env_required("TRACKLAYER_SECRET_ID")?),
                LoadMode::Scheduled => env_opt("TRACKLAYER_SECRET_ID"),
            },
            secret_ttl: Duration::from_secs(env_parse("TRACKLAYER_SECRET_TTL_SECONDS", 300u64)?),
            staging_queue_url: match mode {
                LoadMode::Scheduled => Some(env_required("TRACKLAYER_STAGING_QUEUE_URL")?),
                LoadMode::Stream => env_opt("TRACKLAYER_STAGING_QUEUE_URL"),
            },
            events_queue_url: env_opt("TRACKLAYER_EVENTS_QUEUE_URL"),
            load: LoadSettings::from_env()?,
        };
        ConfigError::require(
            mode == LoadMode::Scheduled || LoadMethod::from_env()? == LoadMethod::SqlApi,
            "TRACKLAYER_LOAD_METHOD",
            "streaming needs TRACKLAYER_LOAD_MODE=scheduled: flush is the one writer of the streaming channels; in stream mode ingest loads through the SQL API (sql_api)",
        )?;
        Ok(config)
    }
}
