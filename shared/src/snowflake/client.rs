//! The SQL API v2 client: submit, poll, retry idempotently, classify errors.

use std::time::Duration;

use rand::Rng as _;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

use super::Account;
use super::auth::Authenticator;
use super::error::{ApiError, ErrorKind, SnowflakeError};

const USER_AGENT: &str = concat!("tracklayer-snowflake/", env!("CARGO_PKG_VERSION"));
/// Snowflake answers synchronously for ~45 s; a single HTTP exchange never needs longer.
const MAX_REQUEST_TIME: Duration = Duration::from_secs(90);

/// Where statements run: the secret's database, schema, warehouse and role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionContext {
    /// Database (e.g. `TRACKLAYER`).
    pub database: Option<String>,
    /// Schema (e.g. `EVENTS`).
    pub schema: Option<String>,
    /// Warehouse (e.g. `ANALYTICS_WH`).
    pub warehouse: Option<String>,
    /// Role (e.g. `TRACKLAYER_WRITER`).
    pub role: Option<String>,
}

/// How often and how patiently to resubmit after transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total submissions of one statement, the first included.
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
    /// Snowflake-side timeout in seconds (0 = account default).
    pub timeout_secs: u32,
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
            timeout_secs: 0,
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
    #[serde(skip_serializing_if = "is_zero")]
    timeout: u32,
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

fn is_zero(v: &u32) -> bool {
    *v == 0
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

    /// Runs `statement` to completion before `deadline`.
    ///
    /// Transient failures (429, 5xx, dropped connections, request timeouts) are resubmitted
    /// with the same requestId and `retry=true`, with jittered exponential backoff, so a
    /// statement that did run is never run again. 202 answers are polled until done.
    pub async fn execute(
        &self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<QueryResult, SnowflakeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resubmit = statement.resubmission || attempt > 1;
            let outcome = match self.submit(statement, resubmit, deadline).await {
                Ok(Outcome::Running(handle)) => self.poll(&handle, statement, deadline).await,
                Ok(Outcome::Done(answer)) => Ok(answer),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(answer) => {
                    let mut result = self.result_of(answer, deadline).await?;
                    result.attempts = attempt;
                    return Ok(result);
                }
                Err(err)
                    if err.kind() == ErrorKind::Transient && attempt < self.retry.max_attempts =>
                {
                    let pause = self.retry.backoff(attempt);
                    if Instant::now() + pause >= deadline {
                        return Err(err);
                    }
                    tracing::warn!(
                        request_id = %statement.request_id,
                        attempt,
                        error = %err,
                        backoff_ms = pause.as_millis() as u64,
                        "transient Snowflake failure; resubmitting with retry=true"
                    );
                    tokio::time::sleep(pause).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn submit(
        &self,
        statement: &Statement,
        resubmit: bool,
        deadline: Instant,
    ) -> Result<Outcome, SnowflakeError> {
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
            timeout: statement.timeout_secs,
            database: self.session.database.as_deref(),
            schema: self.session.schema.as_deref(),
            warehouse: self.session.warehouse.as_deref(),
            role: self.session.role.as_deref(),
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
            .append_pair("requestId", &statement.request_id.to_string());
        if resubmit {
            url.query_pairs_mut().append_pair("retry", "true");
        }
        let response = self
            .send(self.http.post(url.clone()).body(body), &url, deadline)
            .await?;
        self.read_outcome(response, &url).await
    }

    async fn poll(
        &self,
        handle: &str,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<Answer, SnowflakeError> {
        let url = self.account.url(&format!("/api/v2/statements/{handle}"));
        let mut pause = Duration::from_millis(100);
        loop {
            if Instant::now() + pause >= deadline {
                return Err(SnowflakeError::Deadline {
                    request_id: statement.request_id.to_string(),
                    statement_handle: Some(handle.to_string()),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            let outcome = match self.send(self.http.get(url.clone()), &url, deadline).await {
                Ok(response) => self.read_outcome(response, &url).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Outcome::Done(answer)) => return Ok(answer),
                Ok(Outcome::Running(_)) => {}
                Err(e) if e.kind() == ErrorKind::Transient => {
                    tracing::warn!(statement_handle = handle, error = %e, "polling failed; polling again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &reqwest::Url,
        deadline: Instant,
    ) -> Result<reqwest::Response, SnowflakeError> {
        let bearer = self.auth.bearer()?;
        let remaining = deadline.saturating_duration_since(Instant::now());
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

    async fn read_outcome(
        &self,
        response: reqwest::Response,
        url: &reqwest::Url,
    ) -> Result<Outcome, SnowflakeError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(url, &e))?;
        let answer: Answer =
            serde_json::from_slice(&bytes).map_err(|_| SnowflakeError::Protocol {
                http_status: status.as_u16(),
                detail: format!(
                    "not a SQL API JSON answer: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            })?;
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
            _ => {
                let mut message = answer.message.unwrap_or_default();
                if let Some(after) = retry_after {
                    message.push_str(&format!(" (Retry-After: {after})"));
                }
                Err(SnowflakeError::Api(ApiError {
                    http_status: status.as_u16(),
                    code: answer.code.unwrap_or_default(),
                    sql_state: answer.sql_state.unwrap_or_default(),
                    message,
                    statement_handle: answer.statement_handle,
                }))
            }
        }
    }

    /// Builds the result, fetching any further result partitions.
    async fn result_of(
        &self,
        answer: Answer,
        deadline: Instant,
    ) -> Result<QueryResult, SnowflakeError> {
        let handle = answer.statement_handle.unwrap_or_default();
        let meta = answer.result_set_meta_data.unwrap_or_default();
        let mut rows = answer.data.unwrap_or_default();
        for partition in 1..meta.partition_info.len() {
            let mut url = self.account.url(&format!("/api/v2/statements/{handle}"));
            url.query_pairs_mut()
                .append_pair("partition", &partition.to_string());
            let response = self
                .send(self.http.get(url.clone()), &url, deadline)
                .await?;
            if let Outcome::Done(part) = self.read_outcome(response, &url).await? {
                rows.extend(part.data.unwrap_or_default());
            }
        }
        Ok(QueryResult {
            statement_handle: handle,
            columns: meta.row_type.into_iter().map(|c| c.name).collect(),
            rows,
            rows_inserted: answer.stats.and_then(|s| s.num_rows_inserted),
            attempts: 1,
        })
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
    fn tls_certificate_checks_are_never_disabled() {
        // The crate's only HTTP client is built in this file; look at its code, not its tests.
        let source = include_str!("client.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        for switch in ["danger_accept_invalid", "tls_danger", "dangerous"] {
            assert!(!code.contains(switch), "{switch} in the client");
        }
        assert!(
            code.contains(".https_only("),
            "http is refused unless the URL is loopback http"
        );
    }

    #[test]
    fn statement_size_counts_sql_and_bindings() {
        let s = Statement::new("SELECT ?").bind("abcd");
        assert_eq!(s.size(), 8 + 4);
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
            timeout: 0,
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
            r#"{"statement":"SELECT ?","database":"TRACKLAYER","schema":"EVENTS","role":"R","bindings":{"1":{"type":"TEXT","value":"[1]"}},"parameters":{"timezone":"UTC","query_tag":"ingest"}}"#
        );
    }
}
