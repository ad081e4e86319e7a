//! Delivering rows to Snowflake, behind one seam: [`Delivery`]. Chunks ([`ChunkLoad`]) go in
//! and one [`ChunkOutcome`] per chunk comes back, whichever way the rows travel. Today the one
//! way is the SQL API's INSERTs on a warehouse ([`sql_api`]); a second way (Snowpipe Streaming)
//! is a second variant and a second folder beside it.

pub mod sql_api;

use tokio::time::Instant;
use uuid::Uuid;

use crate::config::{ConfigError, env_parse};
use crate::rows::Provenance;
use crate::snowflake::{SnowflakeError, Table};

pub use sql_api::Loader;

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
    pub sources: &'a Provenance<String>,
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
}

impl Delivery {
    /// Makes the destination ready, once per process: the SQL API creates the tables if needed.
    pub async fn prepare(&self, deadline: Instant) -> Result<(), SnowflakeError> {
        match self {
            Delivery::SqlApi(loader) => loader.ensure_tables(deadline).await,
        }
    }

    /// Delivers `chunks` and returns one outcome per chunk, in order. Rows Snowflake refuses
    /// for their data go to the quarantine under their chunk's `sources`.
    pub async fn deliver(&self, chunks: &[ChunkLoad<'_>], deadline: Instant) -> Vec<ChunkOutcome> {
        match self {
            Delivery::SqlApi(loader) => loader.load_chunks(chunks, deadline).await,
        }
    }

    /// The statement size and concurrency in force.
    pub fn settings(&self) -> LoadSettings {
        match self {
            Delivery::SqlApi(loader) => loader.settings(),
        }
    }

    /// The warehouse path, for what only it has (suspending the warehouse after a flush).
    pub fn sql_api(&self) -> Option<&Loader> {
        match self {
            Delivery::SqlApi(loader) => Some(loader),
        }
    }
}
