//! The checks, one function each, in the order connection-test runs them.

use tokio::time::Instant;

use crate::event::parse_body;
use crate::rows::JsonArray;
use crate::secrets::SnowflakeSettings;
use crate::snowflake::auth::{Credentials, KeyFormat};
use crate::snowflake::identifier::CASE_RULE;
use crate::snowflake::{
    Client, ErrorKind, Identifier, QueryResult, SnowflakeError, Statement, Table,
};

use super::fixes::{Names, json_string, means, mismatch, spelling};
use super::report::{Checks, Status};
use super::{Mode, TEST_EVENT_NAME};

/// Auto-suspend above this many seconds earns a warning.
const AUTO_SUSPEND_WARN_SECONDS: u64 = 600;

pub(super) fn describe_secret(secret_id: &str, settings: &SnowflakeSettings) -> String {
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

/// The session's context as Snowflake resolved it: `CURRENT_*()` of a statement run with the
/// secret's names (NULL when a name matched no usable object).
pub(super) struct Context {
    pub(super) user: Option<String>,
    pub(super) role: Option<String>,
    pub(super) warehouse: Option<String>,
    pub(super) database: Option<String>,
    pub(super) schema: Option<String>,
}

pub(super) const CONTEXT_SQL: &str = "SELECT CURRENT_USER(), CURRENT_ROLE(), CURRENT_WAREHOUSE(), CURRENT_DATABASE(), CURRENT_SCHEMA()";

impl Context {
    pub(super) fn of(result: &QueryResult) -> Self {
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

/// The quarantine's last 24 hours: one GROUP BY over a `REJECTED_AT` window, on the warehouse
/// the other checks use. A role that may not read the table gets a warning naming the grant;
/// the run does not fail, since loading needs only INSERT.
pub(super) async fn check_quarantine(probe: &Probe<'_>, checks: &mut Checks) {
    let names = probe.names;
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
    let result = match probe.query(sql).await {
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

/// What every check after sign-in works with: the client, the secret's names and the deadline.
pub(super) struct Probe<'a> {
    pub client: &'a Client,
    pub names: &'a Names,
    pub deadline: Instant,
}

impl Probe<'_> {
    /// Runs `sql`, tagged as connection-test's.
    pub async fn query(&self, sql: String) -> Result<QueryResult, SnowflakeError> {
        self.client
            .execute(
                &Statement::new(sql).tag("tracklayer:connection-test"),
                self.deadline,
            )
            .await
    }
}

pub(super) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Whether Snowflake's `CURRENT_<FIELD>()` is the configured `field` name; if not, fails the
/// `field` check with the mismatch.
fn in_use(
    field: &'static str,
    id: &Identifier,
    current: Option<&str>,
    role: &str,
    checks: &mut Checks,
) -> bool {
    if current == Some(id.as_str()) {
        return true;
    }
    let (detail, fix) = mismatch(field, id, current, role);
    checks.fail(field, detail, fix);
    false
}

pub(super) fn check_role(names: &Names, who: &Context, checks: &mut Checks) -> bool {
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

pub(super) async fn check_warehouse(probe: &Probe<'_>, who: &Context, checks: &mut Checks) -> bool {
    let names = probe.names;
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
    let shown = match probe
        .query(format!("SHOW WAREHOUSES LIKE {}", warehouse.literal()))
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
    if !in_use(
        "warehouse",
        warehouse,
        who.warehouse.as_deref(),
        &role,
        checks,
    ) {
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

pub(super) async fn check_namespace(probe: &Probe<'_>, who: &Context, checks: &mut Checks) -> bool {
    let names = probe.names;
    let (db, schema, role) = (&names.database, &names.schema, names.role());
    if !in_use("database", db, who.database.as_deref(), &role, checks) {
        return false;
    }
    let sql = format!(
        "SELECT SCHEMA_NAME FROM {}.INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = {}",
        db.quoted(),
        schema.literal()
    );
    let result = match probe.query(sql).await {
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
    if !in_use("schema", schema, who.schema.as_deref(), &role, checks) {
        return false;
    }
    checks.pass(
        "schema",
        format!("schema {}.{} is usable", db.as_str(), schema.as_str()),
    );
    true
}

/// What a table check found.
pub(super) enum TableState {
    /// Exists (or was created) with the expected columns.
    Ready(String),
    /// Does not exist and check mode does not create it.
    Missing(String, String),
    /// Unusable: detail and fix.
    Broken(String, String),
}

/// Compares a table's columns with what the loader writes; creates it when missing
/// (test_sync only).
pub(super) async fn check_table(probe: &Probe<'_>, table: Table, mode: Mode) -> TableState {
    let names = probe.names;
    let (db, schema, role) = (&names.database, &names.schema, names.role());
    let full = format!("{db}.{schema}.{}", table.name());
    let sql = format!(
        "SELECT COLUMN_NAME, DATA_TYPE FROM {}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
        db.quoted(),
        schema.literal(),
        quote(table.name())
    );
    let mut columns = match probe.query(sql.clone()).await {
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
        if let Err(e) = probe.query(table.ddl()).await {
            return TableState::Broken(
                format!("{full} does not exist and cannot be created: {e}"),
                format!(
                    "GRANT CREATE TABLE ON SCHEMA {db}.{schema} TO ROLE {role}; or create the table from infra/sql/ and GRANT INSERT, SELECT ON TABLE {full} TO ROLE {role};"
                ),
            );
        }
        created = " (created now)";
        columns = match probe.query(sql).await {
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

pub(super) fn column_problems(table: Table, columns: &QueryResult) -> Vec<String> {
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

pub(super) fn compatible(expected: &str, actual: &str) -> bool {
    let text = |t: &str| matches!(t, "TEXT" | "VARCHAR" | "STRING");
    expected == actual || (text(expected) && text(actual))
}

/// A test event's id and text: `tracklayer-connection-test-<way>-<uuid>`, event_name
/// [`TEST_EVENT_NAME`], the time now.
pub(super) fn test_event(way: &str) -> (String, String) {
    let event_id = format!("tracklayer-connection-test-{way}-{}", uuid::Uuid::new_v4());
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
    (event_id, raw)
}

pub(super) async fn test_sync(probe: &Probe<'_>, checks: &mut Checks) -> Option<String> {
    let names = probe.names;
    let (event_id, raw) = test_event("sql");
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
    if let Err(e) = probe.client.execute(&insert, probe.deadline).await {
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
    let read = probe
        .query(format!(
            "SELECT EVENT_ID, EVENT_NAME FROM RAW_EVENTS WHERE EVENT_ID = {}",
            quote(&event_id)
        ))
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
