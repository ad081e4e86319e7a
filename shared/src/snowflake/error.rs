//! Snowflake errors, classified by ONE table (code → kind → fix) so callers can choose between
//! retry, quarantine and stop, and tell a person what to do.
//!
//! Codes and their sources are listed in `/work/shared/notes/snowflake-review.md` ("Error codes
//! the code relies on"); the ones marked there as not confirmed are marked here too. An answer
//! without a code (no JSON body, e.g. from a proxy) is classified by its HTTP status with the
//! status rows of the same table.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::auth::KeyError;
use super::client::SessionContext;
use super::identifier::{CASE_RULE, Identifier};
use super::tables::Table;

/// What a caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The credentials were refused: stop, fix the secret or the user. Never hammer Snowflake.
    Authentication,
    /// The role lacks a grant or the object is not visible to it: stop, run the grants.
    Permission,
    /// The warehouse is missing, suspended or out of quota: stop, fix the warehouse.
    Warehouse,
    /// One row's data was refused: isolate the offending rows and quarantine them.
    Data,
    /// Throttling, lock contention, a 5xx, a dropped connection: retry with backoff.
    Transient,
    /// The statement ran out of time in Snowflake or in our deadline.
    Timeout,
    /// Our settings do not fit the account: a name (or its case) in the secret, the table's
    /// columns, an account identifier. Every statement would fail the same way: stop and fix.
    Configuration,
    /// Anything else Snowflake said.
    Other,
}

impl ErrorKind {
    /// Whether every other statement would fail the same way (credentials, grants, warehouse,
    /// settings): the run stops instead of sending them.
    pub fn stops_the_run(self) -> bool {
        matches!(
            self,
            ErrorKind::Authentication
                | ErrorKind::Permission
                | ErrorKind::Warehouse
                | ErrorKind::Configuration
        )
    }

    /// Stable snake_case name, used in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Authentication => "authentication",
            ErrorKind::Permission => "permission",
            ErrorKind::Warehouse => "warehouse",
            ErrorKind::Data => "data",
            ErrorKind::Transient => "transient",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Configuration => "configuration",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which answers a row of the table covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Exactly this Snowflake code.
    Code(&'static str),
    /// Any code starting with this.
    Prefix(&'static str),
    /// Any answer without a known code whose HTTP status is in this range.
    Status(u16, u16),
}

/// The advice a row gives; [`SnowflakeError::fix`] turns it into text with the names involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// 390100.
    Password,
    /// 390144, with the UUID to look the reason up.
    Jwt,
    /// 3943xx: the reason itself (a login-request sub-code).
    JwtFingerprint,
    /// 3943xx other than the fingerprint.
    JwtClaims,
    /// 390422.
    NetworkPolicy,
    /// 390432.
    PatNetworkPolicy,
    /// 394400.
    Pat,
    /// 390303, 390318.
    OAuth,
    /// Other credential refusals.
    Credentials,
    /// 003001, 002003, 003540.
    Grants,
    /// 000608.
    WarehouseSuspended,
    /// 000606.
    NoWarehouse,
    /// 090073.
    ResourceMonitor,
    /// 391918: no database or warehouse in the request's context.
    NoDatabaseOrWarehouse,
    /// 090105.
    NoDatabase,
    /// 090106.
    NoSchema,
    /// 390189.
    Role,
    /// 390201: a context object does not exist or is not authorized.
    ContextObject,
    /// 000904.
    InvalidIdentifier,
    /// 002023.
    ColumnType,
    /// Other 0020xx compilation errors.
    Compilation,
    /// 000625.
    LockContention,
    /// 429, 390505, 5xx.
    Throttled,
    /// 000630, 408.
    StatementTimeout,
    /// 000604.
    Cancelled,
    /// 100xxx.
    RowData,
    /// Snowpipe Streaming: the database, schema, table or its default pipe is missing or not
    /// granted to the role.
    StreamingObject,
    /// Snowpipe Streaming: the token exchange refused the scope (the role is not granted).
    StreamingScope,
    /// Snowpipe Streaming: a channel kept asking to be reopened.
    ChannelReopen,
}

/// The classification table: the first row that matches decides. Code rows come before status
/// rows, so a known code wins over its HTTP status.
pub const TABLE: &[(Match, ErrorKind, Fix)] = {
    use ErrorKind::*;
    use Match::*;
    &[
        (Code("390100"), Authentication, Fix::Password),
        // 390101-390104: not confirmed against real Snowflake (kept from earlier guesses).
        (Code("390101"), Authentication, Fix::Credentials),
        (Code("390102"), Authentication, Fix::Credentials),
        (Code("390103"), Authentication, Fix::Credentials),
        (Code("390104"), Authentication, Fix::Credentials),
        (Code("390144"), Authentication, Fix::Jwt),
        (Code("390422"), Authentication, Fix::NetworkPolicy),
        (Code("390432"), Authentication, Fix::PatNetworkPolicy),
        (Code("390303"), Authentication, Fix::OAuth),
        (Code("390318"), Authentication, Fix::OAuth),
        (Code("394400"), Authentication, Fix::Pat),
        (Code("394304"), Authentication, Fix::JwtFingerprint),
        (Prefix("3943"), Authentication, Fix::JwtClaims),
        (Code("003001"), Permission, Fix::Grants),
        (Code("002003"), Permission, Fix::Grants),
        // 003540: not confirmed.
        (Code("003540"), Permission, Fix::Grants),
        (Code("000606"), Warehouse, Fix::NoWarehouse),
        (Code("000608"), Warehouse, Fix::WarehouseSuspended),
        (Code("090073"), Warehouse, Fix::ResourceMonitor),
        (Code("391918"), Configuration, Fix::NoDatabaseOrWarehouse),
        (Code("090105"), Configuration, Fix::NoDatabase),
        (Code("090106"), Configuration, Fix::NoSchema),
        // 390189 / 390201: gosnowflake errors.go (ErrRoleNotExist, ErrObjectNotExistOrAuthorized);
        // the HTTP status the SQL API answers them with is not confirmed.
        (Code("390189"), Configuration, Fix::Role),
        (Code("390201"), Configuration, Fix::ContextObject),
        (Code("000904"), Configuration, Fix::InvalidIdentifier),
        (Code("002023"), Configuration, Fix::ColumnType),
        (Prefix("0020"), Configuration, Fix::Compilation),
        (Code("000625"), Transient, Fix::LockContention),
        // 390505: the local Snowflake's 429 code; Snowflake's own is not confirmed.
        (Code("390505"), Transient, Fix::Throttled),
        (Code("000630"), Timeout, Fix::StatementTimeout),
        (Code("000604"), Timeout, Fix::Cancelled),
        (Prefix("100"), Data, Fix::RowData),
        // Snowpipe Streaming's codes (../shared/notes/snowpipe-streaming.md §6, from
        // redpanda-data/connect errors.go and the error-handling page; HTTP statuses unconfirmed).
        (
            Code("ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED"),
            Configuration,
            Fix::StreamingObject,
        ),
        (
            Code("ERR_TABLE_DOES_NOT_EXIST_NOT_AUTHORIZED"),
            Configuration,
            Fix::StreamingObject,
        ),
        (
            Code("ERR_DATABASE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED"),
            Configuration,
            Fix::StreamingObject,
        ),
        (
            Code("ERR_SCHEMA_DOES_NOT_EXIST_OR_NOT_AUTHORIZED"),
            Configuration,
            Fix::StreamingObject,
        ),
        (Code("invalid_scope"), Configuration, Fix::StreamingScope),
        (
            Code("ERR_GENERAL_EXCEPTION_RETRY_REQUEST"),
            Transient,
            Fix::Throttled,
        ),
        (Code("ERR_TOO_MANY_REQUESTS"), Transient, Fix::Throttled),
        (Prefix("ERR_CHANNEL_"), Transient, Fix::ChannelReopen),
        (
            Code("STALE_CONTINUATION_TOKEN_SEQUENCER"),
            Transient,
            Fix::ChannelReopen,
        ),
        (Status(401, 401), Authentication, Fix::Credentials),
        (Status(403, 403), Authentication, Fix::Credentials),
        (Status(408, 408), Timeout, Fix::StatementTimeout),
        (Status(429, 429), Transient, Fix::Throttled),
        (Status(500, 599), Transient, Fix::Throttled),
    ]
};

/// The row for an answer: by code first, then by HTTP status.
pub fn classify(code: &str, http_status: u16) -> Option<(ErrorKind, Fix)> {
    let by_code = TABLE.iter().find(|(m, _, _)| match m {
        Match::Code(c) => *c == code,
        Match::Prefix(p) => !code.is_empty() && code.starts_with(p),
        Match::Status(..) => false,
    });
    let row = by_code.or_else(|| {
        TABLE.iter().find(
            |(m, _, _)| matches!(m, Match::Status(lo, hi) if (*lo..=*hi).contains(&http_status)),
        )
    });
    row.map(|&(_, kind, fix)| (kind, fix))
}

/// An error answer from Snowflake, with everything a person needs to look it up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub http_status: u16,
    /// Snowflake's six-digit error code (e.g. `390144`), empty when the answer had none.
    pub code: String,
    /// SQLSTATE (e.g. `08001`), empty when absent.
    pub sql_state: String,
    /// Snowflake's message, as sent (or the start of a body that was not JSON).
    pub message: String,
    /// The statement handle, to find the statement in query history.
    pub statement_handle: Option<String>,
    /// How long the answer's `Retry-After` header asked us to wait.
    pub retry_after: Option<Duration>,
    /// The database, schema, warehouse and role the statement ran with (for the fix).
    pub session: SessionContext,
    /// The table the statement wrote to, when it was one of ours.
    pub table: Option<Table>,
}

impl ApiError {
    /// Classifies with [`TABLE`]: by Snowflake code first, HTTP status second.
    pub fn kind(&self) -> ErrorKind {
        classify(&self.code, self.http_status).map_or(ErrorKind::Other, |(kind, _)| kind)
    }

    /// The UUID Snowflake puts in brackets after `JWT token is invalid.`; an administrator
    /// reads the reason with `SYSTEM$GET_LOGIN_FAILURE_DETAILS`
    /// (<https://docs.snowflake.com/user-guide/key-pair-auth-troubleshooting>).
    pub fn login_failure_id(&self) -> Option<uuid::Uuid> {
        self.message.split('[').skip(1).find_map(|rest| {
            let inner = rest.split(']').next()?;
            uuid::Uuid::parse_str(inner.trim()).ok()
        })
    }

    /// The address a network policy refused (390422), when the message names it. Snowflake
    /// writes `Incoming request with IP/Token <address> is not allowed to access Snowflake.`,
    /// or in older answers `IP <address> is not allowed to access Snowflake.`; the word after
    /// `IP/Token` or `IP` is taken when it is an IPv4 or IPv6 address.
    pub fn refused_address(&self) -> Option<std::net::IpAddr> {
        let mut words = self.message.split_whitespace();
        while let Some(word) = words.next() {
            if word == "IP/Token" || word == "IP" {
                let candidate = words.next()?.trim_end_matches(['.', ',', ';', ':']);
                let candidate = candidate.trim_start_matches('[').trim_end_matches(']');
                if let Ok(address) = candidate.parse() {
                    return Some(address);
                }
            }
        }
        None
    }

    /// The column Snowflake names in a compilation error (`invalid identifier 'X'`,
    /// `... for column X`).
    pub fn column(&self) -> Option<&str> {
        let message = self.message.as_str();
        if let Some((_, rest)) = message.split_once("invalid identifier '") {
            return rest.split('\'').next().filter(|c| !c.is_empty());
        }
        let (_, rest) = message.rsplit_once("for column ")?;
        rest.split(|c: char| c.is_whitespace() || c == ',')
            .next()
            .map(|c| c.trim_end_matches('.'))
            .filter(|c| !c.is_empty())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Snowflake error")?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        if !self.sql_state.is_empty() {
            write!(f, " ({})", self.sql_state)?;
        }
        write!(f, " [HTTP {}]: {}", self.http_status, self.message)?;
        if let Some(after) = self.retry_after {
            write!(f, " (Retry-After: {} s)", after.as_secs())?;
        }
        if let Some(handle) = &self.statement_handle {
            write!(f, " (statement {handle})")?;
        }
        Ok(())
    }
}

/// What became of a statement our deadline caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abandoned {
    /// Too little time was left to run it, so it was never sent.
    NotSent,
    /// Cancelled, and Snowflake confirmed it: none of its rows landed.
    Cancelled,
    /// Cancel was asked for, but the statement still ran when read again.
    StillRunning,
    /// The cancel or the read after it failed (the detail says how).
    CancelFailed(String),
}

/// Every way a Snowflake call can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnowflakeError {
    /// Snowflake answered with an error (boxed: it carries the session's names).
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The request never got a complete answer (connect, TLS, reset, truncated body).
    #[error("cannot reach Snowflake at {url}: {detail}")]
    Transport { url: String, detail: String },
    /// Our deadline passed before Snowflake finished; what happened to the statement.
    #[error("{}", deadline_text(.request_id, .statement_handle, .outcome))]
    Deadline {
        request_id: String,
        statement_handle: Option<String>,
        outcome: Abandoned,
    },
    /// Snowflake answered something this client does not understand.
    #[error("unexpected answer from Snowflake (HTTP {http_status}): {detail}")]
    Protocol { http_status: u16, detail: String },
    /// The private key read but cannot sign a JWT.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// The caller could not set the client up (its settings or credentials are unreadable);
    /// the caller's own error, whose message names the setting.
    #[error("{0}")]
    Setup(Arc<dyn std::error::Error + Send + Sync>),
}

impl SnowflakeError {
    /// A [`SnowflakeError::Setup`] carrying the caller's `error`.
    pub fn setup(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        SnowflakeError::Setup(Arc::new(error))
    }
}

impl From<ApiError> for SnowflakeError {
    fn from(api: ApiError) -> Self {
        SnowflakeError::Api(Box::new(api))
    }
}

fn deadline_text(request_id: &str, handle: &Option<String>, outcome: &Abandoned) -> String {
    let what = match outcome {
        Abandoned::NotSent => {
            "too little time was left before the deadline to run the statement, so it was not sent"
                .to_string()
        }
        Abandoned::Cancelled => {
            "the statement did not finish before the deadline and was cancelled; none of its rows landed".to_string()
        }
        Abandoned::StillRunning => {
            "the statement did not finish before the deadline; it was asked to cancel but still ran when read again (its own timeout stops it)".to_string()
        }
        Abandoned::CancelFailed(detail) => format!(
            "the statement did not finish before the deadline and could not be cancelled ({detail}); its own timeout stops it"
        ),
    };
    let handle = handle
        .as_ref()
        .map(|h| format!(", statement {h}"))
        .unwrap_or_default();
    format!("{what} (request {request_id}{handle})")
}

impl SnowflakeError {
    /// The class of failure, deciding retry, quarantine or stop.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnowflakeError::Api(api) => api.kind(),
            SnowflakeError::Transport { .. } => ErrorKind::Transient,
            SnowflakeError::Deadline { .. } => ErrorKind::Timeout,
            SnowflakeError::Protocol { .. } => ErrorKind::Other,
            SnowflakeError::Key(_) | SnowflakeError::Setup(_) => ErrorKind::Configuration,
        }
    }

    /// The table's row for Snowflake's answer (by code, else by HTTP status), with the answer;
    /// `None` when Snowflake did not answer or the table has no row for it.
    pub fn advice(&self) -> Option<(Fix, &ApiError)> {
        match self {
            SnowflakeError::Api(api) => {
                classify(&api.code, api.http_status).map(|(_, fix)| (fix, &**api))
            }
            _ => None,
        }
    }

    /// Snowflake's error code, when Snowflake gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SnowflakeError::Api(api) if !api.code.is_empty() => Some(&api.code),
            _ => None,
        }
    }

    /// The wait Snowflake asked for before the next attempt (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SnowflakeError::Api(api) => api.retry_after,
            _ => None,
        }
    }

    /// What a person should do about it, in our words, naming what is involved.
    pub fn fix(&self) -> String {
        let api = match self {
            SnowflakeError::Api(api) => api,
            SnowflakeError::Transport { .. } => {
                return fix_text(Fix::Throttled, &ApiError::default(), None);
            }
            SnowflakeError::Deadline {
                outcome: Abandoned::NotSent,
                ..
            } => {
                return "The invocation ran out of time before this statement could start: raise the function's timeout or send smaller batches; the messages are retried.".into();
            }
            SnowflakeError::Deadline { .. } => {
                return "The statement took longer than the invocation allowed: use a larger warehouse, smaller statements (TRACKLAYER_MAX_STATEMENT_BYTES) or a longer function timeout; the messages are retried and rows already landed are not loaded twice.".into();
            }
            SnowflakeError::Protocol { .. } => {
                return "Unexpected answer: check the secret's host (a proxy or firewall may answer instead of Snowflake), then look the statement up in query history.".into();
            }
            SnowflakeError::Key(_) | SnowflakeError::Setup(_) => {
                return "Fix the setting named in the error.".into();
            }
        };
        match classify(&api.code, api.http_status) {
            Some((_, fix)) => fix_text(fix, api, None),
            None => {
                "Unexpected Snowflake error: look the statement up in query history by its handle."
                    .into()
            }
        }
    }
}

/// `the secret's warehouse ("tracklayer_wh", which means exactly tracklayer_wh)`.
fn setting(field: &str, value: Option<&Identifier>) -> String {
    match value {
        Some(id) if id.written() == id.as_str() => {
            format!("the secret's {field} ({})", id.written())
        }
        Some(id) => format!(
            "the secret's {field} ({}, which means exactly {})",
            id.written(),
            id.as_str()
        ),
        None => format!("the secret's {field} (not set)"),
    }
}

fn table_name(api: &ApiError) -> String {
    let table = api
        .table
        .map_or("RAW_EVENTS or RAW_EVENTS_REJECTED", Table::name);
    match (&api.session.database, &api.session.schema) {
        (Some(db), Some(schema)) => format!("{db}.{schema}.{table}"),
        _ => table.to_string(),
    }
}

fn ddl_file(api: &ApiError) -> &'static str {
    match api.table {
        Some(Table::Rejected) => "infra/sql/raw_events_rejected.sql",
        Some(Table::RawEvents) => "infra/sql/raw_events.sql",
        None => "infra/sql/raw_events.sql and infra/sql/raw_events_rejected.sql",
    }
}

/// Which address to allow after a 390422: the one Snowflake saw, or the loader's egress IPs.
fn seen_address(api: &ApiError) -> String {
    match api.refused_address() {
        Some(address) => {
            format!("Snowflake saw the request come from {address}: add that address")
        }
        None => "Snowflake did not say which address it saw: add the loader's egress IPs".into(),
    }
}

/// The text of `fix` for `api`. `user` is the service user's name when the caller knows it
/// (connection-test, which read the secret): the credential fixes then name it in the
/// statements to run; the loader passes `None`.
pub fn fix_text(fix: Fix, api: &ApiError, user: Option<&str>) -> String {
    let s = &api.session;
    let role = s
        .role
        .as_ref()
        .map_or("<the loader's role>".to_string(), ToString::to_string);
    let warehouse = s
        .warehouse
        .as_ref()
        .map_or("<warehouse>".to_string(), ToString::to_string);
    let stays = "Nothing was quarantined; the messages stay queued and load once it is fixed.";
    match fix {
        Fix::Password => match user {
            None => "Snowflake refused the user or password: use the service user (not a personal login), rotate its credentials and update the secret.".into(),
            Some(user) => format!(
                "Incorrect username or password: use the service user {user}, not a personal login; rotate its credentials and update the secret."
            ),
        },
        Fix::Jwt => {
            let lookup = match api.login_failure_id() {
                Some(id) => format!(
                    "An administrator (a role with MONITOR, e.g. ACCOUNTADMIN) reads the reason with: SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('{id}'), 'errorCode');"
                ),
                None => "Snowflake's message carried no login-failure UUID to look the reason up with.".into(),
            };
            format!(
                "Snowflake refused the key-pair JWT. {lookup} Meanwhile check that the secret's account and user are Snowflake's, that the key's fingerprint (connection-test shows it) equals RSA_PUBLIC_KEY_FP or RSA_PUBLIC_KEY_2_FP in DESC USER, and that the machine clock is right."
            )
        }
        Fix::JwtFingerprint => "JWT rejected: public key fingerprint mismatch - register the key shown by connection-test with ALTER USER ... SET RSA_PUBLIC_KEY.".into(),
        Fix::JwtClaims => "JWT rejected: check that the secret's account and user are Snowflake's and that the machine clock is right.".into(),
        Fix::NetworkPolicy => {
            let seen = seen_address(api);
            match user {
                None => format!(
                    "Network policy blocks login: {seen} (the NAT gateway's Elastic IP when the functions run in a VPC) to the network policy attached to the service user."
                ),
                Some(user) => format!(
                    "Network policy blocks login: {seen} (the NAT gateway's Elastic IP when the functions run in a VPC, see docs/snowflake-setup.md) to the network policy attached to {user}, then run connection-test again."
                ),
            }
        }
        Fix::PatNetworkPolicy => match user {
            None => "A programmatic access token needs a network policy on the service user: attach one that allows the loader's egress IPs.".into(),
            Some(user) => format!(
                "A programmatic access token needs a network policy: create one allowing the loader's egress IPs and ALTER USER {user} SET NETWORK_POLICY = <policy>."
            ),
        },
        Fix::Pat => match user {
            None => "Snowflake refused the programmatic access token. Either the token is invalid, expired or revoked (generate a new one for the service user and update the secret's token), or the service user has no network policy, which a token requires (attach one that allows the loader's egress IPs).".into(),
            Some(user) => format!(
                "Snowflake refused the programmatic access token, for one of two reasons: the token is invalid, expired or revoked (ALTER USER {user} ADD PROGRAMMATIC ACCESS TOKEN ... and store the new token in the secret's token field), or {user} has no network policy, which a token requires (ALTER USER {user} SET NETWORK_POLICY = <a policy allowing the loader's egress IPs>)."
            ),
        },
        Fix::OAuth => "The OAuth token was refused: the loader authenticates with a key pair or a programmatic access token; store one of those in the secret.".into(),
        Fix::Credentials => "Snowflake refused the credentials: run connection-test and follow its fix.".into(),
        Fix::Grants => format!(
            "The role lacks a grant: GRANT USAGE on the warehouse, database and schema, CREATE TABLE on the schema and INSERT, SELECT on the tables to role {role} (see infra/sql/setup.sql)."
        ),
        Fix::WarehouseSuspended => format!(
            "The warehouse is suspended and cannot auto-resume: ALTER WAREHOUSE {warehouse} SET AUTO_RESUME = TRUE and GRANT USAGE ON WAREHOUSE {warehouse} TO ROLE {role}."
        ),
        Fix::NoWarehouse => format!(
            "No usable warehouse: {} must name a warehouse role {role} has USAGE on, exactly as SHOW WAREHOUSES shows it; {CASE_RULE}. {stays}",
            setting("warehouse", s.warehouse.as_ref())
        ),
        Fix::ResourceMonitor => "The warehouse cannot resume because its resource monitor quota is used up: raise the quota or use another warehouse.".into(),
        Fix::NoDatabaseOrWarehouse => format!(
            "Snowflake found no database or no warehouse for the statement: {} and {} must name objects role {role} can use, exactly as SHOW DATABASES / SHOW WAREHOUSES show them; {CASE_RULE}. {stays}",
            setting("database", s.database.as_ref()),
            setting("warehouse", s.warehouse.as_ref())
        ),
        Fix::NoDatabase => format!(
            "No current database: {} must name a database role {role} has USAGE on, exactly as SHOW DATABASES shows it; {CASE_RULE}. {stays}",
            setting("database", s.database.as_ref())
        ),
        Fix::NoSchema => format!(
            "No current schema: {} must name a schema of that database that role {role} has USAGE on, exactly as SHOW SCHEMAS shows it; {CASE_RULE}. {stays}",
            setting("schema", s.schema.as_ref())
        ),
        Fix::Role => format!(
            "The role does not exist or is not granted to the user: {} must name a role granted to the service user (GRANT ROLE {role} TO USER <user>), exactly as SHOW ROLES shows it; {CASE_RULE}. {stays}",
            setting("role", s.role.as_ref())
        ),
        Fix::ContextObject => format!(
            "A database, schema, warehouse or role the request names does not exist or is not authorized: check {}, {}, {} and {} against SHOW DATABASES / SCHEMAS / WAREHOUSES / ROLES; {CASE_RULE}. {stays}",
            setting("database", s.database.as_ref()),
            setting("schema", s.schema.as_ref()),
            setting("warehouse", s.warehouse.as_ref()),
            setting("role", s.role.as_ref())
        ),
        Fix::InvalidIdentifier => format!(
            "Table {} has no column {} that the loader writes (or it was created with a quoted name in another case): compare the table with {} (connection-test lists the differences by name) and ADD or RENAME the column, or rename the table and let the loader create it. {stays}",
            table_name(api),
            api.column().unwrap_or("named in Snowflake's message"),
            ddl_file(api)
        ),
        Fix::ColumnType => format!(
            "Column {} of table {} has another type than the loader writes: compare the table with {} (connection-test lists the differences by name) and ALTER the column, or rename the table and let the loader create it. {stays}",
            api.column().unwrap_or("named in Snowflake's message"),
            table_name(api),
            ddl_file(api)
        ),
        Fix::Compilation => format!(
            "Snowflake could not compile the statement against table {}: its columns do not fit what the loader writes. Compare it with {} (connection-test lists the differences by name). {stays}",
            table_name(api),
            ddl_file(api)
        ),
        Fix::LockContention => "Too many statements wait for a lock on the table: the loader retries with backoff; lower TRACKLAYER_MAX_CONCURRENT_STATEMENTS or IngestMaximumConcurrency if it persists.".into(),
        Fix::Throttled => "Snowflake is throttling or unavailable: the loader retries with backoff; nothing to do unless it persists.".into(),
        Fix::StatementTimeout => "The statement took too long and Snowflake stopped it: use a larger warehouse or smaller statements (TRACKLAYER_MAX_STATEMENT_BYTES), or raise the function's timeout.".into(),
        Fix::Cancelled => "The statement was cancelled before it finished (by the loader at its deadline, or by an administrator); its messages are retried.".into(),
        Fix::RowData => "Snowflake refused some rows' data: they are quarantined in RAW_EVENTS_REJECTED with Snowflake's message.".into(),
        Fix::StreamingObject => format!(
            "Snowpipe Streaming cannot find {} or its default pipe {}-STREAMING as role {role}: check `database` and `schema` in the secret, create the table ({}), and GRANT INSERT on it and USAGE on its database and schema to the role (infra/sql/setup.sql). {stays}",
            table_name(api),
            api.table.map_or("<TABLE>", Table::name),
            ddl_file(api)
        ),
        Fix::StreamingScope => format!(
            "The token exchange refused the role {role} for Snowpipe Streaming: grant it to the user (GRANT ROLE {role} TO USER ...), or fix `role` in the secret. {stays}"
        ),
        Fix::ChannelReopen => "A streaming channel kept failing after it was reopened (another writer may use it: flush must be the only one, reserved concurrency 1); the rows after its committed offset are sent again on the next run.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionContext {
        SessionContext {
            database: Some(Identifier::parse("tracklayer").unwrap()),
            schema: Some(Identifier::parse("\"Events\"").unwrap()),
            warehouse: Some(Identifier::parse("analytics_wh").unwrap()),
            role: Some(Identifier::parse("TRACKLAYER_WRITER").unwrap()),
        }
    }

    fn api(status: u16, code: &str, message: &str) -> ApiError {
        ApiError {
            http_status: status,
            code: code.into(),
            message: message.into(),
            session: session(),
            table: Some(Table::RawEvents),
            ..ApiError::default()
        }
    }

    #[test]
    fn network_policy_refusals_name_the_address_snowflake_saw() {
        let address = |message: &str| api(401, "390422", message).refused_address();
        for (message, expected) in [
            (
                "Incoming request with IP/Token 203.0.113.9 is not allowed to access Snowflake. Contact your account administrator.",
                Some("203.0.113.9"),
            ),
            (
                "Incoming request with IP 64.236.133.98 is not allowed to access Snowflake.",
                Some("64.236.133.98"),
            ),
            (
                "IP 13.37.4.46 is not allowed to access Snowflake. Contact your local security administrator or please create a case with Snowflake Support.",
                Some("13.37.4.46"),
            ),
            (
                "Incoming request with IP/Token 2001:db8::17 is not allowed to access Snowflake.",
                Some("2001:db8::17"),
            ),
            (
                "Incoming request with IP/Token [2001:db8:0:0:0:0:0:17] is not allowed to access Snowflake.",
                Some("2001:db8::17"),
            ),
            (
                "Incoming request with IP/Token xx.xxx.xx.xxx is not allowed to access Snowflake.",
                None,
            ),
            ("Network policy blocks login.", None),
            ("", None),
        ] {
            assert_eq!(
                address(message).map(|a| a.to_string()).as_deref(),
                expected,
                "{message}"
            );
        }
        let fix = SnowflakeError::from(api(401, "390422", "Network policy blocks login.")).fix();
        assert!(
            fix.starts_with("Network policy blocks login: Snowflake did not say which address it saw: add the loader's egress IPs (the NAT gateway's"),
            "{fix}"
        );
    }

    /// The credential fixes connection-test and the loader share: the loader's words, and with
    /// the service user named (connection-test's).
    #[test]
    fn credential_fixes_name_the_user_when_the_caller_knows_it() {
        let seen = "IP 203.0.113.9 is not allowed to access Snowflake.";
        let cases: &[(&str, &str, Fix, &str, &str)] = &[
            (
                "390100",
                "",
                Fix::Password,
                "Snowflake refused the user or password: use the service user (not a personal login), rotate its credentials and update the secret.",
                "Incorrect username or password: use the service user SVC, not a personal login; rotate its credentials and update the secret.",
            ),
            (
                "394400",
                "",
                Fix::Pat,
                "Snowflake refused the programmatic access token. Either the token is invalid, expired or revoked (generate a new one for the service user and update the secret's token), or the service user has no network policy, which a token requires (attach one that allows the loader's egress IPs).",
                "Snowflake refused the programmatic access token, for one of two reasons: the token is invalid, expired or revoked (ALTER USER SVC ADD PROGRAMMATIC ACCESS TOKEN ... and store the new token in the secret's token field), or SVC has no network policy, which a token requires (ALTER USER SVC SET NETWORK_POLICY = <a policy allowing the loader's egress IPs>).",
            ),
            (
                "390422",
                seen,
                Fix::NetworkPolicy,
                "Network policy blocks login: Snowflake saw the request come from 203.0.113.9: add that address (the NAT gateway's Elastic IP when the functions run in a VPC) to the network policy attached to the service user.",
                "Network policy blocks login: Snowflake saw the request come from 203.0.113.9: add that address (the NAT gateway's Elastic IP when the functions run in a VPC, see docs/snowflake-setup.md) to the network policy attached to SVC, then run connection-test again.",
            ),
            (
                "390432",
                "",
                Fix::PatNetworkPolicy,
                "A programmatic access token needs a network policy on the service user: attach one that allows the loader's egress IPs.",
                "A programmatic access token needs a network policy: create one allowing the loader's egress IPs and ALTER USER SVC SET NETWORK_POLICY = <policy>.",
            ),
        ];
        for &(code, message, fix, loader, named) in cases {
            let error = SnowflakeError::from(api(401, code, message));
            let (found, answer) = error.advice().expect(code);
            assert_eq!(found, fix, "{code}");
            assert_eq!(error.fix(), loader, "{code}");
            assert_eq!(fix_text(fix, answer, None), loader, "{code}");
            assert_eq!(fix_text(fix, answer, Some("SVC")), named, "{code}");
        }
    }

    #[test]
    fn advice_is_the_table_row_of_an_answer_and_none_without_one() {
        let advice = |status: u16, code: &str| {
            SnowflakeError::from(api(status, code, ""))
                .advice()
                .map(|(fix, _)| fix)
        };
        assert_eq!(advice(401, "390144"), Some(Fix::Jwt));
        assert_eq!(advice(401, "394304"), Some(Fix::JwtFingerprint));
        assert_eq!(advice(401, "394301"), Some(Fix::JwtClaims));
        assert_eq!(advice(401, ""), Some(Fix::Credentials));
        assert_eq!(advice(503, ""), Some(Fix::Throttled));
        assert_eq!(advice(422, "001003"), None);
        let transport = SnowflakeError::Transport {
            url: "https://x".into(),
            detail: "reset".into(),
        };
        assert_eq!(transport.advice(), None);
    }

    /// Every code the table knows (and a status-only answer per status row): its kind, whether
    /// it stops the run, and words its fix must contain.
    #[test]
    fn every_row_of_the_table_has_its_kind_and_fix() {
        use ErrorKind::*;
        let jwt = "JWT token is invalid. [0ce9eb56-821d-4ca9-a774-04ae89a0cf5a]";
        #[rustfmt::skip]
        let cases: &[(u16, &str, &str, ErrorKind, &[&str])] = &[
            (401, "390100", "Incorrect username or password was specified.", Authentication, &["service user", "rotate"]),
            (401, "390101", "", Authentication, &["run connection-test"]),
            (401, "390102", "", Authentication, &["run connection-test"]),
            (401, "390103", "", Authentication, &["run connection-test"]),
            (401, "390104", "", Authentication, &["run connection-test"]),
            (401, "390144", jwt, Authentication, &["SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('0ce9eb56-821d-4ca9-a774-04ae89a0cf5a'), 'errorCode');", "RSA_PUBLIC_KEY_FP", "clock"]),
            (401, "390422", "IP 203.0.113.9 is not allowed to access Snowflake.", Authentication, &["Snowflake saw the request come from 203.0.113.9", "NAT gateway's Elastic IP", "network policy"]),
            (401, "390432", "Network policy is required.", Authentication, &["needs a network policy"]),
            (401, "390303", "Invalid OAuth access token.", Authentication, &["key pair or a programmatic access token"]),
            (401, "390318", "OAuth access token expired.", Authentication, &["key pair or a programmatic access token"]),
            (401, "394400", "Programmatic access token is invalid.", Authentication, &["invalid, expired or revoked", "no network policy"]),
            (401, "394304", "", Authentication, &["fingerprint mismatch", "ALTER USER"]),
            (401, "394301", "", Authentication, &["clock"]),
            (422, "003001", "Insufficient privileges to operate on table 'RAW_EVENTS'", Permission, &["GRANT USAGE", "role TRACKLAYER_WRITER"]),
            (422, "002003", "Object 'RAW_EVENTS' does not exist or not authorized.", Permission, &["GRANT USAGE", "role TRACKLAYER_WRITER"]),
            (422, "003540", "", Permission, &["GRANT USAGE"]),
            (422, "000606", "No active warehouse selected in the current session.", Warehouse, &["warehouse (analytics_wh, which means exactly ANALYTICS_WH)", "SHOW WAREHOUSES", "\"Analytics_wh\"", "queued"]),
            (422, "000608", "Warehouse 'ANALYTICS_WH' is suspended.", Warehouse, &["ALTER WAREHOUSE ANALYTICS_WH SET AUTO_RESUME = TRUE", "TO ROLE TRACKLAYER_WRITER"]),
            (422, "090073", "", Warehouse, &["resource monitor"]),
            (422, "391918", "Unable to run the command without specifying database/warehouse", Configuration, &["database (tracklayer, which means exactly TRACKLAYER)", "warehouse (analytics_wh, which means exactly ANALYTICS_WH)", "upper-case name", "queued"]),
            (422, "090105", "Cannot perform CREATE TABLE. This session does not have a current database.", Configuration, &["database (tracklayer, which means exactly TRACKLAYER)", "SHOW DATABASES", "\"Analytics_wh\"", "queued"]),
            (422, "090106", "This session does not have a current schema.", Configuration, &["schema (\"Events\", which means exactly Events)", "SHOW SCHEMAS", "queued"]),
            (422, "390189", "Role 'X' specified in the connect string does not exist or not authorized.", Configuration, &["role (TRACKLAYER_WRITER)", "SHOW ROLES", "GRANT ROLE TRACKLAYER_WRITER"]),
            (422, "390201", "The requested database does not exist or not authorized.", Configuration, &["database (tracklayer, which means", "schema (\"Events\", which means", "warehouse (analytics_wh, which means", "role (TRACKLAYER_WRITER)"]),
            (422, "000904", "SQL compilation error: error line 1 at position 7\ninvalid identifier 'RAW_PAYLOAD'", Configuration, &["Table TRACKLAYER.\"Events\".RAW_EVENTS has no column RAW_PAYLOAD", "infra/sql/raw_events.sql", "Nothing was quarantined"]),
            (422, "002023", "SQL compilation error: Expression type does not match column data type, expecting NUMBER(18,4) but got VARCHAR for column VALUE", Configuration, &["Column VALUE of table TRACKLAYER.\"Events\".RAW_EVENTS", "ALTER the column", "Nothing was quarantined"]),
            (422, "002014", "SQL compilation error: Invalid expression [PARSE_JSON(?)] in VALUES clause", Configuration, &["could not compile", "TRACKLAYER.\"Events\".RAW_EVENTS", "Nothing was quarantined"]),
            (422, "002016", "", Configuration, &["could not compile"]),
            (422, "000625", "Statement has locked table 'RAW_EVENTS' ... number of waiters for this lock exceeds the 20 statements limit", Transient, &["lock", "retries"]),
            (429, "390505", "Too many requests", Transient, &["retries with backoff"]),
            (408, "000630", "Statement reached its statement or warehouse timeout of 3 second(s) and was canceled.", Timeout, &["took too long"]),
            (422, "000604", "SQL execution canceled", Timeout, &["cancelled"]),
            (422, "100038", "Numeric value 'x' is not recognized", Data, &["quarantined"]),
            (422, "100069", "Error parsing JSON: duplicate object attribute \"a\", pos 31", Data, &["quarantined"]),
            (404, "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED", "pipe", Configuration, &["TRACKLAYER.\"Events\".RAW_EVENTS", "RAW_EVENTS-STREAMING", "GRANT INSERT", "role TRACKLAYER_WRITER", "Nothing was quarantined"]),
            (404, "ERR_TABLE_DOES_NOT_EXIST_NOT_AUTHORIZED", "", Configuration, &["USAGE on its database and schema"]),
            (404, "ERR_DATABASE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED", "", Configuration, &["`database` and `schema`"]),
            (404, "ERR_SCHEMA_DOES_NOT_EXIST_OR_NOT_AUTHORIZED", "", Configuration, &["infra/sql/setup.sql"]),
            (400, "invalid_scope", "role not granted", Configuration, &["GRANT ROLE TRACKLAYER_WRITER TO USER"]),
            (503, "ERR_GENERAL_EXCEPTION_RETRY_REQUEST", "", Transient, &["retries with backoff"]),
            (429, "ERR_TOO_MANY_REQUESTS", "", Transient, &["retries with backoff"]),
            (409, "ERR_CHANNEL_MUST_BE_REOPENED", "", Transient, &["reserved concurrency 1", "next run"]),
            (400, "STALE_CONTINUATION_TOKEN_SEQUENCER", "", Transient, &["another writer"]),
            (401, "", "<html>Unauthorized</html>", Authentication, &["run connection-test"]),
            (403, "", "<html>Forbidden</html>", Authentication, &["run connection-test"]),
            (408, "", "", Timeout, &["took too long"]),
            (429, "", "slow down", Transient, &["retries with backoff"]),
            (500, "", "", Transient, &["retries with backoff"]),
            (502, "", "Bad Gateway", Transient, &["retries with backoff"]),
            (503, "", "", Transient, &["retries with backoff"]),
            (504, "", "", Transient, &["retries with backoff"]),
            (599, "", "", Transient, &["retries with backoff"]),
            (400, "", "", Other, &["query history"]),
            (422, "001003", "syntax error", Other, &["query history"]),
        ];
        let mut covered = std::collections::HashSet::new();
        for &(status, code, message, kind, words) in cases {
            let error = SnowflakeError::from(api(status, code, message));
            assert_eq!(error.kind(), kind, "{status} {code}");
            let fix = error.fix();
            for word in words {
                assert!(
                    fix.contains(word),
                    "{status} {code}: {word:?} not in {fix:?}"
                );
            }
            if let Some(row) = TABLE.iter().position(|&(m, _, _)| match m {
                Match::Code(c) => c == code,
                Match::Prefix(p) => !code.is_empty() && code.starts_with(p),
                Match::Status(lo, hi) => code.is_empty() && (lo..=hi).contains(&status),
            }) {
                covered.insert(row);
            }
        }
        for (row, entry) in TABLE.iter().enumerate() {
            assert!(covered.contains(&row), "no case covers {entry:?}");
        }
    }

    #[test]
    fn compile_and_context_errors_stop_the_run_and_are_never_data() {
        for code in [
            "002014", "002016", "002017", "002018", "002023", "000904", "391918", "090105",
            "090106", "390189", "390201",
        ] {
            let kind = api(422, code, "").kind();
            assert_eq!(kind, ErrorKind::Configuration, "{code}");
            assert!(kind.stops_the_run(), "{code}");
        }
        assert!(!ErrorKind::Transient.stops_the_run());
        assert!(!ErrorKind::Data.stops_the_run());
    }

    #[test]
    fn a_code_wins_over_its_http_status() {
        assert_eq!(api(401, "000625", "").kind(), ErrorKind::Transient);
        assert_eq!(api(500, "100038", "").kind(), ErrorKind::Data);
    }

    #[test]
    fn jwt_fix_never_guesses_the_reason_from_the_message() {
        let error = SnowflakeError::from(api(
            401,
            "390144",
            "JWT token is invalid. [394304 FINGERPRINT_MISMATCH]",
        ));
        let fix = error.fix();
        assert!(!fix.contains("fingerprint mismatch"), "{fix}");
        assert!(fix.contains("no login-failure UUID"), "{fix}");
    }

    #[test]
    fn login_failure_id_is_the_uuid_in_brackets() {
        let a = api(
            401,
            "390144",
            "JWT token is invalid. [0ce9eb56-821d-4ca9-a774-04ae89a0cf5a]",
        );
        assert_eq!(
            a.login_failure_id().unwrap().to_string(),
            "0ce9eb56-821d-4ca9-a774-04ae89a0cf5a"
        );
        assert_eq!(
            api(401, "390144", "JWT token is invalid. [x]").login_failure_id(),
            None
        );
    }

    #[test]
    fn deadline_errors_say_what_became_of_the_statement() {
        let error = |outcome| SnowflakeError::Deadline {
            request_id: "r".into(),
            statement_handle: Some("h".into()),
            outcome,
        };
        assert!(
            error(Abandoned::Cancelled)
                .to_string()
                .contains("was cancelled; none of its rows landed (request r, statement h)")
        );
        assert!(error(Abandoned::NotSent).to_string().contains("not sent"));
        assert!(
            error(Abandoned::CancelFailed("reset".into()))
                .to_string()
                .contains("could not be cancelled (reset)")
        );
        assert_eq!(error(Abandoned::Cancelled).kind(), ErrorKind::Timeout);
    }

    #[test]
    fn failures_without_an_answer_have_their_kind_and_fix() {
        let transport = SnowflakeError::Transport {
            url: "https://x.snowflakecomputing.com".into(),
            detail: "connection reset".into(),
        };
        assert_eq!(transport.kind(), ErrorKind::Transient);
        assert!(
            transport.fix().contains("retries with backoff"),
            "{}",
            transport.fix()
        );
        let protocol = SnowflakeError::Protocol {
            http_status: 200,
            detail: "not JSON".into(),
        };
        assert_eq!(protocol.kind(), ErrorKind::Other);
        assert!(protocol.fix().contains("proxy or firewall"));
        let config = SnowflakeError::setup(std::io::Error::other("TRACKLAYER_X: bad"));
        assert_eq!(config.to_string(), "TRACKLAYER_X: bad");
        assert_eq!(config.kind(), ErrorKind::Configuration);
        assert!(config.kind().stops_the_run());
        assert_eq!(config.fix(), "Fix the setting named in the error.");
        assert_eq!(config.code(), None);
    }

    #[test]
    fn exactly_the_unfixable_kinds_stop_the_run() {
        use ErrorKind::*;
        #[rustfmt::skip]
        let all = [Authentication, Permission, Warehouse, Data, Transient, Timeout, Configuration, Other];
        let stopping: Vec<ErrorKind> = all.into_iter().filter(|k| k.stops_the_run()).collect();
        assert_eq!(
            stopping,
            [Authentication, Permission, Warehouse, Configuration]
        );
        let names: Vec<&str> = all.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "authentication",
                "permission",
                "warehouse",
                "data",
                "transient",
                "timeout",
                "configuration",
                "other"
            ]
        );
    }
}
