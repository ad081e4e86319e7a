//! connection-test: an ordered diagnosis of everything between the secret and a row read back,
//! with the fix for every failure in our own words. Run by hand; `check` writes nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::event::{encode::JsonArray, parse_body};
use crate::secrets::{SecretSource, SnowflakeSettings};
use crate::snowflake::auth::{Credentials, KeyFormat};
use crate::snowflake::{
    Client, ErrorKind, QueryResult, RetryPolicy, SnowflakeError, Statement, Table,
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
    /// `table`, `insert`, `read_back`.
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
}

impl Report {
    /// The check called `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

const CHECKS: [&str; 10] = [
    "secret",
    "endpoint",
    "authentication",
    "role",
    "warehouse",
    "database",
    "schema",
    "table",
    "insert",
    "read_back",
];

/// Collects checks; once one fails, the rest are skipped with the reason.
struct Checks {
    done: Vec<Check>,
    started: Instant,
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
        }
    }
}

/// Runs the diagnosis against the secret `source` reads.
pub async fn run(source: &SecretSource, request: Request, deadline: Instant) -> Report {
    let mut checks = Checks {
        done: Vec::new(),
        started: Instant::now(),
    };
    let settings = match source.settings().await {
        Ok(settings) => settings,
        Err(e) => {
            let fix = secret_fix(&e.to_string());
            checks.fail("secret", e.to_string(), fix);
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
    role: String,
    warehouse: Option<String>,
    database: String,
    schema: String,
    public_key: Option<String>,
    fingerprint: Option<String>,
}

impl Names {
    fn of(settings: &SnowflakeSettings) -> Self {
        let key = match &settings.credentials {
            Credentials::KeyPair { key, .. } => Some(key),
            Credentials::Token(_) => None,
        };
        Names {
            user: settings.user.to_ascii_uppercase(),
            role: settings
                .session
                .role
                .clone()
                .unwrap_or_else(|| "<the user's default role>".into()),
            warehouse: settings.session.warehouse.clone(),
            database: settings.session.database.clone().unwrap_or_default(),
            schema: settings.session.schema.clone().unwrap_or_default(),
            public_key: key.map(|k| k.public_key().to_string()),
            fingerprint: key.map(|k| k.fingerprint().to_string()),
        }
    }

    fn grants(&self) -> String {
        let Names {
            role,
            database: db,
            schema,
            ..
        } = self;
        let warehouse = self.warehouse.as_deref().unwrap_or("<warehouse>");
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
    format!(
        "secret {secret_id} read; user {}, account {}, {method}",
        settings.user, settings.account.jwt_name
    )
}

fn secret_fix(error: &str) -> String {
    if error.contains("password:") {
        "Switch to key-pair authentication (generate a key, ALTER USER ... SET RSA_PUBLIC_KEY, store private_key in the secret) or store a programmatic access token as token.".into()
    } else if error.contains("cannot read secret") {
        "Check TRACKLAYER_SECRET_ID and that the function's role may call secretsmanager:GetSecretValue on that secret.".into()
    } else {
        "Correct the named field in the secret (see README, Credentials).".into()
    }
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

    let who = match client
        .execute(
            &Statement::new(
                "SELECT CURRENT_USER() AS U, CURRENT_ROLE() AS R, CURRENT_WAREHOUSE() AS W",
            )
            .tag("tracklayer:connection-test"),
            deadline,
        )
        .await
    {
        Ok(result) => result,
        Err(e) => {
            let fix = auth_fix(&e, names);
            checks.fail("authentication", e.to_string(), fix);
            return;
        }
    };
    checks.pass(
        "authentication",
        format!("signed in as {}", who.get(0, "U").unwrap_or(&names.user)),
    );
    checks.pass(
        "role",
        format!(
            "statements run as role {}",
            who.get(0, "R").unwrap_or("(none)")
        ),
    );

    if !check_warehouse(client, names, deadline, checks).await {
        return;
    }
    if !check_namespace(client, names, deadline, checks).await {
        return;
    }
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    for table in [Table::RawEvents, Table::Rejected] {
        match check_table(client, names, table, mode, deadline).await {
            TableState::Ready(detail) => found.push(detail),
            TableState::Missing(detail, fix) => warnings.push((detail, fix)),
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
    if mode == Mode::TestSync {
        *test_event_id = test_sync(client, names, deadline, checks).await;
    }
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
            "The programmatic access token is invalid, expired or revoked: ALTER USER {user} ADD PROGRAMMATIC ACCESS TOKEN ... and store the new token in the secret's token field."
        ),
        Some("390422") => format!(
            "Network policy blocks login: add the loader's egress IPs (the NAT gateway's) to the network policy attached to {user}, then run connection-test again."
        ),
        Some("390432") => format!(
            "A programmatic access token needs a network policy: create one allowing the loader's egress IPs and ALTER USER {user} SET NETWORK_POLICY = <policy>."
        ),
        _ if e.kind() == ErrorKind::Authentication => format!(
            "JWT rejected: check that the secret's account and user ({user}) are Snowflake's and the clock is right.{register}"
        ),
        _ => e.fix().to_string(),
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

async fn check_warehouse(
    client: &Client,
    names: &Names,
    deadline: Instant,
    checks: &mut Checks,
) -> bool {
    let Some(warehouse) = &names.warehouse else {
        checks.record(
            "warehouse",
            Status::Warn,
            "the secret names no warehouse: loads use the user's DEFAULT_WAREHOUSE".into(),
            "Add warehouse to the secret so loads never depend on the user's defaults.".into(),
        );
        return true;
    };
    let shown = match query(
        client,
        format!("SHOW WAREHOUSES LIKE {}", quote(warehouse)),
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
    if shown.rows.is_empty() {
        checks.fail(
            "warehouse",
            format!(
                "warehouse {warehouse} does not exist or role {} cannot see it",
                names.role
            ),
            format!(
                "GRANT USAGE ON WAREHOUSE {warehouse} TO ROLE {}; (or fix the secret's warehouse)",
                names.role
            ),
        );
        return false;
    }
    let state = shown.get(0, "state").unwrap_or("UNKNOWN").to_string();
    let auto_resume = shown
        .get(0, "auto_resume")
        .unwrap_or("true")
        .eq_ignore_ascii_case("true");
    let auto_suspend: Option<u64> = shown.get(0, "auto_suspend").and_then(|v| v.parse().ok());
    let size = shown.get(0, "size").unwrap_or("?").to_string();
    let detail = format!(
        "warehouse {warehouse}: {state}, size {size}, AUTO_RESUME {}, AUTO_SUSPEND {}",
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
            format!("ALTER WAREHOUSE {warehouse} SET AUTO_RESUME = TRUE; GRANT USAGE ON WAREHOUSE {warehouse} TO ROLE {}. {recommendation}", names.role),
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
    deadline: Instant,
    checks: &mut Checks,
) -> bool {
    let db = &names.database;
    let sql = format!(
        "SELECT SCHEMA_NAME FROM {db}.INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = {}",
        quote(&names.schema.to_ascii_uppercase())
    );
    let result = match query(client, sql, deadline).await {
        Ok(result) => result,
        Err(e) => {
            checks.fail(
                "database",
                format!("database {db} is not usable by role {}: {e}", names.role),
                format!(
                    "Create the database or GRANT USAGE ON DATABASE {db} TO ROLE {}; {}",
                    names.role,
                    names.grants()
                ),
            );
            return false;
        }
    };
    checks.pass("database", format!("database {db} is usable"));
    if result.rows.is_empty() {
        checks.fail(
            "schema",
            format!("schema {db}.{} does not exist or role {} cannot see it", names.schema, names.role),
            format!(
                "CREATE SCHEMA IF NOT EXISTS {db}.{schema}; GRANT USAGE ON SCHEMA {db}.{schema} TO ROLE {role}; GRANT CREATE TABLE ON SCHEMA {db}.{schema} TO ROLE {role};",
                schema = names.schema,
                role = names.role
            ),
        );
        return false;
    }
    checks.pass("schema", format!("schema {db}.{} is usable", names.schema));
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
    let (db, schema) = (&names.database, names.schema.to_ascii_uppercase());
    let full = format!("{db}.{schema}.{}", table.name());
    let sql = format!(
        "SELECT COLUMN_NAME, DATA_TYPE FROM {db}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
        quote(&schema),
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
                    "Make sure role {} has CREATE TABLE on {db}.{schema}, or create the tables from infra/sql/.",
                    names.role
                ),
            );
        }
        if let Err(e) = query(client, table.ddl(), deadline).await {
            return TableState::Broken(
                format!("{full} does not exist and cannot be created: {e}"),
                format!(
                    "GRANT CREATE TABLE ON SCHEMA {db}.{schema} TO ROLE {role}; or create the table from infra/sql/ and GRANT INSERT, SELECT ON TABLE {full} TO ROLE {role};",
                    role = names.role
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
    if let Err(e) = client
        .execute(
            &Table::RawEvents
                .insert(rows.finish())
                .tag("tracklayer:connection-test"),
            deadline,
        )
        .await
    {
        let fix = match e.kind() {
            ErrorKind::Permission => names.grants(),
            _ => e.fix().to_string(),
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
                names.database, names.schema, names.role
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

/// A check's default deadline when run by hand.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(60);
