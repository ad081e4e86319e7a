//! Loading into Snowflake: tables bootstrapped once per process, chunks inserted with bounded
//! concurrency, and one fresh read of the secret after an authentication failure.

pub mod chunk;
pub mod isolate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use crate::config::{ConfigError, env_parse};
use crate::secrets::SecretSource;
use crate::snowflake::{Client, ErrorKind, QueryResult, SnowflakeError, Statement, Table};

pub use chunk::{Chunk, Chunker, MessageRows};
pub use isolate::{ChunkLoad, ChunkOutcome};

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
        if settings.max_statement_bytes < 10_000 {
            return Err(ConfigError::invalid(
                "TRACKLAYER_MAX_STATEMENT_BYTES",
                "must be at least 10000 (default 1000000)",
            ));
        }
        if !(1..=64).contains(&settings.max_concurrent_statements) {
            return Err(ConfigError::invalid(
                "TRACKLAYER_MAX_CONCURRENT_STATEMENTS",
                "must be between 1 and 64 (default 4)",
            ));
        }
        Ok(settings)
    }
}

/// Runs statements against the destination described by one secret.
#[derive(Debug)]
pub struct Loader {
    source: SecretSource,
    settings: LoadSettings,
    tables: OnceCell<()>,
}

impl Loader {
    /// A loader reading credentials from `source`.
    pub fn new(source: SecretSource, settings: LoadSettings) -> Self {
        Loader {
            source,
            settings,
            tables: OnceCell::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> LoadSettings {
        self.settings
    }

    /// The secret source.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// Creates `RAW_EVENTS` and `RAW_EVENTS_REJECTED` if needed, once per process: metadata
    /// statements cost warehouse time, so they never run per batch.
    pub async fn ensure_tables(&self, deadline: Instant) -> Result<(), SnowflakeError> {
        self.tables
            .get_or_try_init(|| async {
                for table in [Table::RawEvents, Table::Rejected] {
                    self.run(
                        Statement::new(table.ddl()).tag("tracklayer:bootstrap"),
                        deadline,
                    )
                    .await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Runs one statement; after an authentication failure the secret is read again once
    /// (a rotated key is picked up) and the statement resubmitted once.
    pub async fn run(
        &self,
        statement: Statement,
        deadline: Instant,
    ) -> Result<QueryResult, SnowflakeError> {
        let mut results = self.run_all(vec![statement], deadline).await;
        results.pop().expect("one result per statement")
    }

    /// Runs statements with at most `max_concurrent_statements` in flight; results come back
    /// in the order given.
    ///
    /// A failure that no retry can fix (authentication, permission, warehouse, configuration)
    /// stops the batch: statements not yet sent are not sent and carry that error, so a bad
    /// credential costs Snowflake a handful of requests, not one per chunk. After an
    /// authentication failure the secret is fetched again and the failed statements are tried
    /// once more.
    pub async fn run_all(
        &self,
        statements: Vec<Statement>,
        deadline: Instant,
    ) -> Vec<Result<QueryResult, SnowflakeError>> {
        let mut results = self.run_round(&statements, deadline).await;
        let auth_failed = results
            .iter()
            .any(|r| matches!(r, Err(e) if e.kind() == ErrorKind::Authentication));
        if !auth_failed {
            return results;
        }
        tracing::warn!(
            secret_id = self.source.secret_id(),
            "Snowflake refused the credentials; reading the secret again once"
        );
        self.source.invalidate().await;
        let retry: Vec<usize> = (0..statements.len())
            .filter(|&i| results[i].is_err())
            .collect();
        let again: Vec<Statement> = retry
            .iter()
            .map(|&i| Statement {
                resubmission: true,
                ..statements[i].clone()
            })
            .collect();
        let second = self.run_round(&again, deadline).await;
        for (i, result) in retry.into_iter().zip(second) {
            results[i] = result;
        }
        results
    }

    async fn run_round(
        &self,
        statements: &[Statement],
        deadline: Instant,
    ) -> Vec<Result<QueryResult, SnowflakeError>> {
        let client = match self.source.client().await {
            Ok(client) => client,
            Err(e) => return statements.iter().map(|_| Err(e.clone())).collect(),
        };
        let stop = Arc::new(StopSignal::default());
        let permits = Arc::new(Semaphore::new(self.settings.max_concurrent_statements));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, statement) in statements.iter().cloned().enumerate() {
            let (client, stop, permits) = (client.clone(), stop.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore open");
                (
                    index,
                    run_unless_stopped(&client, &stop, &statement, deadline).await,
                )
            });
        }
        let mut results: Vec<Option<Result<QueryResult, SnowflakeError>>> =
            (0..statements.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (index, result) = joined.expect("statement task panicked");
            results[index] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every task reports"))
            .collect()
    }
}

/// The first unfixable error of a batch, shared by its statements.
#[derive(Default)]
struct StopSignal {
    stopped: AtomicBool,
    error: std::sync::Mutex<Option<SnowflakeError>>,
}

impl StopSignal {
    fn stop(&self, error: &SnowflakeError) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(error.clone());
        }
        self.stopped.store(true, Ordering::SeqCst);
    }

    fn error(&self) -> Option<SnowflakeError> {
        if !self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn run_unless_stopped(
    client: &Client,
    stop: &StopSignal,
    statement: &Statement,
    deadline: Instant,
) -> Result<QueryResult, SnowflakeError> {
    if let Some(error) = stop.error() {
        return Err(error);
    }
    let result = client.execute(statement, deadline).await;
    if let Err(error) = &result
        && error.kind().stops_the_run()
    {
        stop.stop(error);
    }
    result
}

/// Deadline for an invocation: Lambda's deadline minus a safety margin for the answer.
pub fn invocation_deadline(lambda_deadline: std::time::SystemTime, margin: Duration) -> Instant {
    let left = lambda_deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left.saturating_sub(margin)
}
