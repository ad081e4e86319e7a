//! Helpers shared by the cross-process tests: the local stack's settings, its control
//! endpoints, and reading back through the drivers' protocol with snowflake-connector-python.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use tracklayer::flush::FlushConfig;
use tracklayer::load::{LoadMethod, LoadSettings, Loader};
use tracklayer::secrets::SecretSource;
use tracklayer::snowflake::RetryPolicy;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// The local stack's settings: the environment if `make` exported them, else `.local/stack.env`.
pub fn stack() -> &'static HashMap<String, String> {
    static STACK: OnceLock<HashMap<String, String>> = OnceLock::new();
    STACK.get_or_init(|| {
        let path = repo_root().join(".local/stack.env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: start the local stack with `make stack-up` (make test does it)",
                path.display()
            )
        });
        let mut vars: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for (key, value) in vars.iter_mut() {
            if let Ok(from_env) = std::env::var(key) {
                *value = from_env;
            }
        }
        vars
    })
}

/// One setting of the stack.
pub fn setting(name: &str) -> String {
    stack()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not in .local/stack.env"))
}

/// Exports the stack's settings into this process's environment (the AWS SDK reads them).
pub fn export_stack_env() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for (key, value) in stack() {
            // SAFETY: called before any test spawns threads that read the environment
            // concurrently with this write; OnceLock makes it happen once.
            unsafe { std::env::set_var(key, value) };
        }
    });
}

/// AWS configuration pointing at the local moto server.
pub async fn aws() -> aws_config::SdkConfig {
    export_stack_env();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(setting("AWS_ENDPOINT_URL"))
        .load()
        .await
}

/// Creates a secret holding `secret` in moto, under a fresh name starting with `prefix`; returns
/// the name.
pub async fn create_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    prefix: &str,
    secret: &Value,
) -> String {
    let name = unique(prefix);
    secrets
        .create_secret()
        .name(&name)
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap();
    name
}

/// Creates an SQS queue named `<prefix>-<unique>` in moto; returns its URL.
pub async fn fresh_queue(sqs: &aws_sdk_sqs::Client, prefix: &str) -> String {
    sqs.create_queue()
        .queue_name(unique(prefix))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// A fresh queue whose messages move to a fresh dead-letter queue on their
/// `max_receive_count`-th receive; returns (queue, dead-letter queue).
pub async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    prefix: &str,
    max_receive_count: u32,
) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let dlq = fresh_queue(sqs, &format!("{prefix}-dlq")).await;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name(unique(prefix))
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (queue, dlq)
}

/// Receives up to 10 messages from `queue` (hidden for 30 s), with all their system and
/// message attributes.
pub async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    sqs.receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .visibility_timeout(30)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

/// Lambda's part after an invocation: delete what succeeded, make the failures visible again.
pub async fn settle(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    received: &[aws_sdk_sqs::types::Message],
    failed: &BTreeSet<String>,
) {
    for message in received {
        let handle = message.receipt_handle.as_deref().unwrap();
        if failed.contains(message.message_id.as_deref().unwrap()) {
            sqs.change_message_visibility()
                .queue_url(queue)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        } else {
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(handle)
                .send()
                .await
                .unwrap();
        }
    }
}

/// Receives and deletes every message on `queue` until a receive comes back empty; returns
/// their bodies in the order received.
pub async fn drain_queue(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let received = receive_all(sqs, queue).await;
        if received.is_empty() {
            return bodies;
        }
        settle(sqs, queue, &received, &BTreeSet::new()).await;
        bodies.extend(received.into_iter().map(|m| m.body.unwrap()));
    }
}

/// A loader reading the stack's secret.
pub async fn loader(settings: LoadSettings) -> Loader {
    let secrets = aws_sdk_secretsmanager::Client::new(&aws().await);
    let source = SecretSource::new(
        secrets,
        setting("TRACKLAYER_SECRET_ID"),
        Duration::from_secs(300),
        fast_retry(),
    );
    Loader::new(source, settings)
}

/// A flush over `queue` reading the stack's secret, loading with `load_method`: two receivers,
/// a 1 s margin, 30 s visibility, a 5-minute period, no suspend.
pub fn flush_config(queue: &str, load_method: LoadMethod) -> FlushConfig {
    FlushConfig {
        secret_id: setting("TRACKLAYER_SECRET_ID"),
        secret_ttl: Duration::from_secs(300),
        staging_queue_url: queue.to_string(),
        load: LoadSettings::default(),
        receivers: 2,
        margin: Duration::from_secs(1),
        visibility: Duration::from_secs(30),
        suspend_after_flush: false,
        flush_period: Duration::from_secs(300),
        load_method,
        streaming_channel: "TRACKLAYER_FLUSH".into(),
    }
}

/// What a loader test starts with: the lock on the local Snowflake's global state (held while
/// the guard lives), its control API with no requests recorded and only `faults` installed
/// (rules for its `/faults` endpoint), and a loader with `settings` whose tables exist.
pub async fn loader_case(
    settings: LoadSettings,
    faults: &[Value],
) -> (tokio::sync::MutexGuard<'static, ()>, Emulator, Loader) {
    let guard = exclusive().await;
    let emulator = Emulator::default();
    let loader = loader(settings).await;
    loader
        .ensure_tables(tokio::time::Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    emulator.clean().await;
    for fault in faults {
        emulator.fault(fault.clone()).await;
    }
    (guard, emulator, loader)
}

/// The INSERT statements in a request report of the local Snowflake (`Emulator::requests`), in
/// the order they arrived.
pub fn inserts(report: &Value) -> Vec<&Value> {
    report["statements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "INSERT")
        .collect()
}

/// Rows in RAW_EVENTS from the events tagged `tag` (event ids `<tag>-...`).
pub fn rows_tagged(tag: &str) -> u64 {
    count(&format!("FROM RAW_EVENTS WHERE EVENT_ID LIKE '{tag}-%'"))
}

/// The `event_id` of an event's JSON text.
pub fn event_id_of(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Retries with short pauses, so fault tests run quickly.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    }
}

/// A unique tag for rows written by one test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Serializes tests that change the local Snowflake's global state (faults, settings, the
/// request report) within one test binary.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The local Snowflake's control API.
pub struct Emulator {
    http: reqwest::Client,
    base: String,
}

impl Default for Emulator {
    fn default() -> Self {
        Emulator {
            http: reqwest::Client::new(),
            base: setting("SNOWFLAKE_EMULATOR_URL"),
        }
    }
}

impl Emulator {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/__emulator{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{url}: {status} {value}");
        value
    }

    /// Adds a fault rule (see infra/local/snowflake_emulator.py).
    pub async fn fault(&self, rule: Value) {
        self.call(reqwest::Method::POST, "/faults", Some(rule))
            .await;
    }

    /// Remaining fault rules.
    pub async fn faults(&self) -> Value {
        self.call(reqwest::Method::GET, "/faults", None).await
    }

    /// Clears faults and the request report.
    pub async fn clean(&self) {
        self.call(reqwest::Method::DELETE, "/faults", None).await;
        self.call(reqwest::Method::DELETE, "/requests", None).await;
    }

    /// Merges settings (async threshold, warehouses).
    pub async fn settings(&self, settings: Value) {
        self.call(reqwest::Method::POST, "/settings", Some(settings))
            .await;
    }

    /// The report of requests served since the last reset.
    pub async fn requests(&self) -> Value {
        self.call(reqwest::Method::GET, "/requests", None).await
    }

    /// Registers or replaces a user and its keys.
    pub async fn register_user(&self, user: Value) -> Value {
        self.call(reqwest::Method::POST, "/users", Some(user)).await
    }

    /// A statement's answer as `GET /api/v2/statements/{handle}` gives it now (HTTP status and
    /// body), read by a user of the tests' own with a programmatic access token.
    pub async fn statement(&self, handle: &str) -> (u16, Value) {
        const TOKEN: &str = "tracklayer-tests-reader-pat";
        self.register_user(json!({"account": setting("SNOWFLAKE_ACCOUNT"), "user": "TRACKLAYER_TESTS_READER", "pats": [{"token": TOKEN}]}))
            .await;
        let response = self
            .http
            .get(format!("{}/api/v2/statements/{handle}", self.base))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header(
                "X-Snowflake-Authorization-Token-Type",
                "PROGRAMMATIC_ACCESS_TOKEN",
            )
            .header("User-Agent", "tracklayer-tests/1")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The answer of a statement once it is no longer running, read every 100 ms for at most
    /// `within` (a statement still running then is a failure).
    pub async fn final_answer(&self, handle: &str, within: Duration) -> (u16, Value) {
        let end = tokio::time::Instant::now() + within;
        loop {
            let (status, body) = self.statement(handle).await;
            if status != 202 {
                return (status, body);
            }
            assert!(
                tokio::time::Instant::now() < end,
                "statement {handle} still running after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Requests served on `path` (grouped as the report groups them) since the last reset.
    pub async fn requests_on(&self, path: &str) -> u64 {
        self.requests().await["by_path"][path]
            .as_u64()
            .unwrap_or_default()
    }
}

/// Rows read through the drivers' protocol: column names and values as sfquery.py prints them.
#[derive(Debug)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Values (strings, or null).
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Value of `column` in row `row` as text (null -> None).
    pub fn text(&self, row: usize, column: &str) -> Option<String> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))
            .unwrap_or_else(|| panic!("no column {column} in {:?}", self.columns));
        match &self.rows[row][i] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// Runs `sql` with snowflake-connector-python against the local Snowflake.
pub fn sfquery(sql: &str) -> Rows {
    let python = setting("PYTHON");
    let port = setting("SNOWFLAKE_EMULATOR_URL")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let out = Command::new(&python)
        .arg(repo_root().join("infra/local/sfquery.py"))
        .args(["--port", &port, sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "sfquery failed for {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value = serde_json::from_slice(&out.stdout).expect("sfquery prints JSON");
    Rows {
        columns: serde_json::from_value(value["columns"].clone()).unwrap(),
        rows: serde_json::from_value(value["rows"].clone()).unwrap(),
    }
}

/// `SELECT COUNT(*)` through the drivers' protocol.
pub fn count(sql_from_where: &str) -> u64 {
    let rows = sfquery(&format!("SELECT COUNT(*) AS N {sql_from_where}"));
    rows.text(0, "N").unwrap().parse().unwrap()
}

/// Runs openssl, returning stdout as text.
fn openssl(args: &[&str], stdin: Option<&str>) -> String {
    String::from_utf8(testkit::openssl::openssl(args, stdin.map(str::as_bytes))).unwrap()
}

/// A fresh RSA 2048 private key, unencrypted PKCS#8 PEM.
pub fn openssl_rsa_key() -> String {
    testkit::openssl::rsa_key()
}

/// The SPKI PEM public key of a private key.
pub fn public_pem(private_pem: &str) -> String {
    openssl(&["pkey", "-pubout"], Some(private_pem))
}

/// `n` realistic generated events (every `bad_every`-th invalid; 0 = none) whose event_ids
/// start with `<tag>-`, so a test can find exactly its rows.
pub fn tagged_events(tag: &str, n: usize, seed: u64, bad_every: u32) -> Vec<String> {
    let mut stream = testkit::sample::SampleStream::new(seed).bad_every(bad_every);
    (0..n)
        .map(|_| {
            stream
                .next_event()
                .replacen("\"event_id\":\"", &format!("\"event_id\":\"{tag}-"), 1)
        })
        .collect()
}

/// The RAW_EVENTS columns the loader writes, for `SELECT {EVENT_COLUMNS} FROM RAW_EVENTS`.
pub const EVENT_COLUMNS: &str = "EVENT_ID, EVENT_TIME, MERCHANT_ID, EVENT_NAME, USER_ID, ANONYMOUS_ID, ORDER_ID, PLATFORM, SOURCE, VALUE, CURRENCY, CONSENT_STATUS, PROPERTIES, RAW_PAYLOAD";

/// Rows of RAW_EVENTS whose event_id starts with `<tag>-`, by event_id; panics on a duplicate.
pub fn event_rows(tag: &str) -> (Rows, HashMap<String, usize>) {
    let rows = sfquery(&format!(
        "SELECT {EVENT_COLUMNS}, LOADED_AT FROM RAW_EVENTS WHERE EVENT_ID LIKE '{tag}-%'"
    ));
    let mut by_id = HashMap::new();
    for i in 0..rows.rows.len() {
        let id = rows.text(i, "EVENT_ID").unwrap();
        assert!(by_id.insert(id.clone(), i).is_none(), "{id} landed twice");
    }
    (rows, by_id)
}

/// Asserts that row `i` holds exactly what the validated `event` says, every column.
pub fn assert_row_is(rows: &Rows, i: usize, event: &tracklayer::event::Event<'_>) {
    let t = event.event_time();
    let time = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
    let id = event.event_id();
    assert_eq!(rows.text(i, "EVENT_ID").as_deref(), Some(id));
    assert_eq!(rows.text(i, "EVENT_TIME"), Some(time), "{id}");
    let strings = [
        ("MERCHANT_ID", Some(event.merchant_id())),
        ("EVENT_NAME", Some(event.event_name())),
        ("USER_ID", event.user_id()),
        ("ANONYMOUS_ID", event.anonymous_id()),
        ("ORDER_ID", event.order_id()),
        ("PLATFORM", event.platform()),
        ("SOURCE", event.source()),
        ("CONSENT_STATUS", event.consent_status()),
        ("CURRENCY", event.currency()),
    ];
    for (column, expected) in strings {
        assert_eq!(rows.text(i, column).as_deref(), expected, "{id} {column}");
    }
    assert_eq!(
        rows.text(i, "VALUE"),
        event.value().map(|v| format!("{v:.4}")),
        "{id} VALUE"
    );
    // serde_json keeps the last value of a repeated key, as PARSE_JSON(..., 'd') does
    let json = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    assert_eq!(
        rows.text(i, "PROPERTIES").as_deref().map(json),
        event.properties().map(json),
        "{id} PROPERTIES"
    );
    let payload = rows.text(i, "RAW_PAYLOAD").as_deref().map(json);
    assert!(
        matches!(payload, Some(Value::Object(_))),
        "{id} RAW_PAYLOAD is an object"
    );
    assert_eq!(
        payload,
        Some(json(event.raw())),
        "{id} RAW_PAYLOAD holds every field and value of the event"
    );
}
