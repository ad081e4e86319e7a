//! Snowflake errors, classified so callers can choose between retry, quarantine and stop.

use std::fmt;

/// What a caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The credentials were refused: stop, fix the secret or the user. Never hammer Snowflake.
    Authentication,
    /// The role lacks a grant or the object is not visible to it: stop, run the grants.
    Permission,
    /// The warehouse is missing, suspended or out of quota: stop, fix the warehouse.
    Warehouse,
    /// The statement's data was refused: isolate the offending rows and quarantine them.
    Data,
    /// Throttling, a 5xx, a dropped connection: retry with backoff (same requestId).
    Transient,
    /// The statement ran out of time in Snowflake or in our deadline.
    Timeout,
    /// Our own configuration is wrong (bad account, key or setting): stop and fix the setting.
    Configuration,
    /// Anything else Snowflake said (SQL compilation errors and the like).
    Other,
}

impl ErrorKind {
    /// Whether resubmitting the same statement (with `retry=true`) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Timeout)
    }

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

/// An error answer from Snowflake, with everything a person needs to look it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub http_status: u16,
    /// Snowflake's six-digit error code (e.g. `390144`), empty when the answer had none.
    pub code: String,
    /// SQLSTATE (e.g. `08001`), empty when absent.
    pub sql_state: String,
    /// Snowflake's message, as sent.
    pub message: String,
    /// The statement handle, to find the statement in query history.
    pub statement_handle: Option<String>,
}

impl ApiError {
    /// Classifies by Snowflake code first, HTTP status second.
    pub fn kind(&self) -> ErrorKind {
        let code = self.code.as_str();
        match code {
            "390100" | "390101" | "390102" | "390103" | "390104" | "390144" | "390422"
            | "390432" | "390303" | "390318" | "394400" => return ErrorKind::Authentication,
            c if c.starts_with("3943") => return ErrorKind::Authentication,
            "003001" | "002003" | "003540" => return ErrorKind::Permission,
            "000606" | "000608" | "090073" | "000625" => return ErrorKind::Warehouse,
            "002014" | "002016" | "002017" | "002018" | "002023" => return ErrorKind::Data,
            c if c.starts_with("100") => return ErrorKind::Data,
            "000630" | "000604" => return ErrorKind::Timeout,
            "390505" => return ErrorKind::Transient,
            _ => {}
        }
        match self.http_status {
            401 | 403 => ErrorKind::Authentication,
            408 => ErrorKind::Timeout,
            429 | 500 | 502 | 503 | 504 => ErrorKind::Transient,
            _ => ErrorKind::Other,
        }
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
        if let Some(handle) = &self.statement_handle {
            write!(f, " (statement {handle})")?;
        }
        Ok(())
    }
}

/// Every way a Snowflake call can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnowflakeError {
    /// Snowflake answered with an error.
    #[error("{0}")]
    Api(ApiError),
    /// The request never got a complete answer (connect, TLS, reset, truncated body).
    #[error("cannot reach Snowflake at {url}: {detail}")]
    Transport { url: String, detail: String },
    /// Our deadline passed before Snowflake finished; the statement may still complete, and a
    /// resubmission with the same requestId and `retry=true` will not run it twice.
    #[error("statement did not finish before the deadline (request {request_id}{})", handle_suffix(.statement_handle))]
    Deadline {
        request_id: String,
        statement_handle: Option<String>,
    },
    /// Snowflake answered something this client does not understand.
    #[error("unexpected answer from Snowflake (HTTP {http_status}): {detail}")]
    Protocol { http_status: u16, detail: String },
    /// Our settings are wrong; the message names the setting and the fix.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The credentials secret could not be read or is invalid.
    #[error("{0}")]
    Secret(#[from] crate::secrets::SecretError),
}

fn handle_suffix(handle: &Option<String>) -> String {
    handle
        .as_ref()
        .map(|h| format!(", statement {h}"))
        .unwrap_or_default()
}

impl SnowflakeError {
    /// The class of failure, deciding retry, quarantine or stop.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnowflakeError::Api(api) => api.kind(),
            SnowflakeError::Transport { .. } => ErrorKind::Transient,
            SnowflakeError::Deadline { .. } => ErrorKind::Timeout,
            SnowflakeError::Protocol { http_status, .. } if *http_status >= 500 => {
                ErrorKind::Transient
            }
            SnowflakeError::Protocol { .. } => ErrorKind::Other,
            SnowflakeError::Config(_) | SnowflakeError::Secret(_) => ErrorKind::Configuration,
        }
    }

    /// Snowflake's error code, when Snowflake gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SnowflakeError::Api(api) if !api.code.is_empty() => Some(&api.code),
            _ => None,
        }
    }

    fn mentions(&self, text: &str) -> bool {
        matches!(self, SnowflakeError::Api(api) if api.message.contains(text))
    }

    /// What a person should do about it, in our words.
    pub fn fix(&self) -> &'static str {
        let code = self.code().unwrap_or_default();
        match (self.kind(), code) {
            (_, "390100") => {
                "Snowflake refused the user or password: use the service user (not a personal login), rotate its credentials and update the secret."
            }
            (_, "390144") if self.mentions("394304") || self.mentions("FINGERPRINT_MISMATCH") => {
                "JWT rejected: public key fingerprint mismatch - register the key shown by connection-test with ALTER USER ... SET RSA_PUBLIC_KEY."
            }
            (_, "394304") => {
                "JWT rejected: public key fingerprint mismatch - register the key shown by connection-test with ALTER USER ... SET RSA_PUBLIC_KEY."
            }
            (_, "390144") => {
                "JWT rejected: check that the secret's account and user match Snowflake's, that the key's fingerprint (shown by connection-test) equals RSA_PUBLIC_KEY_FP in DESC USER, and that the machine clock is right."
            }
            (_, "390422") => {
                "Network policy blocks login: add the loader's egress IPs to the network policy attached to the service user."
            }
            (_, "390432") => {
                "A programmatic access token needs a network policy on the service user: attach one that allows the loader's egress IPs."
            }
            (_, "394400") => {
                "The programmatic access token is invalid, expired or revoked: generate a new one for the service user and update the secret's token."
            }
            (_, "000608") => {
                "The warehouse is suspended and cannot auto-resume: ALTER WAREHOUSE ... SET AUTO_RESUME = TRUE and GRANT USAGE ON WAREHOUSE to the loader's role."
            }
            (_, "000606") => {
                "No active warehouse: set the secret's warehouse and GRANT USAGE ON WAREHOUSE to the loader's role."
            }
            (_, "090073") => {
                "The warehouse cannot resume because its resource monitor quota is used up: raise the quota or use another warehouse."
            }
            (ErrorKind::Authentication, _) => {
                "Snowflake refused the credentials: run connection-test and follow its fix."
            }
            (ErrorKind::Permission, _) => {
                "The role lacks a grant: GRANT USAGE on the warehouse, database and schema, CREATE TABLE on the schema and INSERT, SELECT on the tables to the loader's role (see infra/sql/setup.sql)."
            }
            (ErrorKind::Warehouse, _) => {
                "The warehouse is not usable: check it exists, AUTO_RESUME is on and the role has USAGE."
            }
            (ErrorKind::Data, _) => {
                "Snowflake refused some rows' data: they are quarantined in RAW_EVENTS_REJECTED with Snowflake's message."
            }
            (ErrorKind::Transient, _) => {
                "Snowflake is throttling or unavailable: the loader retries with backoff; nothing to do unless it persists."
            }
            (ErrorKind::Timeout, _) => {
                "The statement took too long: use a larger warehouse or smaller batches, or raise the deadline."
            }
            (ErrorKind::Configuration, _) => "Fix the setting named in the error.",
            (ErrorKind::Other, _) => {
                "Unexpected Snowflake error: look the statement up in query history by its handle."
            }
        }
    }
}
