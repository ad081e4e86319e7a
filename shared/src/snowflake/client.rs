//! The SQL API v2 client: submit asynchronously, poll the handle, cancel at the deadline, resubmit
//! idempotently only when no handle came back, classify errors.
//!
//! How one statement meets the `deadline` its caller passes (the time by which `execute` returns):
//!
//! - It is submitted with `async=true` (`sqlapi.yaml`: "execute the statement asynchronously and
//!   return the statement handle"), so the POST answers at once with a handle. A resubmission
//!   (same requestId, `retry=true`) happens only when no handle came back (the POST failed in
//!   transport, or answered 429 or 5xx) or when the statement itself failed transiently (000625,
//!   lock contention: it did not run). A running statement is polled, never resubmitted, so what
//!   Snowflake does with `retry=true` while the first execution still runs (undocumented) never
//!   matters.
//! - Every submission carries `timeout` = the whole seconds left before the deadline minus
//!   [`TIMEOUT_MARGIN`] (1 s). Without it Snowflake lets the statement run for
//!   STATEMENT_TIMEOUT_IN_SECONDS (two days by default) after we gave up; `0` would mean the
//!   maximum (604,800 s), so it is never sent.
//! - Polling stops [`CANCEL_RESERVE`] (3 s) before the deadline. A statement still running then
//!   is cancelled (`POST /api/v2/statements/{handle}/cancel`) and its handle read once more: if
//!   it had in fact succeeded that is a success (its rows landed), otherwise the error says it was
//!   cancelled. Snowflake's own `timeout` fires 1-2 s later, after our cancel, and stops the
//!   statement if the cancel was lost. Less than [`MIN_TIME_TO_RUN`] (4 s) left: nothing is sent.
//! - Poll intervals ([`POLL_INTERVALS`]): 100, 150, 250, 400, 600 ms, 1, 1.5, then every 2 s. A
//!   statement of ~1 s (a 1 MB INSERT) costs about five polls and at most ~0.5 s of latency; a
//!   long one about one poll every 2 s. (The official connectors wait 0.5-5 s between status
//!   checks: `ASYNC_RETRY_PATTERN` in snowflake-connector-python's `cursor.py`, "same wait as
//!   JDBC"; our statements are short, so the first polls come sooner.)
//! - Transient failures (429, 5xx, dropped connections) wait for `Retry-After` when Snowflake
//!   sends it, else a jittered exponential backoff, never past the deadline. Result partitions
//!   are fetched with the same retries.

use std::time::{Duration, SystemTime};

use rand::Rng as _;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use super::Account;
use super::auth::Authenticator;
use super::error::{Abandoned, ApiError, ErrorKind, SnowflakeError};
use super::identifier::Identifier;
use super::tables::Table;

const USER_AGENT: &str = concat!("tracklayer-snowflake/", env!("CARGO_PKG_VERSION"));
/// Bound of one HTTP exchange: async submissions and polls answer at once, so this only cuts a
/// stalled connection.
const MAX_REQUEST_TIME: Duration = Duration::from_secs(60);
/// Subtracted from the seconds left when setting a statement's `timeout`.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(1);
/// Polling stops this long before the deadline, to cancel the statement and read it once more.
pub const CANCEL_RESERVE: Duration = Duration::from_secs(3);
/// A statement is not sent with less time than this left: the cancel reserve plus one second.
pub const MIN_TIME_TO_RUN: Duration = Duration::from_secs(4);
/// Waits between polls of a running statement; the last repeats.
pub const POLL_INTERVALS: [Duration; 8] = [
    Duration::from_millis(100),
    Duration::from_millis(150),
    Duration::from_millis(250),
    Duration::from_millis(400),
    Duration::from_millis(600),
    Duration::from_millis(1_000),
    Duration::from_millis(1_500),
    Duration::from_millis(2_000),
];
/// Snowflake's largest statement timeout (`sqlapi.yaml`: "the maximum value (604800 seconds)").
const MAX_TIMEOUT_SECS: u64 = 604_800;

/// Where statements run: the secret's database, schema, warehouse and role, as exact names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionContext {
    /// Database (e.g. `TRACKLAYER`).
    pub database: Option<Identifier>,
    /// Schema (e.g. `EVENTS`).
    pub schema: Option<Identifier>,
    /// Warehouse (e.g. `ANALYTICS_WH`).
    pub warehouse: Option<Identifier>,
    /// Role (e.g. `TRACKLAYER_WRITER`).
    pub role: Option<Identifier>,
}

/// How often and how patiently to resubmit after transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total submissions of one statement, the first included (also the attempts per result
    /// partition).
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, with full jitter.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff before attempt `attempt + 1`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// One SQL statement to run, with its idempotency key.
#[derive(Debug, Clone)]
pub struct Statement {
    /// SQL text with `?` placeholders.
    pub sql: String,
    /// Positional TEXT bindings, `?` number 1, 2, ...
    pub bindings: Vec<String>,
    /// `query_tag`, so query history ties the statement to its invocation and batch.
    pub query_tag: Option<String>,
    /// Snowflake's `requestId`: resubmissions with the same id and `retry=true` never run twice.
    pub request_id: Uuid,
    /// Send `retry=true` from the first submission (the statement may have run before, e.g. a
    /// staged chunk received again after a crash).
    pub resubmission: bool,
    /// The table it writes to, when it is one of ours (named in fixes).
    pub table: Option<Table>,
}

impl Statement {
    /// A statement with a fresh requestId and no bindings.
    pub fn new(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            bindings: Vec::new(),
            query_tag: None,
            request_id: Uuid::new_v4(),
            resubmission: false,
            table: None,
        }
    }

    /// Adds a TEXT binding for the next `?`.
    pub fn bind(mut self, value: impl Into<String>) -> Self {
        self.bindings.push(value.into());
        self
    }

    /// Sets the query tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.query_tag = Some(tag.into());
        self
    }

    /// Derives the requestId from `key` and the statement's exact text and bound values (call it
    /// last): the same statement under the same key always gets the same id, and two different
    /// statements never share one. (Snowflake documents only that a resubmission with the same
    /// id and `retry=true` does not run an already successful statement again; what it does
    /// with another text under that id is undocumented.)
    pub fn keyed(mut self, key: Uuid) -> Self {
        let mut name = Vec::with_capacity(self.size() + 2 * self.bindings.len() + 1);
        name.extend_from_slice(self.sql.as_bytes());
        for value in &self.bindings {
            name.push(0);
            name.extend_from_slice(value.as_bytes());
        }
        self.request_id = Uuid::new_v5(&key, &name);
        self
    }

    /// Bytes Snowflake receives as statement text plus bound values.
    pub fn size(&self) -> usize {
        self.sql.len() + self.bindings.iter().map(String::len).sum::<usize>()
    }
}

/// A finished statement's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Snowflake's statement handle (query id).
    pub statement_handle: String,
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows of values as Snowflake renders them (strings; NULL as `None`).
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows inserted, for DML.
    pub rows_inserted: Option<u64>,
    /// How many HTTP submissions it took (1 = first try).
    pub attempts: u32,
}

impl QueryResult {
    /// The value of `column` (case-insensitive) in row `row`.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let index = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))?;
        self.rows.get(row)?.get(index)?.as_deref()
    }
}

/// Talks to one account's SQL API as one user.
pub struct Client {
    http: reqwest::Client,
    account: Account,
    auth: Authenticator,
    session: SessionContext,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.account.base_url.as_str())
            .field("auth", &self.auth)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SubmitBody<'a> {
    statement: &'a str,
    timeout: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warehouse: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    bindings: std::collections::BTreeMap<String, Binding<'a>>,
    parameters: Parameters<'a>,
}

#[derive(Serialize)]
struct Binding<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
struct Parameters<'a> {
    timezone: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_tag: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    sql_state: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    statement_handle: Option<String>,
    #[serde(default)]
    result_set_meta_data: Option<ResultMeta>,
    #[serde(default)]
    data: Option<Vec<Vec<Option<String>>>>,
    #[serde(default)]
    stats: Option<Stats>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResultMeta {
    #[serde(default)]
    row_type: Vec<ColumnMeta>,
    #[serde(default)]
    partition_info: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ColumnMeta {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Stats {
    #[serde(default)]
    num_rows_inserted: Option<u64>,
}

/// What one HTTP exchange produced.
enum Outcome {
    Done(Answer),
    Running(String),
}

/// The column a DML answer reports its inserted rows in.
const ROWS_INSERTED_COLUMN: &str = "number of rows inserted";

impl Client {
    /// A client for `account` authenticating with `auth`.
    pub fn new(
        account: Account,
        auth: Authenticator,
        session: SessionContext,
        retry: RetryPolicy,
    ) -> Result<Self, SnowflakeError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(50))
            .https_only(account.base_url.scheme() == "https")
            .build()
            .map_err(|e| SnowflakeError::Transport {
                url: account.base_url.to_string(),
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Client {
            http,
            account,
            auth,
            session,
            retry,
        })
    }

    /// The authenticator (its fingerprint is public and shown by connection-test).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The session context statements run in.
    pub fn session(&self) -> &SessionContext {
        &self.session
    }

    /// The HTTP client (its connection pool), for the streaming API on the same account.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// How this client retries.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The account's base URL.
    pub fn base_url(&self) -> &reqwest::Url {
        &self.account.base_url
    }

    /// Reaches the account host without credentials: any HTTP answer proves that the name
    /// resolves and TLS (when https) works. Returns the HTTP status.
    pub async fn probe(&self, deadline: Instant) -> Result<u16, SnowflakeError> {
        let url = self.account.url("/");
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.http
            .get(url.clone())
            .timeout(remaining.clamp(Duration::from_millis(1), Duration::from_secs(15)))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| transport_error(&url, &e))
    }

    /// Runs `statement` to completion before `deadline` (see the module's documentation for
    /// timeouts, polling, cancelling and retries).
    pub async fn execute(
        &self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<QueryResult, SnowflakeError> {
        self.run(statement, deadline).await.map_err(|e| match e {
            SnowflakeError::Api(mut api) => {
                api.session = self.session.clone();
                api.table = statement.table;
                SnowflakeError::Api(api)
            }
            other => other,
        })
    }

    async fn run(
        &self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<QueryResult, SnowflakeError> {
        let last_submission = deadline.checked_sub(MIN_TIME_TO_RUN);
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            let resubmit = statement.resubmission || attempt > 1;
            match self.submit(statement, resubmit, deadline).await {
                Ok(Outcome::Done(answer)) => break answer,
                // A statement that failed transiently (000625: lock contention) is done and
                // did not run: it is submitted again like a submission that failed.
                Ok(Outcome::Running(handle)) => {
                    match self.follow(&handle, statement, deadline).await {
                        Ok(answer) => break answer,
                        Err(err) => {
                            let until = last_submission.unwrap_or_else(Instant::now);
                            self.wait_to_retry(err, attempt, until, statement, true)
                                .await?;
                        }
                    }
                }
                Err(err) => {
                    let until = last_submission.unwrap_or_else(Instant::now);
                    self.wait_to_retry(err, attempt, until, statement, true)
                        .await?;
                }
            }
        };
        let mut result = self
            .result_of(answer, poll_stop(deadline), statement)
            .await?;
        result.attempts = attempt;
        Ok(result)
    }

    /// After a failure of attempt `attempt` (of a submission, else of a partition fetch): waits
    /// `Retry-After` (or a backoff) when the failure is transient, attempts are left and the
    /// wait ends before `until`; else returns it.
    async fn wait_to_retry(
        &self,
        err: SnowflakeError,
        attempt: u32,
        until: Instant,
        statement: &Statement,
        submission: bool,
    ) -> Result<(), SnowflakeError> {
        if err.kind() != ErrorKind::Transient || attempt >= self.retry.max_attempts {
            return Err(err);
        }
        let pause = err
            .retry_after()
            .unwrap_or_else(|| self.retry.backoff(attempt));
        if Instant::now() + pause >= until {
            return Err(err);
        }
        let wait_ms = pause.as_millis() as u64;
        let request_id = statement.request_id.to_string();
        if submission {
            tracing::warn!(request_id, attempt, error = %err, wait_ms, "transient Snowflake failure; resubmitting with retry=true");
        } else {
            tracing::warn!(request_id, attempt, error = %err, wait_ms, "transient Snowflake failure; fetching the result partition again");
        }
        tokio::time::sleep(pause).await;
        Ok(())
    }

    async fn submit(
        &self,
        statement: &Statement,
        resubmit: bool,
        deadline: Instant,
    ) -> Result<Outcome, SnowflakeError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < MIN_TIME_TO_RUN {
            return Err(SnowflakeError::Deadline {
                request_id: statement.request_id.to_string(),
                statement_handle: None,
                outcome: Abandoned::NotSent,
            });
        }
        let bindings = statement
            .bindings
            .iter()
            .enumerate()
            .map(|(i, value)| {
                (
                    (i + 1).to_string(),
                    Binding {
                        kind: "TEXT",
                        value,
                    },
                )
            })
            .collect();
        let body = SubmitBody {
            statement: &statement.sql,
            timeout: statement_timeout(left),
            database: self.session.database.as_ref().map(Identifier::as_str),
            schema: self.session.schema.as_ref().map(Identifier::as_str),
            warehouse: self.session.warehouse.as_ref().map(Identifier::as_str),
            role: self.session.role.as_ref().map(Identifier::as_str),
            bindings,
            parameters: Parameters {
                timezone: "UTC",
                query_tag: statement.query_tag.as_deref(),
            },
        };
        let body = serde_json::to_vec(&body).map_err(|e| SnowflakeError::Protocol {
            http_status: 0,
            detail: format!("cannot encode the request: {e}"),
        })?;
        let mut url = self.account.url("/api/v2/statements");
        url.query_pairs_mut()
            .append_pair("requestId", &statement.request_id.to_string())
            .append_pair("async", "true");
        if resubmit {
            url.query_pairs_mut().append_pair("retry", "true");
        }
        let response = self
            .send(
                self.http.post(url.clone()).body(body),
                &url,
                poll_stop(deadline),
            )
            .await?;
        read_outcome(response, &url).await
    }

    /// Polls a running statement until it answers; at the poll stop, cancels it.
    async fn follow(
        &self,
        handle: &str,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<Answer, SnowflakeError> {
        let stop = poll_stop(deadline);
        let url = self.account.url(&format!("/api/v2/statements/{handle}"));
        let mut intervals = POLL_INTERVALS
            .iter()
            .copied()
            .chain(std::iter::repeat(POLL_INTERVALS[POLL_INTERVALS.len() - 1]));
        let mut wait = intervals.next().unwrap_or_default();
        while Instant::now() < stop {
            tokio::time::sleep_until((Instant::now() + wait).min(stop)).await;
            let next = intervals.next().unwrap_or_default();
            let outcome = match self.send(self.http.get(url.clone()), &url, stop).await {
                Ok(response) => read_outcome(response, &url).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Outcome::Done(answer)) => return Ok(answer),
                Ok(Outcome::Running(_)) => wait = next,
                // A 422 is the statement's own final answer, even when transient: polling again
                // would only read it again.
                Err(e) if e.kind() == ErrorKind::Transient && !is_statement_failure(&e) => {
                    tracing::warn!(statement_handle = handle, error = %e, "polling failed; polling again");
                    wait = next.max(e.retry_after().unwrap_or_default());
                }
                Err(e) => return Err(e),
            }
        }
        self.cancel(handle, statement, deadline).await
    }

    /// Cancels a statement our deadline caught, then reads its handle once more: a statement
    /// that had in fact succeeded is a success.
    async fn cancel(
        &self,
        handle: &str,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<Answer, SnowflakeError> {
        let abandoned = |outcome| SnowflakeError::Deadline {
            request_id: statement.request_id.to_string(),
            statement_handle: Some(handle.to_string()),
            outcome,
        };
        let cancel_url = self
            .account
            .url(&format!("/api/v2/statements/{handle}/cancel"));
        let cancelled = match self
            .send(self.http.post(cancel_url.clone()), &cancel_url, deadline)
            .await
        {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("the cancel answered HTTP {}", response.status())),
            Err(e) => Err(e.to_string()),
        };
        tracing::warn!(
            statement_handle = handle,
            request_id = %statement.request_id,
            cancel = ?cancelled,
            "the deadline came before the statement finished; cancelling it"
        );
        let url = self.account.url(&format!("/api/v2/statements/{handle}"));
        let read = match self.send(self.http.get(url.clone()), &url, deadline).await {
            Ok(response) => read_outcome(response, &url).await,
            Err(e) => Err(e),
        };
        match (read, cancelled) {
            (Ok(Outcome::Done(answer)), _) => Ok(answer),
            (Err(SnowflakeError::Api(api)), _) if api.code == "000604" => {
                Err(abandoned(Abandoned::Cancelled))
            }
            (Err(e @ SnowflakeError::Api(_)), _) if e.kind() != ErrorKind::Transient => Err(e),
            (Ok(Outcome::Running(_)), Ok(())) => Err(abandoned(Abandoned::StillRunning)),
            (Ok(Outcome::Running(_)), Err(cancel)) => Err(abandoned(Abandoned::CancelFailed(
                format!("{cancel}; it still ran when read again"),
            ))),
            (Err(e), _) => Err(abandoned(Abandoned::CancelFailed(format!(
                "reading it after the cancel failed: {e}"
            )))),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &reqwest::Url,
        until: Instant,
    ) -> Result<reqwest::Response, SnowflakeError> {
        let bearer = self.auth.bearer()?;
        let remaining = until.saturating_duration_since(Instant::now());
        request
            .timeout(remaining.clamp(Duration::from_millis(1), MAX_REQUEST_TIME))
            .header("Authorization", format!("Bearer {}", bearer.token))
            .header("X-Snowflake-Authorization-Token-Type", bearer.token_type)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| transport_error(url, &e))
    }

    /// Builds the result, fetching any further result partitions (each with retries).
    async fn result_of(
        &self,
        answer: Answer,
        until: Instant,
        statement: &Statement,
    ) -> Result<QueryResult, SnowflakeError> {
        let handle = answer.statement_handle.unwrap_or_default();
        let meta = answer.result_set_meta_data.unwrap_or_default();
        let columns: Vec<String> = meta.row_type.into_iter().map(|c| c.name).collect();
        let mut rows = answer.data.unwrap_or_default();
        for partition in 1..meta.partition_info.len() {
            let mut url = self.account.url(&format!("/api/v2/statements/{handle}"));
            url.query_pairs_mut()
                .append_pair("partition", &partition.to_string());
            let mut attempt = 0;
            let part = loop {
                attempt += 1;
                let outcome = match self.send(self.http.get(url.clone()), &url, until).await {
                    Ok(response) => read_outcome(response, &url).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(Outcome::Done(part)) => break part,
                    Ok(Outcome::Running(_)) => {
                        return Err(SnowflakeError::Protocol {
                            http_status: 202,
                            detail: format!(
                                "partition {partition} of a finished statement answered 202"
                            ),
                        });
                    }
                    Err(e) => {
                        self.wait_to_retry(e, attempt, until, statement, false)
                            .await?
                    }
                }
            };
            rows.extend(part.data.unwrap_or_default());
        }
        let stats = answer.stats.and_then(|s| s.num_rows_inserted);
        Ok(QueryResult {
            statement_handle: handle,
            rows_inserted: stats.or_else(|| rows_inserted_column(&columns, &rows)),
            columns,
            rows,
            attempts: 1,
        })
    }
}

/// Whether `e` is a statement's final failure (`sqlapi.yaml`: 422, "An error occurred when
/// executing the statement") rather than a failure to reach it.
fn is_statement_failure(e: &SnowflakeError) -> bool {
    matches!(e, SnowflakeError::Api(api) if api.http_status == 422)
}

/// When polling stops for a statement due by `deadline`.
fn poll_stop(deadline: Instant) -> Instant {
    deadline
        .checked_sub(CANCEL_RESERVE)
        .unwrap_or_else(Instant::now)
}

/// The `timeout` to send with `left` before the deadline (always at least 1: 0 means the maximum).
fn statement_timeout(left: Duration) -> u64 {
    left.saturating_sub(TIMEOUT_MARGIN)
        .as_secs()
        .clamp(1, MAX_TIMEOUT_SECS)
}

/// Rows inserted as the result's `number of rows inserted` column says, for answers without
/// `stats` (`sqlapi.yaml`: "these stats might not be available for each request").
fn rows_inserted_column(columns: &[String], rows: &[Vec<Option<String>>]) -> Option<u64> {
    let index = columns
        .iter()
        .position(|c| c.eq_ignore_ascii_case(ROWS_INSERTED_COLUMN))?;
    rows.first()?.get(index)?.as_deref()?.parse().ok()
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP-date (RFC 9110 10.2.3).
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some(Duration::try_from(at - time::OffsetDateTime::from(now)).unwrap_or(Duration::ZERO))
}

async fn read_outcome(
    response: reqwest::Response,
    url: &reqwest::Url,
) -> Result<Outcome, SnowflakeError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(url, &e))?;
    let excerpt = || String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    let answer: Answer = match serde_json::from_slice(&bytes) {
        Ok(answer) => answer,
        Err(_) if status.is_success() => {
            return Err(SnowflakeError::Protocol {
                http_status: status.as_u16(),
                detail: format!("not a SQL API JSON answer: {}", excerpt()),
            });
        }
        // A proxy, load balancer or WAF answered: classified by its status alone.
        Err(_) => {
            return Err(SnowflakeError::from(ApiError {
                http_status: status.as_u16(),
                message: format!("answer without a SQL API body: {}", excerpt()),
                retry_after,
                ..ApiError::default()
            }));
        }
    };
    match status {
        StatusCode::OK => Ok(Outcome::Done(answer)),
        StatusCode::ACCEPTED => {
            let handle = answer
                .statement_handle
                .ok_or_else(|| SnowflakeError::Protocol {
                    http_status: 202,
                    detail: "202 without statementHandle".into(),
                })?;
            Ok(Outcome::Running(handle))
        }
        _ => Err(SnowflakeError::from(ApiError {
            http_status: status.as_u16(),
            code: answer.code.unwrap_or_default(),
            sql_state: answer.sql_state.unwrap_or_default(),
            message: answer.message.unwrap_or_default(),
            statement_handle: answer.statement_handle,
            retry_after,
            ..ApiError::default()
        })),
    }
}

fn transport_error(url: &reqwest::Url, e: &reqwest::Error) -> SnowflakeError {
    use std::error::Error as _;
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    let mut url = url.clone();
    url.set_query(None);
    SnowflakeError::Transport {
        url: url.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let later = policy.backoff(8);
            assert!(later >= Duration::from_millis(500) && later <= Duration::from_millis(1_000));
        }
    }

    #[test]
    fn statement_size_counts_sql_and_bindings() {
        let s = Statement::new("SELECT ?").bind("abcd");
        assert_eq!(s.size(), 8 + 4);
    }

    #[test]
    fn request_id_is_never_shared_by_two_statement_texts() {
        let key = Uuid::from_u128(7);
        let keyed = |sql: &str, value: &str, key| Statement::new(sql).bind(value).keyed(key);
        let plain = keyed("INSERT INTO T SELECT ?", "[1]", key);
        let again = keyed("INSERT INTO T SELECT ?", "[1]", key);
        let other_sql = keyed(
            "INSERT INTO T SELECT ? WHERE NOT EXISTS (SELECT 1)",
            "[1]",
            key,
        );
        let other_value = keyed("INSERT INTO T SELECT ?", "[2]", key);
        let other_key = keyed("INSERT INTO T SELECT ?", "[1]", Uuid::from_u128(8));
        assert_eq!(plain.request_id, again.request_id);
        for other in [&other_sql, &other_value, &other_key] {
            assert_ne!(plain.request_id, other.request_id, "{}", other.sql);
        }
        // A binding boundary cannot be moved without changing the id.
        let split = Statement::new("S").bind("ab").bind("c").keyed(key);
        let moved = Statement::new("S").bind("a").bind("bc").keyed(key);
        assert_ne!(split.request_id, moved.request_id);
    }

    #[test]
    fn timeout_is_the_seconds_left_minus_the_margin_and_never_zero() {
        assert_eq!(statement_timeout(Duration::from_millis(58_900)), 57);
        assert_eq!(statement_timeout(Duration::from_secs(60)), 59);
        assert_eq!(statement_timeout(MIN_TIME_TO_RUN), 3);
        assert_eq!(statement_timeout(Duration::from_millis(500)), 1);
        assert_eq!(
            statement_timeout(Duration::from_secs(10_000_000)),
            MAX_TIMEOUT_SECS
        );
    }

    #[test]
    fn snowflakes_own_timeout_fires_after_our_cancel() {
        // Submitted with `left` to go: Snowflake stops the statement at the earliest
        // `left - timeout` before the deadline, which must leave polling (which stops
        // CANCEL_RESERVE before the deadline) time to cancel first.
        for millis in (MIN_TIME_TO_RUN.as_millis() as u64..120_000).step_by(137) {
            let left = Duration::from_millis(millis);
            let stops_at_latest = left - Duration::from_secs(statement_timeout(left));
            assert!(stops_at_latest >= TIMEOUT_MARGIN, "{left:?}");
            assert!(
                stops_at_latest < CANCEL_RESERVE,
                "{left:?}: our cancel comes first"
            );
        }
    }

    #[test]
    fn rows_inserted_fall_back_to_the_result_column() {
        let columns = vec!["number of rows inserted".to_string()];
        let rows = vec![vec![Some("42".to_string())]];
        assert_eq!(rows_inserted_column(&columns, &rows), Some(42));
        assert_eq!(rows_inserted_column(&["status".into()], &rows), None);
        assert_eq!(rows_inserted_column(&columns, &[]), None);
        assert_eq!(rows_inserted_column(&columns, &[vec![None]]), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        // 2015-10-21T07:28:00Z is 10 s after `now`.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    /// Answers that no local service gives (bodies that are not JSON, several result
    /// partitions), served in order by a loopback stub; records each request's line and body.
    struct Stub {
        url: String,
        requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Stub {
        fn serve(answers: Vec<(u16, &'static str, &'static str, &'static str)>) -> Stub {
            use std::io::{BufRead, BufReader, Read, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let seen = requests.clone();
            std::thread::spawn(move || {
                for (status, headers, content_type, body) in answers {
                    let (stream, _) = listener.accept().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut sent = vec![0; length];
                    reader.read_exact(&mut sent).unwrap();
                    seen.lock().unwrap().push(format!(
                        "{} {}",
                        line.trim(),
                        String::from_utf8_lossy(&sent)
                    ));
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\n{headers}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    reader.get_mut().write_all(answer.as_bytes()).unwrap();
                }
            });
            Stub { url, requests }
        }

        fn client(&self) -> Client {
            let account = Account::new("localtest", Some(&self.url)).unwrap();
            let auth = Authenticator::new(
                "LOCALTEST",
                "U",
                super::super::auth::Credentials::Token("t".into()),
            );
            let retry = RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            };
            Client::new(account, auth, SessionContext::default(), retry).unwrap()
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn answers_without_json_are_classified_by_status_and_partitions_are_retried() {
        let stub = Stub::serve(vec![
            (
                429,
                "Retry-After: 1\r\n",
                "text/html",
                "<html>slow down</html>",
            ),
            (
                202,
                "",
                "application/json",
                r#"{"code":"333334","statementHandle":"h1"}"#,
            ),
            (
                200,
                "",
                "application/json",
                r#"{"statementHandle":"h1","resultSetMetaData":{"rowType":[{"name":"number of rows inserted"}],"partitionInfo":[{"rowCount":1},{"rowCount":1}]},"data":[["3"]]}"#,
            ),
            (503, "", "text/html", "<html>unavailable</html>"),
            (200, "", "application/json", r#"{"data":[["4"]]}"#),
        ]);
        let started = Instant::now();
        let result = stub
            .client()
            .execute(
                &Statement::new("INSERT 1"),
                started + Duration::from_secs(30),
            )
            .await
            .unwrap();
        let waited = started.elapsed();
        assert_eq!(result.attempts, 2, "the 429 was retried");
        assert!(
            waited >= Duration::from_secs(1),
            "Retry-After: 1 was waited: {waited:?}"
        );
        assert_eq!(
            result.rows,
            vec![vec![Some("3".to_string())], vec![Some("4".to_string())]]
        );
        assert_eq!(
            result.rows_inserted,
            Some(3),
            "read from the result: no stats"
        );
        let requests = stub.requests();
        assert_eq!(requests.len(), 5, "{requests:#?}");
        assert!(
            requests[0].starts_with("POST /api/v2/statements?requestId="),
            "{}",
            requests[0]
        );
        assert!(
            requests[0].contains("&async=true HTTP/1.1"),
            "{}",
            requests[0]
        );
        assert!(
            requests[1].contains("&async=true&retry=true HTTP/1.1"),
            "{}",
            requests[1]
        );
        let body: serde_json::Value =
            serde_json::from_str(requests[0].split_once(" HTTP/1.1 ").unwrap().1).unwrap();
        let timeout = body["timeout"].as_u64().unwrap();
        assert!((27..=29).contains(&timeout), "{body}");
        assert!(
            requests[2].starts_with("GET /api/v2/statements/h1 HTTP/1.1"),
            "{}",
            requests[2]
        );
        for request in &requests[3..] {
            assert!(
                request.starts_with("GET /api/v2/statements/h1?partition=1 "),
                "{request}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_forbidden_answer_without_json_stops_without_retrying() {
        let stub = Stub::serve(vec![(
            403,
            "",
            "text/html",
            "<html>Forbidden by the proxy</html>",
        )]);
        let error = stub
            .client()
            .execute(
                &Statement::new("SELECT 1"),
                Instant::now() + Duration::from_secs(30),
            )
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Authentication, "{error}");
        assert!(
            error.to_string().contains("Forbidden by the proxy"),
            "{error}"
        );
        assert_eq!(stub.requests().len(), 1);
    }

    #[test]
    fn submit_body_matches_sql_api_shape() {
        let mut bindings = std::collections::BTreeMap::new();
        bindings.insert(
            "1".to_string(),
            Binding {
                kind: "TEXT",
                value: "[1]",
            },
        );
        let body = SubmitBody {
            statement: "SELECT ?",
            timeout: 57,
            database: Some("TRACKLAYER"),
            schema: Some("EVENTS"),
            warehouse: None,
            role: Some("R"),
            bindings,
            parameters: Parameters {
                timezone: "UTC",
                query_tag: Some("ingest"),
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"statement":"SELECT ?","timeout":57,"database":"TRACKLAYER","schema":"EVENTS","role":"R","bindings":{"1":{"type":"TEXT","value":"[1]"}},"parameters":{"timezone":"UTC","query_tag":"ingest"}}"#
        );
    }
}
