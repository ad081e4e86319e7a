//! Snowpipe Streaming's REST API (the high-performance architecture, `/v2/streaming/...`): the
//! ingest host, the scoped token, and the channel calls (open, append rows, bulk status).
//!
//! The facts and their sources are in the team's notes (`../shared/notes/snowpipe-streaming.md`,
//! section numbers below); none was tried against a real account. Where sources disagree the
//! client accepts each documented form:
//!
//! - The ingest host (`GET /v2/streaming/hostname`, §2) comes back as plain text from every
//!   real client's account, JSON `{"hostname"}` in the docs: both are read. `_` becomes `-` and
//!   the host is lower-cased (the tutorial's known issue; Snowflake's own openflow client).
//! - The scoped token (`POST /oauth/token`, §1) is exchanged with the key-pair JWT as Bearer,
//!   scope `<ingest host> session:role:<ROLE>` (redpanda-data/connect reports the role scope
//!   working live). The answer is a raw JWT in practice and `{"token"}` in the docs: both are
//!   read, and a bare JSON string too. It is exchanged again 5 minutes before its `exp`, and
//!   once after a 401.
//! - Error bodies carry `code` (docs), `error_code` (a live account, per redpanda), or are a bare
//!   JSON string (a 503); all three are read into an [`ApiError`] whose `code` is that string.
//! - Every call sends `Accept: application/json` (a live account answers 391902 without it).
//!
//! A PAT cannot be exchanged for a scoped token here: raw-REST PAT use is only in third-party
//! samples (unconfirmed), so [`StreamingClient::new`] refuses a PAT-only client.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;
use uuid::Uuid;

use super::auth::Credentials;
use super::client::{Client, RetryPolicy, SessionContext};
use super::error::{ApiError, SnowflakeError};
use super::identifier::Identifier;
use super::tables::Table;

/// The cap on one append's body as sent (after compression), §4: "4 MB", read as decimal.
pub const MAX_APPEND_BYTES: usize = 4_000_000;

/// A scoped token is exchanged again when less than this is left before its `exp`.
const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(300);
/// Lifetime assumed for a token whose `exp` cannot be read (§1: about an hour; openflow
/// refreshes after 54 minutes, redpanda assumes 55).
const TOKEN_ASSUMED_LIFETIME: Duration = Duration::from_secs(50 * 60);

/// What opening a channel answered (§3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedChannel {
    /// The token the first append must carry.
    pub continuation: String,
    /// The last offset token Snowflake committed for the channel (`None` for a new channel).
    pub committed: Option<String>,
    /// `rows_error_count` so far (cumulative, never reset, §5).
    pub rows_errors: u64,
}

/// One channel's bulk status (§5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ChannelStatus {
    /// `SUCCESS` when healthy (the docs' example says `ACTIVE`; both are healthy here), else the
    /// code that invalidated the channel.
    #[serde(default)]
    pub channel_status_code: String,
    /// The last offset token committed.
    #[serde(default)]
    pub last_committed_offset_token: Option<String>,
    /// Rows refused so far, as `rows_error_count` (open's name, and what redpanda and artie
    /// read from bulk status)...
    #[serde(default)]
    pub rows_error_count: Option<u64>,
    /// ...or `rows_errors` (the docs' name in bulk status); see [`ChannelStatus::errors`].
    #[serde(default)]
    pub rows_errors: Option<u64>,
    /// The latest refusal's message.
    #[serde(default)]
    pub last_error_message: Option<String>,
}

impl ChannelStatus {
    /// Rows the pipe refused so far (cumulative, never reset, §5), under either name.
    pub fn errors(&self) -> u64 {
        self.rows_error_count.or(self.rows_errors).unwrap_or(0)
    }

    /// Whether the channel takes appends.
    pub fn is_healthy(&self) -> bool {
        matches!(self.channel_status_code.as_str(), "SUCCESS" | "ACTIVE")
    }
}

/// Whether an answer's code means the channel must be reopened and the rows after its committed
/// offset token appended again (§6: the error-handling page's reopen list; a stale continuation
/// token after another writer opened the channel).
pub fn requires_reopen(error: &SnowflakeError) -> bool {
    let SnowflakeError::Api(api) = error else {
        return false;
    };
    matches!(
        api.code.as_str(),
        "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER"
            | "ERR_CHANNEL_HAS_INVALID_CLIENT_SEQUENCER"
            | "ERR_CHANNEL_MUST_BE_REOPENED"
            | "ERR_CHANNEL_MUST_BE_REOPENED_DUE_TO_ROW_SEQ_GAP"
            | "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED"
            | "STALE_CONTINUATION_TOKEN_SEQUENCER"
            | "STALE_PIPE_CACHE"
    )
}

/// An offset token as a number: ours are decimal counters; a missing or foreign token counts
/// as 0.
pub fn offset_number(token: Option<&str>) -> u64 {
    token.and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

/// The streaming API of one account, as the SQL API client's user and role.
pub struct StreamingClient {
    sql: Arc<Client>,
    http: reqwest::Client,
    retry: RetryPolicy,
    /// The ingest host's base URL, once discovered.
    host: Mutex<Option<Url>>,
    /// The scoped token and when to exchange it again.
    token: Mutex<Option<(String, SystemTime)>>,
}

impl std::fmt::Debug for StreamingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingClient")
            .field("account", &self.sql.base_url().as_str())
            .field("host", &self.host.lock().ok().and_then(|h| h.clone()))
            .finish_non_exhaustive()
    }
}

/// Which host and credential a call uses (§1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plane {
    /// The account host, with the key-pair JWT.
    Control,
    /// The ingest host, with the scoped token.
    Data,
}

impl Plane {
    /// `X-Snowflake-Authorization-Token-Type` for the plane's credential.
    fn token_type(self) -> &'static str {
        match self {
            Plane::Control => "KEYPAIR_JWT",
            Plane::Data => "OAUTH",
        }
    }
}

/// The names a channel lives under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName {
    /// The table's default pipe (`<TABLE>-STREAMING`, §7).
    pub table: Table,
    /// The channel.
    pub channel: String,
}

impl StreamingClient {
    /// A streaming client over the SQL API client's account, key and session. A PAT-only
    /// client is refused: the scoped-token exchange takes a key-pair JWT.
    pub fn new(sql: Arc<Client>) -> Result<Self, SnowflakeError> {
        if matches!(sql.authenticator().credentials(), Credentials::Token(_)) {
            return Err(SnowflakeError::Setup(Arc::new(PatRefused)));
        }
        if sql.session().database.is_none() || sql.session().schema.is_none() {
            return Err(SnowflakeError::Setup(Arc::new(NoNamespace)));
        }
        Ok(StreamingClient {
            http: sql.http().clone(),
            retry: sql.retry_policy(),
            sql,
            host: Mutex::new(None),
            token: Mutex::new(None),
        })
    }

    /// The session (database, schema, role) the channels live in.
    pub fn session(&self) -> &SessionContext {
        self.sql.session()
    }

    /// Opens (or reopens, fencing any other writer, §3) a channel on the table's default pipe.
    pub async fn open(
        &self,
        name: &ChannelName,
        deadline: Instant,
    ) -> Result<OpenedChannel, SnowflakeError> {
        #[derive(Deserialize)]
        struct Opened {
            next_continuation_token: String,
            #[serde(default)]
            channel_status: ChannelStatus,
        }
        let request_id = Uuid::new_v4().to_string();
        let answer: Opened = self
            .data_call(deadline, name.table, |host| {
                let mut url = self.channel_url(host, name, false);
                url.query_pairs_mut().append_pair("requestId", &request_id);
                self.http
                    .put(url)
                    .header("Content-Type", "application/json")
                    .body(r#"{"fail_on_uncommitted_rows":false}"#)
            })
            .await?;
        let status = answer.channel_status;
        if !status.is_healthy() && !status.channel_status_code.is_empty() {
            return Err(self.api_error(
                200,
                status.channel_status_code.clone(),
                format!(
                    "the channel opened with status {}",
                    status.channel_status_code
                ),
                name.table,
            ));
        }
        Ok(OpenedChannel {
            continuation: answer.next_continuation_token,
            rows_errors: status.errors(),
            committed: status.last_committed_offset_token,
        })
    }

    /// Appends NDJSON `rows` (gzip-compressed here) as the batch ending at `offset_token`;
    /// returns the next continuation token. The same `request_id` goes with every retry of
    /// the same rows (§4, best practices).
    pub async fn append(
        &self,
        name: &ChannelName,
        continuation: &str,
        offset_token: &str,
        request_id: Uuid,
        gzipped_rows: &[u8],
        deadline: Instant,
    ) -> Result<String, SnowflakeError> {
        #[derive(Deserialize)]
        struct Appended {
            next_continuation_token: String,
        }
        let request_id = request_id.to_string();
        let answer: Appended = self
            .data_call(deadline, name.table, |host| {
                let mut url = self.channel_url(host, name, true);
                url.query_pairs_mut()
                    .append_pair("continuationToken", continuation)
                    .append_pair("offsetToken", offset_token)
                    .append_pair("requestId", &request_id);
                self.http
                    .post(url)
                    .header("Content-Type", "application/x-ndjson")
                    .header("Content-Encoding", "gzip")
                    .body(gzipped_rows.to_vec())
            })
            .await?;
        Ok(answer.next_continuation_token)
    }

    /// The statuses of `channels` on the table's default pipe; unknown channels are absent.
    pub async fn status(
        &self,
        table: Table,
        channels: &[&str],
        deadline: Instant,
    ) -> Result<std::collections::HashMap<String, ChannelStatus>, SnowflakeError> {
        #[derive(Deserialize)]
        struct Statuses {
            #[serde(default)]
            channel_statuses: std::collections::HashMap<String, ChannelStatus>,
        }
        let body = serde_json::json!({ "channel_names": channels }).to_string();
        let answer: Statuses = self
            .data_call(deadline, table, |host| {
                let url = self.pipe_url(host, table, false, ":bulk-channel-status");
                self.http
                    .post(url)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
            })
            .await?;
        Ok(answer.channel_statuses)
    }

    /// `<ingest host>/v2/streaming[/data]/databases/{db}/schemas/{schema}/pipes/{pipe}`.
    /// `suffix` follows the pipe's name (`:bulk-channel-status`).
    fn pipe_url(&self, host: &Url, table: Table, data: bool, suffix: &str) -> Url {
        let session = self.session();
        let mut url = host.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .expect("an http(s) URL has path segments");
            segments.clear().push("v2").push("streaming");
            if data {
                segments.push("data");
            }
            segments
                .push("databases")
                .push(&uri_name(session.database.as_ref()))
                .push("schemas")
                .push(&uri_name(session.schema.as_ref()))
                .push("pipes")
                .push(&format!("{}-STREAMING{suffix}", table.name()));
        }
        url
    }

    fn channel_url(&self, host: &Url, name: &ChannelName, rows: bool) -> Url {
        let mut url = self.pipe_url(host, name.table, rows, "");
        {
            let mut segments = url
                .path_segments_mut()
                .expect("an http(s) URL has path segments");
            segments.push("channels").push(&name.channel);
            if rows {
                segments.push("rows");
            }
        }
        url
    }

    /// One data-plane call with the scoped token, its 2xx body read as JSON (an empty body as
    /// `{}`). `build` gets the ingest host.
    async fn data_call<T: serde::de::DeserializeOwned>(
        &self,
        deadline: Instant,
        table: Table,
        build: impl Fn(&Url) -> reqwest::RequestBuilder,
    ) -> Result<T, SnowflakeError> {
        let (status, text) = self.exchange(Plane::Data, deadline, table, build).await?;
        let text = if text.trim().is_empty() { "{}" } else { &text };
        serde_json::from_str(text).map_err(|e| SnowflakeError::Protocol {
            http_status: status,
            detail: format!("unreadable streaming answer ({e}): {}", clip(text)),
        })
    }

    /// One call on `plane`, retried with backoff on 429, 5xx and lost connections (§6:
    /// Snowflake's own client retries 408, 429, 499 and every 5xx), the credential renewed once
    /// after a 401 (data plane: the scoped token exchanged again; control plane: the JWT signed
    /// again). Returns the 2xx status and body. `build` gets the plane's base URL; the credential,
    /// its token type and `Accept: application/json` are added here, on every call (§1).
    async fn exchange(
        &self,
        plane: Plane,
        deadline: Instant,
        table: Table,
        build: impl Fn(&Url) -> reqwest::RequestBuilder,
    ) -> Result<(u16, String), SnowflakeError> {
        let mut renewed = false;
        let mut attempt = 0;
        'call: loop {
            attempt += 1;
            let (base, credential) = match plane {
                Plane::Control => (
                    self.sql.base_url().clone(),
                    self.sql.authenticator().bearer()?.token,
                ),
                Plane::Data => {
                    // Boxed: finding the host and the token are control-plane exchanges.
                    let host = Box::pin(self.host(deadline)).await?;
                    let token = Box::pin(self.token(&host, deadline)).await?;
                    (host, token)
                }
            };
            let request = build(&base)
                .bearer_auth(&credential)
                .header("X-Snowflake-Authorization-Token-Type", plane.token_type())
                .header("Accept", "application/json");
            let url = request
                .try_clone()
                .and_then(|r| r.build().ok())
                .map(|r| r.url().to_string())
                .unwrap_or_default();
            let error = match tokio::time::timeout_at(deadline, request.send()).await {
                Err(_) => {
                    return Err(SnowflakeError::Transport {
                        url,
                        detail: "no answer before the deadline".into(),
                    });
                }
                Ok(Err(e)) => SnowflakeError::Transport {
                    url,
                    detail: e.to_string(),
                },
                Ok(Ok(response)) => 'answer: {
                    let status = response.status().as_u16();
                    // A connection lost while the body was read is a lost answer, not an empty one.
                    let text = match response.text().await {
                        Ok(text) => text,
                        Err(e) => {
                            break 'answer SnowflakeError::Transport {
                                url,
                                detail: format!("the answer was cut off: {e}"),
                            };
                        }
                    };
                    if (200..300).contains(&status) {
                        return Ok((status, text));
                    }
                    let error = self.error_of(status, &text, table);
                    if status == 401 && !renewed {
                        renewed = true;
                        if plane == Plane::Data {
                            *self.token.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        }
                        self.sql.authenticator().invalidate();
                        continue 'call;
                    }
                    if !matches!(status, 408 | 429 | 499 | 500..=599) {
                        return Err(error);
                    }
                    error
                }
            };
            let wait = self.retry.backoff(attempt);
            if attempt >= self.retry.max_attempts || Instant::now() + wait >= deadline {
                return Err(error);
            }
            tracing::warn!(%error, attempt, "streaming call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// The ingest host (connection-test's first streaming check).
    pub async fn ingest_host(&self, deadline: Instant) -> Result<Url, SnowflakeError> {
        self.host(deadline).await
    }

    /// Exchanges the key-pair JWT for the scoped token, or keeps the one held (connection-test's
    /// second streaming check; the token itself never leaves this client).
    pub async fn authorize(&self, deadline: Instant) -> Result<(), SnowflakeError> {
        let host = self.host(deadline).await?;
        self.token(&host, deadline).await.map(|_| ())
    }

    /// The ingest host, discovered once (§2).
    async fn host(&self, deadline: Instant) -> Result<Url, SnowflakeError> {
        if let Some(host) = self.host.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(host);
        }
        let mut url = self.sql.base_url().clone();
        url.set_path("/v2/streaming/hostname");
        let text = self
            .control_call(deadline, || self.http.get(url.clone()))
            .await?;
        let name = field_or_text(&text, "hostname")
            .trim()
            .replace('_', "-")
            .to_ascii_lowercase();
        let host = Url::parse(&format!("{}://{name}", self.sql.base_url().scheme()))
            .ok()
            .filter(|_| !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| SnowflakeError::Protocol {
                http_status: 200,
                detail: format!(
                    "the streaming hostname answer is not a host name: {}",
                    clip(&text)
                ),
            })?;
        *self.host.lock().unwrap_or_else(|e| e.into_inner()) = Some(host.clone());
        Ok(host)
    }

    /// The scoped token for `host`, exchanged when there is none or it is about to expire (§1).
    async fn token(&self, host: &Url, deadline: Instant) -> Result<String, SnowflakeError> {
        let now = SystemTime::now();
        if let Some((token, renew_at)) =
            self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
            && now < renew_at
        {
            return Ok(token);
        }
        let mut scope = host.host_str().unwrap_or_default().to_string();
        if let Some(port) = host.port() {
            scope.push_str(&format!(":{port}"));
        }
        if let Some(role) = &self.session().role {
            scope.push_str(&format!(" session:role:{}", role.as_str()));
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("scope", &scope)
            .finish();
        let mut url = self.sql.base_url().clone();
        url.set_path("/oauth/token");
        let text = self
            .control_call(deadline, || {
                self.http
                    .post(url.clone())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form.clone())
            })
            .await?;
        let token = field_or_text(&text, "token");
        if token.is_empty() {
            return Err(SnowflakeError::Protocol {
                http_status: 200,
                detail: "the token exchange answered no token".into(),
            });
        }
        let renew_at = jwt_expiry(&token)
            .map(|exp| exp.checked_sub(TOKEN_RENEW_BEFORE).unwrap_or(now))
            .unwrap_or(now + TOKEN_ASSUMED_LIFETIME);
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some((token.clone(), renew_at));
        Ok(token)
    }

    /// A control-plane call (hostname, token exchange) with the key-pair JWT. Returns the body.
    async fn control_call(
        &self,
        deadline: Instant,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<String, SnowflakeError> {
        self.exchange(Plane::Control, deadline, Table::RawEvents, |_| build())
            .await
            .map(|(_, text)| text)
    }

    /// An error answer as an [`ApiError`]: the code from `code`, `error_code`, OAuth's `error`,
    /// or a bare JSON string (§6).
    fn error_of(&self, status: u16, text: &str, table: Table) -> SnowflakeError {
        let (code, message) = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => {
                let field = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_string);
                (
                    field("code")
                        .or_else(|| field("error_code"))
                        .or_else(|| field("error"))
                        .unwrap_or_default(),
                    field("message")
                        .or_else(|| field("error_description"))
                        .unwrap_or_else(|| clip(text)),
                )
            }
            Ok(serde_json::Value::String(code)) => (code.clone(), code),
            _ => (String::new(), clip(text)),
        };
        self.api_error(status, code, message, table)
    }

    fn api_error(
        &self,
        status: u16,
        code: String,
        message: String,
        table: Table,
    ) -> SnowflakeError {
        SnowflakeError::from(ApiError {
            http_status: status,
            code,
            message,
            session: self.session().clone(),
            table: Some(table),
            ..ApiError::default()
        })
    }
}

/// How a database or schema goes into a URI: names are case-insensitive there (§3), so an
/// upper-case name goes as it is and any other in double quotes (percent-encoded by the URL).
fn uri_name(name: Option<&Identifier>) -> String {
    let Some(name) = name else {
        return String::new();
    };
    let exact = name.as_str();
    let plain = exact
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && exact
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
    if plain {
        exact.to_string()
    } else {
        name.quoted()
    }
}

/// A control-plane answer's `field`: the body is JSON `{"<field>": "..."}` (the docs), a bare
/// JSON string, or plain text (what real accounts send); an object without `field` gives "".
fn field_or_text(text: &str, field: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => map
            .get(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        Ok(serde_json::Value::String(value)) => value,
        _ => text.trim().to_string(),
    }
}

/// The `exp` claim of a JWT, unverified (the token is Snowflake's; only its lifetime is read).
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

/// gzip of `bytes` (§4: `Content-Encoding: gzip` is one of the documented encodings).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// A PAT-only secret asked for the streaming method.
#[derive(Debug, thiserror::Error)]
#[error(
    "TRACKLAYER_LOAD_METHOD=streaming needs key-pair authentication: Snowpipe Streaming's token exchange takes a key-pair JWT, and a programmatic access token is not documented for its REST API. Add `private_key` to the secret (docs/snowflake-setup.md), or use TRACKLAYER_LOAD_METHOD=sql_api"
)]
pub struct PatRefused;

/// The secret names no database or schema, which the channels' URLs need.
#[derive(Debug, thiserror::Error)]
#[error(
    "TRACKLAYER_LOAD_METHOD=streaming needs `database` and `schema` in the secret: the channels live on the tables' default pipes in that schema"
)]
pub struct NoNamespace;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_codes_are_recognised_and_others_are_not() {
        let error = |code: &str| {
            SnowflakeError::from(ApiError {
                http_status: 409,
                code: code.into(),
                ..ApiError::default()
            })
        };
        assert!(requires_reopen(&error(
            "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER"
        )));
        assert!(requires_reopen(&error(
            "STALE_CONTINUATION_TOKEN_SEQUENCER"
        )));
        assert!(!requires_reopen(&error(
            "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED"
        )));
        assert!(!requires_reopen(&SnowflakeError::Transport {
            url: String::new(),
            detail: String::new()
        }));
    }

    #[test]
    fn a_jwt_expiry_is_read_and_garbage_is_not() {
        let claims =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":1800000000}"#);
        let token = format!("x.{claims}.y");
        assert_eq!(
            jwt_expiry(&token),
            Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        );
        assert_eq!(jwt_expiry("not-a-jwt"), None);
    }

    #[test]
    fn a_host_or_token_answer_is_read_from_json_a_bare_json_string_or_plain_text() {
        assert_eq!(
            field_or_text(r#"{"hostname":"acct.ingest.example"}"#, "hostname"),
            "acct.ingest.example"
        );
        assert_eq!(field_or_text(r#"{"token":"abc"}"#, "token"), "abc");
        assert_eq!(
            field_or_text(r#""abc""#, "token"),
            "abc",
            "without its quotes"
        );
        assert_eq!(field_or_text(" abc.def.ghi\n", "token"), "abc.def.ghi");
        assert_eq!(field_or_text(r#"{"access_token":"abc"}"#, "token"), "");
    }

    #[test]
    fn uri_names_quote_only_what_is_not_plain_upper_case() {
        let name = |raw: &str| uri_name(Some(&Identifier::parse(raw).unwrap()));
        assert_eq!(name("tracklayer"), "TRACKLAYER");
        assert_eq!(name("\"Events\""), "\"Events\"");
        assert_eq!(uri_name(None), "");
    }

    #[test]
    fn offsets_read_as_numbers() {
        assert_eq!(offset_number(Some("41")), 41);
        assert_eq!(offset_number(None), 0);
        assert_eq!(offset_number(Some("not-ours")), 0);
    }

    #[test]
    fn gzip_round_trips() {
        let body = b"{\"A\":1}\n{\"A\":2}\n";
        let gzipped = gzip(body);
        let mut decoder = flate2::read::GzDecoder::new(&gzipped[..]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut decoder, &mut out).unwrap();
        assert_eq!(out, body);
    }
}
