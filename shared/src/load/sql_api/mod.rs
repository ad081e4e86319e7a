//! The SQL API path: rows go in as INSERTs on a warehouse. Tables are bootstrapped once per
//! process, statements run with bounded concurrency, a failure no retry fixes stops the batch,
//! and the secret is read once more after an authentication failure.
//!
//! This file runs statements; `insert.rs` turns chunks into INSERTs and their answers into
//! outcomes; `isolate.rs` bisects a chunk Snowflake refused for its data.

mod insert;
mod isolate;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use super::LoadSettings;
use crate::secrets::{ClientSource, SecretSource};
use crate::snowflake::{Client, ErrorKind, QueryResult, SnowflakeError, Statement, Table};

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
        let concurrency = self.settings.max_concurrent_statements;
        // Boxed: one allocation per batch keeps the callers' futures shallow enough for rustc's
        // layout queries (the generic rounds nest deeper than its default limit allows).
        Box::pin(run_all(&self.source, concurrency, statements, deadline)).await
    }
}

/// Where the loader's statements go: the SQL API [`Client`]; in this module's tests a scripted
/// one, so the batch rules (stop the run, read the secret again) are tested without a network.
pub(crate) trait Execute: Send + Sync + 'static {
    /// Runs `statement` to completion before `deadline`.
    fn execute(
        &self,
        statement: &Statement,
        deadline: Instant,
    ) -> impl Future<Output = Result<QueryResult, SnowflakeError>> + Send;
}

impl Execute for Client {
    fn execute(
        &self,
        statement: &Statement,
        deadline: Instant,
    ) -> impl Future<Output = Result<QueryResult, SnowflakeError>> + Send {
        Client::execute(self, statement, deadline)
    }
}

/// [`Loader::run_all`] over any client source.
async fn run_all<S: ClientSource<Client: Execute>>(
    source: &S,
    concurrency: usize,
    statements: Vec<Statement>,
    deadline: Instant,
) -> Vec<Result<QueryResult, SnowflakeError>> {
    let mut results = run_round(source, concurrency, &statements, deadline).await;
    let auth_failed = results
        .iter()
        .any(|r| matches!(r, Err(e) if e.kind() == ErrorKind::Authentication));
    if !auth_failed {
        return results;
    }
    tracing::warn!(
        secret_id = source.secret_id(),
        "Snowflake refused the credentials; reading the secret again once"
    );
    source.invalidate().await;
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
    let second = run_round(source, concurrency, &again, deadline).await;
    for (i, result) in retry.into_iter().zip(second) {
        results[i] = result;
    }
    results
}

async fn run_round<S: ClientSource<Client: Execute>>(
    source: &S,
    concurrency: usize,
    statements: &[Statement],
    deadline: Instant,
) -> Vec<Result<QueryResult, SnowflakeError>> {
    let client = match source.client().await {
        Ok(client) => client,
        Err(e) => return statements.iter().map(|_| Err(e.clone())).collect(),
    };
    let stop = Arc::new(StopSignal::default());
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, statement) in statements.iter().cloned().enumerate() {
        let (client, stop, permits) = (client.clone(), stop.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            (
                index,
                run_unless_stopped(&*client, &stop, &statement, deadline).await,
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
    client: &impl Execute,
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    use crate::config::ConfigError;
    use crate::snowflake::ApiError;

    /// How a scripted client answers the statement with `sql` when built after
    /// `invalidations` reads of the secret were forgotten.
    type Answer = fn(sql: &str, invalidations: usize) -> Option<SnowflakeError>;

    fn refusal(code: &str) -> SnowflakeError {
        SnowflakeError::from(ApiError {
            http_status: 422,
            code: code.into(),
            message: format!("scripted {code}"),
            ..ApiError::default()
        })
    }

    /// A client source whose clients answer from a script and record what they were sent.
    struct Scripted {
        answer: Answer,
        unreadable: bool,
        fetches: AtomicUsize,
        invalidations: AtomicUsize,
        sent: Arc<Mutex<Vec<(usize, String, bool)>>>,
    }

    struct ScriptedClient {
        generation: usize,
        answer: Answer,
        sent: Arc<Mutex<Vec<(usize, String, bool)>>>,
    }

    impl Execute for ScriptedClient {
        async fn execute(
            &self,
            statement: &Statement,
            _deadline: Instant,
        ) -> Result<QueryResult, SnowflakeError> {
            self.sent.lock().unwrap().push((
                self.generation,
                statement.sql.clone(),
                statement.resubmission,
            ));
            match (self.answer)(&statement.sql, self.generation) {
                Some(error) => Err(error),
                None => Ok(QueryResult {
                    statement_handle: statement.sql.clone(),
                    ..QueryResult::default()
                }),
            }
        }
    }

    impl ClientSource for Scripted {
        type Client = ScriptedClient;

        async fn client(&self) -> Result<Arc<ScriptedClient>, SnowflakeError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if self.unreadable {
                return Err(SnowflakeError::setup(ConfigError::invalid(
                    "TRACKLAYER_SECRET_ID",
                    "no such secret",
                )));
            }
            Ok(Arc::new(ScriptedClient {
                generation: self.invalidations.load(Ordering::SeqCst),
                answer: self.answer,
                sent: self.sent.clone(),
            }))
        }

        async fn invalidate(&self) {
            self.invalidations.fetch_add(1, Ordering::SeqCst);
        }

        fn secret_id(&self) -> &str {
            "tracklayer/snowflake"
        }
    }

    fn scripted(answer: Answer) -> Scripted {
        Scripted {
            answer,
            unreadable: false,
            fetches: AtomicUsize::new(0),
            invalidations: AtomicUsize::new(0),
            sent: Arc::default(),
        }
    }

    /// Runs statements `a`, `b`, ... one at a time (so the order they are sent in is fixed).
    async fn run(source: &Scripted, names: &[&str]) -> Vec<Result<String, String>> {
        let statements = names.iter().map(|&name| Statement::new(name)).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        run_all(source, 1, statements, deadline)
            .await
            .into_iter()
            .map(|r| {
                r.map(|ok| ok.statement_handle)
                    .map_err(|e| e.code().unwrap_or(e.kind().as_str()).to_string())
            })
            .collect()
    }

    fn sent(source: &Scripted) -> Vec<(usize, String, bool)> {
        source.sent.lock().unwrap().clone()
    }

    fn ok(name: &str) -> Result<String, String> {
        Ok(name.into())
    }

    fn err(code: &str) -> Result<String, String> {
        Err(code.into())
    }

    #[tokio::test]
    async fn a_refused_credential_reads_the_secret_again_and_resends_only_what_failed() {
        // The first client's key was rotated away: everything after `a` is refused.
        let source =
            scripted(|sql, generation| (generation == 0 && sql != "a").then(|| refusal("390144")));
        let results = run(&source, &["a", "b", "c"]).await;
        assert_eq!(results, [ok("a"), ok("b"), ok("c")]);
        assert_eq!(source.invalidations.load(Ordering::SeqCst), 1);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        let expected = [
            (0, "a".to_string(), false),
            (0, "b".to_string(), false),
            (1, "b".to_string(), true),
            (1, "c".to_string(), true),
        ];
        assert_eq!(
            sent(&source),
            expected,
            "c waits for the new secret, a is not resent"
        );
    }

    #[tokio::test]
    async fn a_credential_refused_twice_is_not_read_a_third_time() {
        let source = scripted(|_, _| Some(refusal("390144")));
        let results = run(&source, &["a", "b"]).await;
        assert_eq!(results, [err("390144"), err("390144")]);
        assert_eq!(source.invalidations.load(Ordering::SeqCst), 1);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
        let expected = [(0, "a".to_string(), false), (1, "a".to_string(), true)];
        assert_eq!(
            sent(&source),
            expected,
            "one refusal per round, then b is never sent"
        );
    }

    #[tokio::test]
    async fn an_unfixable_error_stops_the_batch_and_the_unsent_carry_it() {
        let source = scripted(|sql, _| (sql == "b").then(|| refusal("003001")));
        let results = run(&source, &["a", "b", "c", "d"]).await;
        assert_eq!(
            results,
            [ok("a"), err("003001"), err("003001"), err("003001")]
        );
        let names: Vec<String> = sent(&source).into_iter().map(|(_, sql, _)| sql).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            source.invalidations.load(Ordering::SeqCst),
            0,
            "only a refused credential reads the secret again"
        );
    }

    #[tokio::test]
    async fn transient_and_row_errors_do_not_stop_the_batch() {
        let source = scripted(|sql, _| match sql {
            "b" => Some(refusal("000625")),
            "c" => Some(refusal("100038")),
            _ => None,
        });
        let results = run(&source, &["a", "b", "c", "d"]).await;
        assert_eq!(results, [ok("a"), err("000625"), err("100038"), ok("d")]);
        assert_eq!(sent(&source).len(), 4);
        assert_eq!(source.invalidations.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_unreadable_secret_fails_every_statement_and_sends_none() {
        let source = Scripted {
            unreadable: true,
            ..scripted(|_, _| None)
        };
        let results = run(&source, &["a", "b"]).await;
        assert_eq!(results, [err("configuration"), err("configuration")]);
        assert!(sent(&source).is_empty());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    }
}
