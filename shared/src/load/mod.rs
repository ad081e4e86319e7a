//! Delivering rows to Snowflake, behind one seam: [`Delivery`]. Chunks ([`ChunkLoad`]) go in
//! and one [`ChunkOutcome`] per chunk comes back, whichever way the rows travel: the SQL API's
//! INSERTs on a warehouse ([`sql_api`]), or Snowpipe Streaming's channels with no warehouse
//! ([`streaming`]), chosen by `TRACKLAYER_LOAD_METHOD` ([`LoadMethod`]).

pub mod sql_api;
pub mod streaming;

use std::borrow::Cow;

use tokio::time::Instant;
use uuid::Uuid;

use crate::config::{ConfigError, env_opt, env_parse};
use crate::rows::Provenance;
use crate::snowflake::{SnowflakeError, Table};

pub use sql_api::Loader;
pub use streaming::Streamed;

/// How rows reach Snowflake (`TRACKLAYER_LOAD_METHOD`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoadMethod {
    /// `sql_api` (the default): INSERTs through the SQL API, on a warehouse.
    #[default]
    SqlApi,
    /// `streaming`: Snowpipe Streaming's REST API, no warehouse for first deliveries.
    Streaming,
}

impl LoadMethod {
    /// Reads `TRACKLAYER_LOAD_METHOD` (`sql_api` when unset).
    pub fn from_env() -> Result<Self, ConfigError> {
        match env_opt("TRACKLAYER_LOAD_METHOD").as_deref().map(str::trim) {
            None | Some("sql_api") => Ok(LoadMethod::SqlApi),
            Some("streaming") => Ok(LoadMethod::Streaming),
            Some(other) => Err(ConfigError::invalid(
                "TRACKLAYER_LOAD_METHOD",
                format!(
                    "{other:?} is not a load method; use sql_api (INSERTs on a warehouse) or streaming (Snowpipe Streaming, no warehouse)"
                ),
            )),
        }
    }

    /// `sql_api` or `streaming`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMethod::SqlApi => "sql_api",
            LoadMethod::Streaming => "streaming",
        }
    }
}

/// Default statement size bound: statement text plus bound values stay retryable by requestId.
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 1_000_000;
/// Default number of INSERTs in flight at once.
pub const DEFAULT_MAX_CONCURRENT_STATEMENTS: usize = 4;

/// How the loader sizes and paces statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSettings {
    /// Upper bound of one statement's text plus bindings, in bytes.
    pub max_statement_bytes: usize,
    /// Statements in flight at once.
    pub max_concurrent_statements: usize,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            max_statement_bytes: DEFAULT_MAX_STATEMENT_BYTES,
            max_concurrent_statements: DEFAULT_MAX_CONCURRENT_STATEMENTS,
        }
    }
}

impl LoadSettings {
    /// Reads `TRACKLAYER_MAX_STATEMENT_BYTES` and `TRACKLAYER_MAX_CONCURRENT_STATEMENTS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let settings = LoadSettings {
            max_statement_bytes: env_parse(
                "TRACKLAYER_MAX_STATEMENT_BYTES",
                DEFAULT_MAX_STATEMENT_BYTES,
            )?,
            max_concurrent_statements: env_parse(
                "TRACKLAYER_MAX_CONCURRENT_STATEMENTS",
                DEFAULT_MAX_CONCURRENT_STATEMENTS,
            )?,
        };
        ConfigError::require(
            settings.max_statement_bytes >= 10_000,
            "TRACKLAYER_MAX_STATEMENT_BYTES",
            "must be at least 10000 (default 1000000)",
        )?;
        ConfigError::require(
            (1..=64).contains(&settings.max_concurrent_statements),
            "TRACKLAYER_MAX_CONCURRENT_STATEMENTS",
            "must be between 1 and 64 (default 4)",
        )?;
        Ok(settings)
    }
}

/// What loading one chunk achieved.
#[derive(Debug, Clone, Default)]
pub struct ChunkOutcome {
    /// Rows that landed in the chunk's table.
    pub loaded: u64,
    /// Rows Snowflake refused and that went to the quarantine instead.
    pub quarantined: u64,
    /// Statements sent (first try, bisection, quarantine).
    pub statements: u32,
    /// Set when the chunk did not fully land (its messages must be retried).
    pub error: Option<SnowflakeError>,
}

/// One chunk to load.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLoad<'a> {
    /// Destination table.
    pub table: Table,
    /// The bound JSON array.
    pub body: &'a str,
    /// The chunk's identity: every statement's requestId derives from it, the row range and the
    /// statement's text and values.
    pub key: Uuid,
    /// Whether this chunk may have been (partly) loaded before: send `retry=true` at once.
    pub resubmission: bool,
    /// query_tag for every statement.
    pub tag: &'a str,
    /// The source of each row (SQS message id, or `staged:<chunk id>`): a row Snowflake refuses
    /// for its data is quarantined under it.
    pub sources: &'a Provenance<Cow<'a, str>>,
    /// Skip rows already in the table (see [`Table::insert_skipping_loaded`]): for rows a
    /// dead run may have loaded under other requestIds.
    pub skip_loaded: bool,
}

/// The ways rows reach Snowflake. Ingest (stream mode) and flush load through this and nothing
/// else, so what they decide (retry, quarantine, stop) does not depend on the way.
#[derive(Debug)]
pub enum Delivery {
    /// INSERTs through the SQL API, on a warehouse.
    SqlApi(Loader),
    /// Snowpipe Streaming's channels, with the SQL API for redeliveries.
    Streaming(streaming::Writer),
}

impl Delivery {
    /// Makes the destination ready: the tables, once per process; for streaming also the
    /// channels, reopened every run.
    pub async fn prepare(&self, deadline: Instant) -> Result<(), SnowflakeError> {
        match self {
            Delivery::SqlApi(loader) => loader.ensure_tables(deadline).await,
            Delivery::Streaming(writer) => writer.prepare(deadline).await,
        }
    }

    /// Delivers `chunks` and returns one outcome per chunk, in order. Rows Snowflake refuses
    /// for their data go to the quarantine under their chunk's `sources`.
    pub async fn deliver(&self, chunks: &[ChunkLoad<'_>], deadline: Instant) -> Vec<ChunkOutcome> {
        match self {
            Delivery::SqlApi(loader) => loader.load_chunks(chunks, deadline).await,
            Delivery::Streaming(writer) => writer.deliver(chunks, deadline).await,
        }
    }

    /// How rows travel.
    pub fn method(&self) -> LoadMethod {
        match self {
            Delivery::SqlApi(_) => LoadMethod::SqlApi,
            Delivery::Streaming(_) => LoadMethod::Streaming,
        }
    }

    /// The statement size and concurrency in force.
    pub fn settings(&self) -> LoadSettings {
        match self {
            Delivery::SqlApi(loader) => loader.settings(),
            Delivery::Streaming(writer) => writer.loader().settings(),
        }
    }

    /// Appends Snowflake accepted this run and their uncompressed bytes (replays after a
    /// reopen included; what streaming bills by); `None` on the SQL API path.
    pub async fn streamed(&self) -> Option<Streamed> {
        match self {
            Delivery::SqlApi(_) => None,
            Delivery::Streaming(writer) => Some(writer.streamed().await),
        }
    }

    /// The warehouse path, for what only it has (suspending the warehouse after a flush; with
    /// streaming the warehouse runs only for redeliveries, and is left to its AUTO_SUSPEND).
    pub fn sql_api(&self) -> Option<&Loader> {
        match self {
            Delivery::SqlApi(loader) => Some(loader),
            Delivery::Streaming(_) => None,
        }
    }
}
