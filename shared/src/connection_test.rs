//! connection-test: an ordered diagnosis of everything between the secret and a row read back,
//! with the fix for every failure in our own words. Run by hand; `check` writes nothing.

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::event::{encode::JsonArray, parse_body};
use crate::secrets::{SecretError, SecretSource, SnowflakeSettings};
use crate::snowflake::auth::{Credentials, KeyFormat};
use crate::snowflake::error::seen_address;
use crate::snowflake::identifier::CASE_RULE;
use crate::snowflake::{
    Client, ErrorKind, Identifier, QueryResult, RetryPolicy, SnowflakeError, Statement, Table,
};

/// `event_name` of the test event, easy to filter out downstream.
pub const TEST_EVENT_NAME: &str = "tracklayer_connection_test";
/// Auto-suspend above this many seconds earns a warning.
const AUTO_SUSPEND_WARN_SECONDS: u64 = 600;

/// What to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every check, writing nothing.
    Check,
    /// Every check, then write one test event and read it back.
    #[default]
    TestSync,
}

/// The invocation input: `{"mode": "check" | "test_sync"}`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Request {
    /// Default `test_sync`.
    #[serde(default)]
    pub mode: Mode,
}

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Fine.
    Pass,
    /// Broken; `fix` says what to do.
    Fail,
    /// Works, but costs money or will break; `fix` says what to change.
    Warn,
    /// Not run, because an earlier check failed.
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `secret`, `endpoint`, `authentication`, `role`, `warehouse`, `database`, `schema`,
    /// `table`, `quarantine`, `insert`, `read_back`.
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do (empty when nothing).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
    /// Time the check took.
    pub duration_ms: u64,
}

/// The whole answer, also logged as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The test event's id (test_sync).
    pub test_event_id: Option<String>,
    /// Rows of `RAW_EVENTS_REJECTED` with `REJECTED_AT` in the last 24 hours, by `REASON`
    /// (absent when the table could not be read; the `quarantine` check says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejections_last_24h: Option<std::collections::BTreeMap<String, u64>>,
}

impl Report {
    /// The check called `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

const CHECKS: [&str; 11] = [
    "secret",
    "endpoint",
    "authentication",
    "role",
    "warehouse",
    "database",
    "schema",
    "table",
    "quarantine",
    "insert",
    "read_back",
];

/// Collects checks; once one fails, the rest are skipped with the reason.
struct Checks {
    done: Vec<Check>,
    started: Instant,
    rejections: Option<std::collections::BTreeMap<String, u64>>,
}

impl Checks {
    fn record(&mut self, name: &'static str, status: Status, detail: String, fix: String) {
        let now = Instant::now();
        self.done.push(Check {
            name,
            status,
            detail,
            fix,
            duration_ms: now.duration_since(self.started).as_millis() as u64,
        });
        self.started = now;
    }

    fn pass(&mut self, name: &'static str, detail: String) {
        self.record(name, Status::Pass, detail, String::new());
    }

    fn fail(&mut self, name: &'static str, detail: String, fix: String) {
        self.record(name, Status::Fail, detail, fix);
    }

    fn failed(&self) -> bool {
        self.done.iter().any(|c| c.status == Status::Fail)
    }

    fn finish(mut self, test_event_id: Option<String>) -> Report {
        let blocker = self
            .done
            .iter()
            .find(|c| c.status == Status::Fail)
            .map(|c| c.name);
        for name in CHECKS {
            if self.done.iter().all(|c| c.name != name) {
                let detail = match blocker {
                    Some(b) => format!("skipped: the {b} check failed"),
                    None => "skipped: check mode writes nothing".into(),
                };
                self.done.push(Check {
                    name,
                    status: Status::Skip,
                    detail,
                    fix: String::new(),
                    duration_ms: 0,
                });
            }
        }
        Report {
            ok: !self.failed(),
            checks: self.done,
            test_event_id,
            rejections_last_24h: self.rejections,
        }
    }
}

/// Runs the diagnosis against the secret `source` reads.
pub async fn run(source: &SecretSource, request: Request, deadline: Instant) -> Report {
    let mut checks = Checks {
        done: Vec::new(),
        started: Instant::now(),
        rejections: None,
    };
    let settings = match source.settings().await {
        Ok(settings) => settings,
        Err(e) => {
            checks.fail("secret", e.to_string(), secret_fix(&e));
            return checks.finish(None);
        }
    };
    checks.pass("secret", describe_secret(source.secret_id(), &settings));
    let names = Names::of(&settings);
    let client = match settings.into_client(RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    }) {
        Ok(client) => client,
        Err(e) => {
            checks.fail(
                "endpoint",
                e.to_string(),
                "check the secret's account and host".into(),
            );
            return checks.finish(None);
        }
    };
    let mut test_event_id = None;
    diagnose(
        &client,
        &names,
        request.mode,
        deadline,
        &mut checks,
        &mut test_event_id,
    )
    .await;
    checks.finish(test_event_id)
}

/// The configured names, for fixes that a person can paste.
struct Names {
    user: String,
    role: Option<Identifier>,
    warehouse: Option<Identifier>,
    database: Identifier,
    schema: Identifier,
    public_key: Option<String>,
    fingerprint: Option<String>,
}

impl Names {
    fn of(settings: &SnowflakeSettings) -> Self {
        let key = match &settings.credentials {
            Credentials::KeyPair { key, .. } => Some(key),
            Credentials::Token(_) => None,
        };
        let session = &settings.session;
        Names {
            user: settings.user.to_ascii_uppercase(),
            role: session.role.clone(),
            warehouse: session.warehouse.clone(),
            database: session
                .database
                .clone()
                .expect("the secret's database is required"),
            schema: session
                .schema
                .clone()
                .expect("the secret's schema is required"),
            public_key: key.map(|k| k.public_key().to_string()),
            fingerprint: key.map(|k| k.fingerprint().to_string()),
        }
    }

    /// The role as SQL, or a placeholder when the secret names none.
    fn role(&self) -> String {
        self.role
            .as_ref()
            .map_or("<the user's default role>".into(), ToString::to_string)
    }

    fn grants(&self) -> String {
        let (role, db, schema) = (self.role(), &self.database, &self.schema);
        let warehouse = self
            .warehouse
            .as_ref()
            .map_or("<warehouse>".into(), ToString::to_string);
        format!(
            "Run as an admin: GRANT USAGE ON WAREHOUSE {warehouse} TO ROLE {role}; GRANT USAGE ON DATABASE {db} TO ROLE {role}; GRANT USAGE ON SCHEMA {db}.{schema} TO ROLE {role}; GRANT CREATE TABLE ON SCHEMA {db}.{schema} TO ROLE {role}; GRANT INSERT, SELECT ON ALL TABLES IN SCHEMA {db}.{schema} TO ROLE {role}; GRANT INSERT, SELECT ON FUTURE TABLES IN SCHEMA {db}.{schema} TO ROLE {role};"
        )
    }
}

fn describe_secret(secret_id: &str, settings: &SnowflakeSettings) -> String {
    let method = match &settings.credentials {
        Credentials::KeyPair { key, format } => {
            let kind = match format {
                KeyFormat::EncryptedPkcs8 => "encrypted key-pair (PKCS#8 with passphrase)",
                KeyFormat::Pkcs8 => "key-pair (PKCS#8)",
                KeyFormat::Pkcs1 => "key-pair (PKCS#1)",
            };
            format!(
                "{kind}; public key fingerprint {} (compare with RSA_PUBLIC_KEY_FP in DESC USER {})",
                key.fingerprint(),
                settings.user.to_ascii_uppercase()
            )
        }
        Credentials::Token(_) => "programmatic access token".into(),
    };
    let session = &settings.session;
    let names: Vec<String> = [
        ("database", &session.database),
        ("schema", &session.schema),
        ("warehouse", &session.warehouse),
        ("role", &session.role),
    ]
    .into_iter()
    .filter_map(|(field, id)| id.as_ref().map(|id| format!("{field} {}", id.as_str())))
    .collect();
    format!(
        "secret {secret_id} read; user {}, account {}, {method}; {}",
        settings.user,
        settings.account.jwt_name,
        names.join(", ")
    )
}

fn secret_fix(error: &SecretError) -> String {
    match error {
        SecretError::Fetch { .. } => "Check TRACKLAYER_SECRET_ID and that the function's role may call secretsmanager:GetSecretValue on that secret.".into(),
        SecretError::NotText(_) => "Store the settings as the secret's JSON text (SecretString), not as binary.".into(),
        SecretError::Invalid { source, .. } => match source.field() {
            "password" => "Switch to key-pair authentication (generate a key, ALTER USER ... SET RSA_PUBLIC_KEY, store private_key in the secret) or store a programmatic access token as token.".into(),
            field @ ("database" | "schema" | "warehouse" | "role") => format!(
                "Correct the secret's {field}: {CASE_RULE}. A name with other characters (a hyphen, a space) must have been created in double quotes: write it with them."
            ),
            field => format!("Correct the secret's {field} field (see README, Configuration)."),
        },
    }
}

/// The check that reports a context error Snowflake answered instead of running a statement.
fn context_check(e: &SnowflakeError) -> Option<&'static str> {
    match e.code()? {
        "390189" => Some("role"),
        "000606" | "391918" => Some("warehouse"),
        "090105" | "390201" => Some("database"),
        "090106" => Some("schema"),
        _ => None,
    }
}

/// The session's context as Snowflake resolved it: `CURRENT_*()` of a statement run with the
/// secret's names (NULL when a name matched no usable object).
struct Context {
    user: Option<String>,
    role: Option<String>,
    warehouse: Option<String>,
    database: Option<String>,
    schema: Option<String>,
}

const CONTEXT_SQL: &str = "SELECT CURRENT_USER(), CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE(), CURRENT_SCHEMA()";

impl Context {
    fn of(result: &QueryResult) -> Self {
        let value = |i: usize| {
            result
                .rows
                .first()
                .and_then(|row| row.get(i).cloned().flatten())
        };
        Context {
            user: value(0),
            role: value(1),
            warehouse: value(2),
            database: value(3),
            schema: value(4),
        }
    }
}

/// How to write `exact` in the secret so it means exactly that name.
fn spelling(exact: &str) -> String {
    match Identifier::parse(exact) {
        Ok(id) if id.as_str() == exact => exact.to_string(),
        _ => format!("\"{}\"", exact.replace('"', "\"\"")),
    }
}

/// The other reading of what the secret wrote: `tracklayer_wh` could have been meant as the
/// quoted lower-case name, `"Tracklayer_wh"` as the plain upper-case one.
fn other_reading(id: &Identifier) -> Option<String> {
    let written = id.written();
    let other = if written.starts_with('"') {
        Identifier::parse(&written[1..written.len() - 1])
            .ok()?
            .as_str()
            .to_string()
    } else {
        written.to_string()
    };
    (other != id.as_str()).then_some(other)
}

/// `the secret's warehouse is "Tracklayer_wh", which means exactly Tracklayer_wh`.
fn means(field: &str, id: &Identifier) -> String {
    if id.written() == id.as_str() {
        format!("the secret's {field} is {}", id.written())
    } else {
        format!(
            "the secret's {field} is {}, which means exactly {}",
            id.written(),
            id.as_str()
        )
    }
}

/// Detail and fix when Snowflake's `CURRENT_<FIELD>()` is not the configured `field` name.
fn mismatch(field: &str, id: &Identifier, current: Option<&str>, role: &str) -> (String, String) {
    let upper = field.to_ascii_uppercase();
    let means = means(field, id);
    let grant = if field == "role" {
        format!("GRANT ROLE {id} TO USER <the service user>")
    } else {
        format!("GRANT USAGE ON {upper} {id} TO ROLE {role}")
    };
    match current {
        Some(current) => (
            format!("{means}, but statements run in {field} {current} (CURRENT_{upper}())"),
            format!(
                "Write the secret's {field} as {} to use {current}, or {grant}; {CASE_RULE}.",
                json_string(&spelling(current)),
            ),
        ),
        None => {
            let hint = other_reading(id)
                .map(|other| {
                    format!(
                        " If SHOW {upper}S lists it as {other}, write the secret's {field} as {}.",
                        json_string(&spelling(&other))
                    )
                })
                .unwrap_or_default();
            (
                format!(
                    "{means}, but CURRENT_{upper}() is NULL: no {field} of exactly that name is usable by role {role}"
                ),
                format!(
                    "Names are case-sensitive: {CASE_RULE}.{hint} Otherwise create it or {grant}."
                ),
            )
        }
    }
}

/// A secret value as it goes into the JSON (quotes escaped).
fn json_string(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}

async fn diagnose(
    client: &Client,
    names: &Names,
    mode: Mode,
    deadline: Instant,
    checks: &mut Checks,
    test_event_id: &mut Option<String>,
) {
    match client.probe(deadline).await {
        Ok(status) => checks.pass(
            "endpoint",
            format!("{} answered HTTP {status}", client.base_url()),
        ),
        Err(e) => {
            checks.fail(
                "endpoint",
                e.to_string(),
                "Check the secret's account identifier (e.g. xy12345.eu-central-1 or myorg-myaccount) and, if set, host; make sure the function's network (VPC, NAT, proxy) can reach it on port 443.".into(),
            );
            return;
        }
    }

    let who = match query(client, CONTEXT_SQL.into(), deadline).await {
        Ok(result) => Context::of(&result),
        Err(e) => {
            match context_check(&e) {
                Some(failed)
                    if e.kind() == ErrorKind::Configuration || e.kind() == ErrorKind::Warehouse =>
                {
                    checks.pass(
                        "authentication",
                        "Snowflake accepted the credentials and refused the request's context"
                            .into(),
                    );
                    for name in ["role", "warehouse", "database", "schema"]
                        .into_iter()
                        .take_while(|n| *n != failed)
                    {
                        checks.record(
                            name,
                            Status::Warn,
                            format!("not verified: Snowflake refused the request's {failed} first"),
                            format!("Run connection-test again once the {failed} check passes."),
                        );
                    }
                    checks.fail(failed, e.to_string(), e.fix());
                }
                _ => {
                    let fix = auth_fix(&e, names);
                    checks.fail("authentication", e.to_string(), fix);
                }
            }
            return;
        }
    };
    checks.pass(
        "authentication",
        format!(
            "signed in as {}",
            who.user.as_deref().unwrap_or(&names.user)
        ),
    );
    if !check_role(names, &who, checks) {
        return;
    }
    if !check_warehouse(client, names, &who, deadline, checks).await {
        return;
    }
    if !check_namespace(client, names, &who, deadline, checks).await {
        return;
    }
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    let mut quarantine_exists = true;
    for table in [Table::RawEvents, Table::Rejected] {
        match check_table(client, names, table, mode, deadline).await {
            TableState::Ready(detail) => found.push(detail),
            TableState::Missing(detail, fix) => {
                quarantine_exists &= table != Table::Rejected;
                warnings.push((detail, fix));
            }
            TableState::Broken(detail, fix) => {
                checks.fail("table", detail, fix);
                return;
            }
        }
    }
    if let Some((_, fix)) = warnings.first() {
        let detail = found
            .into_iter()
            .chain(warnings.iter().map(|(d, _)| d.clone()))
            .collect::<Vec<_>>()
            .join("; ");
        checks.record("table", Status::Warn, detail, fix.clone());
    } else {
        checks.pass("table", found.join("; "));
    }
    if quarantine_exists {
        check_quarantine(client, names, deadline, checks).await;
    } else {
        checks.record(
            "quarantine",
            Status::Skip,
            "skipped: RAW_EVENTS_REJECTED does not exist yet, so nothing was rejected".into(),
            String::new(),
        );
    }
    if mode == Mode::TestSync {
        *test_event_id = test_sync(client, names, deadline, checks).await;
    }
}

/// The quarantine's last 24 hours: one GROUP BY over a `REJECTED_AT` window, on the warehouse
/// the other checks use. A role that may not read the table gets a warning naming the grant;
/// the run does not fail, since loading needs only INSERT.
async fn check_quarantine(client: &Client, names: &Names, deadline: Instant, checks: &mut Checks) {
    let full = format!(
        "{}.{}.{}",
        names.database,
        names.schema,
        Table::Rejected.name()
    );
    let sql = format!(
        "SELECT REASON, COUNT(*) AS REJECTIONS FROM {} WHERE REJECTED_AT >= DATEADD('hour', -24, CURRENT_TIMESTAMP()) GROUP BY REASON ORDER BY REJECTIONS DESC, REASON",
        Table::Rejected.name()
    );
    let result = match query(client, sql, deadline).await {
        Ok(result) => result,
        Err(e) => {
            let fix = match e.kind() {
                ErrorKind::Permission => format!(
                    "To see rejections here, GRANT SELECT ON TABLE {full} TO ROLE {}; (loading needs only INSERT).",
                    names.role()
                ),
                _ => e.fix(),
            };
            checks.record(
                "quarantine",
                Status::Warn,
                format!("cannot read the rejections of the last 24 hours from {full}: {e}"),
                fix,
            );
            return;
        }
    };
    let mut by_reason = std::collections::BTreeMap::new();
    for i in 0..result.rows.len() {
        let reason = result.get(i, "REASON").unwrap_or_default().to_string();
        let n: u64 = result
            .get(i, "REJECTIONS")
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        *by_reason.entry(reason).or_insert(0) += n;
    }
    let total: u64 = by_reason.values().sum();
    let detail = if total == 0 {
        format!("no rejections in {full} in the last 24 hours")
    } else {
        let mut listed: Vec<(&String, &u64)> = by_reason.iter().collect();
        listed.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = listed.iter().map(|(r, n)| format!("{r} {n}")).collect();
        format!(
            "{total} rejections in {full} in the last 24 hours: {} (examples: infra/sql/quarantine_queries.sql)",
            parts.join(", ")
        )
    };
    checks.pass("quarantine", detail);
    checks.rejections = Some(by_reason);
}

fn auth_fix(e: &SnowflakeError, names: &Names) -> String {
    let user = &names.user;
    let register = match (&names.public_key, &names.fingerprint) {
        (Some(key), Some(fp)) => format!(
            " The secret's key has fingerprint {fp}; if DESC USER {user} shows another RSA_PUBLIC_KEY_FP, register this key: ALTER USER {user} SET RSA_PUBLIC_KEY='{key}'; (use RSA_PUBLIC_KEY_2 to rotate without downtime)."
        ),
        _ => String::new(),
    };
    match e.code() {
        Some("390100") => format!(
            "Incorrect username or password: use the service user {user}, not a personal login; rotate its credentials and update the secret."
        ),
        Some("394400") => format!(
            "Snowflake refused the programmatic access token, for one of two reasons: the token is invalid, expired or revoked (ALTER USER {user} ADD PROGRAMMATIC ACCESS TOKEN ... and store the new token in the secret's token field), or {user} has no network policy, which a token requires (ALTER USER {user} SET NETWORK_POLICY = <a policy allowing the loader's egress IPs>)."
        ),
        Some("390422") => {
            let seen = match e {
                SnowflakeError::Api(api) => seen_address(api),
                _ => {
                    "Snowflake did not say which address it saw: add the loader's egress IPs".into()
                }
            };
            format!(
                "Network policy blocks login: {seen} (the NAT gateway's Elastic IP when the functions run in a VPC, see docs/snowflake-setup.md) to the network policy attached to {user}, then run connection-test again."
            )
        }
        Some("390432") => format!(
            "A programmatic access token needs a network policy: create one allowing the loader's egress IPs and ALTER USER {user} SET NETWORK_POLICY = <policy>."
        ),
        Some("390144") => {
            let reason = match e {
                SnowflakeError::Api(api) => api.login_failure_id(),
                _ => None,
            }
            .map(|id| format!(
                " Snowflake logged the reason under login failure {id}; an administrator (ACCOUNTADMIN, or a role with MONITOR) reads it with: SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('{id}'), 'errorCode'); (for example JWT_TOKEN_INVALID_PUBLIC_KEY_FINGERPRINT_MISMATCH: register the key below)."
            ))
            .unwrap_or_default();
            format!(
                "JWT rejected.{reason} Check that the secret's account and user ({user}) are Snowflake's and the clock is right.{register}"
            )
        }
        _ if e.kind() == ErrorKind::Authentication => format!(
            "Snowflake refused the credentials: check that the secret's account and user ({user}) are Snowflake's and the clock is right.{register}"
        ),
        _ => e.fix(),
    }
}

async fn query(
    client: &Client,
    sql: String,
    deadline: Instant,
) -> Result<QueryResult, SnowflakeError> {
    client
        .execute(
            &Statement::new(sql).tag("tracklayer:connection-test"),
            deadline,
        )
        .await
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn check_role(names: &Names, who: &Context, checks: &mut Checks) -> bool {
    let current = who.role.as_deref();
    match &names.role {
        None => checks.pass(
            "role",
            format!(
                "the secret names no role: statements run as the user's default role {}",
                current.unwrap_or("(none)")
            ),
        ),
        Some(role) if current == Some(role.as_str()) => {
            checks.pass("role", format!("statements run as role {}", role.as_str()));
        }
        Some(role) => {
            let (detail, fix) = mismatch("role", role, current, &names.role());
            checks.fail("role", detail, fix);
            return false;
        }
    }
    true
}

async fn check_warehouse(
    client: &Client,
    names: &Names,
    who: &Context,
    deadline: Instant,
    checks: &mut Checks,
) -> bool {
    let Some(warehouse) = &names.warehouse else {
        checks.record(
            "warehouse",
            Status::Warn,
            format!(
                "the secret names no warehouse: loads use the user's DEFAULT_WAREHOUSE ({})",
                who.warehouse.as_deref().unwrap_or("none")
            ),
            "Add warehouse to the secret so loads never depend on the user's defaults.".into(),
        );
        return true;
    };
    let role = names.role();
    // LIKE ignores case (and `_` matches any character): the exact name is found in the rows.
    let shown = match query(
        client,
        format!("SHOW WAREHOUSES LIKE {}", warehouse.literal()),
        deadline,
    )
    .await
    {
        Ok(result) => result,
        Err(e) => {
            checks.fail("warehouse", e.to_string(), names.grants());
            return false;
        }
    };
    let row = (0..shown.rows.len()).find(|&i| shown.get(i, "name") == Some(warehouse.as_str()));
    let Some(row) = row else {
        let other = (0..shown.rows.len())
            .filter_map(|i| shown.get(i, "name"))
            .find(|name| name.eq_ignore_ascii_case(warehouse.as_str()));
        match other {
            Some(other) => checks.fail(
                "warehouse",
                format!(
                    "{}; SHOW WAREHOUSES has no warehouse of that name, but has {other}",
                    means("warehouse", warehouse)
                ),
                format!(
                    "Write the secret's warehouse as {} to use {other}: {CASE_RULE}.",
                    json_string(&spelling(other))
                ),
            ),
            None => checks.fail(
                "warehouse",
                format!(
                    "warehouse {} does not exist or role {role} cannot see it",
                    warehouse.as_str()
                ),
                format!(
                    "GRANT USAGE ON WAREHOUSE {warehouse} TO ROLE {role}; (or fix the secret's warehouse: {CASE_RULE})"
                ),
            ),
        }
        return false;
    };
    if who.warehouse.as_deref() != Some(warehouse.as_str()) {
        let (detail, fix) = mismatch("warehouse", warehouse, who.warehouse.as_deref(), &role);
        checks.fail("warehouse", detail, fix);
        return false;
    }
    let state = shown.get(row, "state").unwrap_or("UNKNOWN").to_string();
    let auto_resume = shown
        .get(row, "auto_resume")
        .unwrap_or("true")
        .eq_ignore_ascii_case("true");
    let auto_suspend: Option<u64> = shown.get(row, "auto_suspend").and_then(|v| v.parse().ok());
    let size = shown.get(row, "size").unwrap_or("?").to_string();
    let detail = format!(
        "warehouse {}: {state}, size {size}, AUTO_RESUME {}, AUTO_SUSPEND {}",
        warehouse.as_str(),
        if auto_resume { "TRUE" } else { "FALSE" },
        auto_suspend.map_or("never".to_string(), |s| format!("{s} s"))
    );
    let recommendation = format!(
        "Recommended for this loader: ALTER WAREHOUSE {warehouse} SET AUTO_RESUME = TRUE AUTO_SUSPEND = 60; an X-Small is enough for most stores, ideally dedicated to loading."
    );
    if !auto_resume && state != "STARTED" {
        checks.fail(
            "warehouse",
            format!("{detail}: suspended and cannot resume, so every load fails (000608)"),
            format!("ALTER WAREHOUSE {warehouse} SET AUTO_RESUME = TRUE; GRANT USAGE ON WAREHOUSE {warehouse} TO ROLE {role}. {recommendation}"),
        );
        return false;
    }
    if !auto_resume {
        checks.record(
            "warehouse",
            Status::Warn,
            format!("{detail}: loads fail once it suspends"),
            recommendation,
        );
    } else if auto_suspend.is_none_or(|s| s == 0) {
        checks.record(
            "warehouse",
            Status::Warn,
            format!("{detail}: it never suspends, so it bills every second of every day (an X-Small is 1 credit per hour, about 720 credits a month)"),
            recommendation,
        );
    } else if auto_suspend.is_some_and(|s| s > AUTO_SUSPEND_WARN_SECONDS) {
        let minutes = auto_suspend.unwrap_or_default() / 60;
        checks.record(
            "warehouse",
            Status::Warn,
            format!(
                "{detail}: after each load it keeps billing for {minutes} minutes of idle time"
            ),
            recommendation,
        );
    } else {
        checks.pass("warehouse", detail);
    }
    true
}

async fn check_namespace(
    client: &Client,
    names: &Names,
    who: &Context,
    deadline: Instant,
    checks: &mut Checks,
) -> bool {
    let (db, schema, role) = (&names.database, &names.schema, names.role());
    if who.database.as_deref() != Some(db.as_str()) {
        let (detail, fix) = mismatch("database", db, who.database.as_deref(), &role);
        checks.fail("database", detail, fix);
        return false;
    }
    let sql = format!(
        "SELECT SCHEMA_NAME FROM {}.INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = {}",
        db.quoted(),
        schema.literal()
    );
    let result = match query(client, sql, deadline).await {
        Ok(result) => result,
        Err(e) => {
            checks.fail(
                "database",
                format!("database {} is not usable by role {role}: {e}", db.as_str()),
                format!(
                    "Create the database or GRANT USAGE ON DATABASE {db} TO ROLE {role}; {}",
                    names.grants()
                ),
            );
            return false;
        }
    };
    checks.pass("database", format!("database {} is usable", db.as_str()));
    if result.rows.is_empty() {
        checks.fail(
            "schema",
            format!(
                "schema {}.{} does not exist or role {role} cannot see it",
                db.as_str(),
                schema.as_str()
            ),
            format!(
                "CREATE SCHEMA IF NOT EXISTS {db}.{schema}; GRANT USAGE ON SCHEMA {db}.{schema} TO ROLE {role}; GRANT CREATE TABLE ON SCHEMA {db}.{schema} TO ROLE {role}; (or fix the secret's schema: {CASE_RULE})"
            ),
        );
        return false;
    }
    if who.schema.as_deref() != Some(schema.as_str()) {
        let (detail, fix) = mismatch("schema", schema, who.schema.as_deref(), &role);
        checks.fail("schema", detail, fix);
        return false;
    }
    checks.pass(
        "schema",
        format!("schema {}.{} is usable", db.as_str(), schema.as_str()),
    );
    true
}

/// What a table check found.
enum TableState {
    /// Exists (or was created) with the expected columns.
    Ready(String),
    /// Does not exist and check mode does not create it.
    Missing(String, String),
    /// Unusable: detail and fix.
    Broken(String, String),
}

/// Compares a table's columns with what the loader writes; creates it when missing
/// (test_sync only).
async fn check_table(
    client: &Client,
    names: &Names,
    table: Table,
    mode: Mode,
    deadline: Instant,
) -> TableState {
    let (db, schema, role) = (&names.database, &names.schema, names.role());
    let full = format!("{db}.{schema}.{}", table.name());
    let sql = format!(
        "SELECT COLUMN_NAME, DATA_TYPE FROM {}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
        db.quoted(),
        schema.literal(),
        quote(table.name())
    );
    let mut columns = match query(client, sql.clone(), deadline).await {
        Ok(result) => result,
        Err(e) => {
            return TableState::Broken(
                format!("cannot read {full}'s columns: {e}"),
                names.grants(),
            );
        }
    };
    let mut created = "";
    if columns.rows.is_empty() {
        if mode == Mode::Check {
            return TableState::Missing(
                format!("{full} does not exist yet; the first load creates it"),
                format!(
                    "Make sure role {role} has CREATE TABLE on {db}.{schema}, or create the tables from infra/sql/."
                ),
            );
        }
        if let Err(e) = query(client, table.ddl(), deadline).await {
            return TableState::Broken(
                format!("{full} does not exist and cannot be created: {e}"),
                format!(
                    "GRANT CREATE TABLE ON SCHEMA {db}.{schema} TO ROLE {role}; or create the table from infra/sql/ and GRANT INSERT, SELECT ON TABLE {full} TO ROLE {role};"
                ),
            );
        }
        created = " (created now)";
        columns = match query(client, sql, deadline).await {
            Ok(result) => result,
            Err(e) => return TableState::Broken(e.to_string(), names.grants()),
        };
    }
    let problems = column_problems(table, &columns);
    if !problems.is_empty() {
        return TableState::Broken(
            format!(
                "{full} does not match what the loader writes: {}",
                problems.join("; ")
            ),
            format!(
                "Add or alter the listed columns to match infra/sql/ (ALTER TABLE {full} ADD COLUMN <name> <type>), or rename the table and let the loader create it."
            ),
        );
    }
    TableState::Ready(format!("{full} has the expected columns{created}"))
}

fn column_problems(table: Table, columns: &QueryResult) -> Vec<String> {
    let found: Vec<(String, String)> = (0..columns.rows.len())
        .map(|i| {
            (
                columns
                    .get(i, "COLUMN_NAME")
                    .unwrap_or_default()
                    .to_ascii_uppercase(),
                columns
                    .get(i, "DATA_TYPE")
                    .unwrap_or_default()
                    .to_ascii_uppercase(),
            )
        })
        .collect();
    let mut problems = Vec::new();
    for (name, expected) in table.expected_columns() {
        match found.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("missing column {name} ({expected})")),
            Some((_, actual)) if !compatible(expected, actual) => {
                problems.push(format!("column {name} is {actual}, expected {expected}"))
            }
            Some(_) => {}
        }
    }
    problems
}

fn compatible(expected: &str, actual: &str) -> bool {
    let text = |t: &str| matches!(t, "TEXT" | "VARCHAR" | "STRING");
    expected == actual || (text(expected) && text(actual))
}

async fn test_sync(
    client: &Client,
    names: &Names,
    deadline: Instant,
    checks: &mut Checks,
) -> Option<String> {
    let event_id = format!("tracklayer-connection-test-{}", uuid::Uuid::new_v4());
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let raw = serde_json::json!({
        "event_id": event_id,
        "event_time": now,
        "merchant_id": "tracklayer",
        "event_name": TEST_EVENT_NAME,
        "source": "connection-test",
    })
    .to_string();
    let parsed = parse_body(&raw);
    let Some(Ok(event)) = parsed.first() else {
        checks.fail(
            "insert",
            "the test event did not validate".into(),
            "This is a bug; please report it.".into(),
        );
        return None;
    };
    let mut rows = JsonArray::new();
    rows.push_event(event);
    let started = Instant::now();
    let mut insert = Table::RawEvents
        .insert(rows.finish())
        .tag("tracklayer:connection-test");
    insert.table = Some(Table::RawEvents);
    if let Err(e) = client.execute(&insert, deadline).await {
        let fix = match e.kind() {
            ErrorKind::Permission => names.grants(),
            _ => e.fix(),
        };
        checks.fail("insert", format!("writing the test event failed: {e}"), fix);
        return Some(event_id);
    }
    checks.pass(
        "insert",
        format!("wrote test event {event_id} (event_name {TEST_EVENT_NAME})"),
    );
    let read = query(
        client,
        format!(
            "SELECT EVENT_ID, EVENT_NAME FROM RAW_EVENTS WHERE EVENT_ID = {}",
            quote(&event_id)
        ),
        deadline,
    )
    .await;
    let round_trip = started.elapsed().as_millis();
    match read {
        Ok(result) if result.get(0, "EVENT_ID") == Some(event_id.as_str()) => checks.pass(
            "read_back",
            format!("read {event_id} back; write + read round trip {round_trip} ms"),
        ),
        Ok(_) => checks.fail(
            "read_back",
            format!("the test event {event_id} was written but is not visible"),
            format!(
                "GRANT SELECT ON ALL TABLES IN SCHEMA {}.{} TO ROLE {};",
                names.database,
                names.schema,
                names.role()
            ),
        ),
        Err(e) => checks.fail(
            "read_back",
            format!("reading the test event failed: {e}"),
            names.grants(),
        ),
    }
    Some(event_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn id(raw: &str) -> Identifier {
        Identifier::parse(raw).unwrap()
    }

    #[test]
    fn null_context_names_the_setting_both_spellings_and_the_case_rule() {
        let (detail, fix) = mismatch("warehouse", &id("analytics_wh"), None, "R");
        assert_eq!(
            detail,
            "the secret's warehouse is analytics_wh, which means exactly ANALYTICS_WH, but CURRENT_WAREHOUSE() is NULL: no warehouse of exactly that name is usable by role R"
        );
        assert!(
            fix.contains(r#"If SHOW WAREHOUSES lists it as analytics_wh, write the secret's warehouse as "\"analytics_wh\"""#),
            "{fix}"
        );
        assert!(fix.contains(CASE_RULE), "{fix}");
        assert!(
            fix.contains("GRANT USAGE ON WAREHOUSE ANALYTICS_WH TO ROLE R"),
            "{fix}"
        );

        let (_, fix) = mismatch("database", &id("\"Tracklayer\""), None, "R");
        assert!(
            fix.contains(r#"If SHOW DATABASES lists it as TRACKLAYER, write the secret's database as "TRACKLAYER""#),
            "{fix}"
        );
    }

    #[test]
    fn another_context_says_how_to_write_the_name_snowflake_uses() {
        let (detail, fix) = mismatch("role", &id("\"writer\""), Some("PUBLIC"), "\"writer\"");
        assert_eq!(
            detail,
            "the secret's role is \"writer\", which means exactly writer, but statements run in role PUBLIC (CURRENT_ROLE())"
        );
        assert!(
            fix.starts_with(r#"Write the secret's role as "PUBLIC" to use PUBLIC"#),
            "{fix}"
        );
        let (_, fix) = mismatch("schema", &id("EVENTS"), Some("Events"), "R");
        assert!(
            fix.starts_with(r#"Write the secret's schema as "\"Events\"" to use Events"#),
            "{fix}"
        );
    }

    #[test]
    fn secret_errors_get_their_fix_from_the_variant_not_the_text() {
        let invalid = |field: &'static str| SecretError::Invalid {
            secret_id: "s".into(),
            source: ConfigError::Invalid {
                field,
                detail: "cannot read secret password:".into(),
            },
        };
        assert!(secret_fix(&invalid("password")).starts_with("Switch to key-pair"));
        assert!(
            secret_fix(&invalid("warehouse"))
                .starts_with("Correct the secret's warehouse: names in the secret")
        );
        assert_eq!(
            secret_fix(&invalid("account")),
            "Correct the secret's account field (see README, Configuration)."
        );
        let fetch = SecretError::Fetch {
            secret_id: "password:".into(),
            detail: "denied".into(),
        };
        assert!(secret_fix(&fetch).starts_with("Check TRACKLAYER_SECRET_ID"));
        assert!(secret_fix(&SecretError::NotText("s".into())).contains("SecretString"));
    }

    #[test]
    fn context_errors_are_reported_by_the_check_of_their_setting() {
        let error = |code: &str| {
            SnowflakeError::from(crate::snowflake::ApiError {
                http_status: 422,
                code: code.into(),
                ..Default::default()
            })
        };
        for (code, check) in [
            ("390189", Some("role")),
            ("000606", Some("warehouse")),
            ("391918", Some("warehouse")),
            ("090105", Some("database")),
            ("390201", Some("database")),
            ("090106", Some("schema")),
            ("003001", None),
        ] {
            assert_eq!(context_check(&error(code)), check, "{code}");
        }
    }
}
