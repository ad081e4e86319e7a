//! The loader against the local Snowflake: exact values read back through the drivers'
//! protocol, idempotent retries under injected faults, 202 polling, chunking, key rotation.

use std::time::Duration;

use serde_json::{Value, json};
use tracklayer::event::{Parsed, parse_body};
use tracklayer::load::LoadSettings;
use tracklayer::rows::{Chunk, Chunker, MessageRows};
use tracklayer::snowflake::{Abandoned, ErrorKind};
use tracklayer_tests::{
    Emulator, assert_row_is, count, event_rows, exclusive, inserts, loader, loader_case,
    rows_tagged, setting, sfquery, tagged_events, unique,
};

const MINUTE: Duration = Duration::from_secs(60);

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + MINUTE
}

/// Bodies as SQS would hand them over, one message each, ids `<tag>-<n>`.
/// Replaces the secret's value (a key rotation, and putting the old key back).
async fn put_secret(secrets: &aws_sdk_secretsmanager::Client, secret_id: &str, value: String) {
    secrets
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

/// The message bodies of one test, the message ids `<tag>-<i>` beside them.
struct Tagged {
    tag: String,
    bodies: Vec<String>,
    ids: Vec<String>,
}

impl Tagged {
    /// `n` generated events (seed `seed`) tagged with a fresh `<prefix>-...` tag, one a message.
    fn new(prefix: &str, n: usize, seed: u64) -> Self {
        let tag = unique(prefix);
        let bodies = tagged_events(&tag, n, seed, 0);
        Tagged::of(tag, bodies)
    }

    fn of(tag: String, bodies: Vec<String>) -> Self {
        let ids = (0..bodies.len()).map(|i| format!("{tag}-{i}")).collect();
        Tagged { tag, bodies, ids }
    }

    /// Each body parsed, under its message id.
    fn messages(&self) -> Vec<MessageRows<'_>> {
        self.bodies
            .iter()
            .zip(&self.ids)
            .map(|(body, id)| MessageRows {
                message_id: id,
                parsed: parse_body(body),
            })
            .collect()
    }
}

async fn insert(chunks: &[Chunk]) -> u64 {
    let loader = loader(LoadSettings::default()).await;
    loader.ensure_tables(deadline()).await.unwrap();
    let statements = chunks.iter().map(Chunk::statement).collect();
    let mut inserted = 0;
    for result in loader.run_all(statements, deadline()).await {
        inserted += result.unwrap().rows_inserted.unwrap();
    }
    inserted
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_batch_of_5000_reads_back_with_exact_values() {
    let _guard = exclusive().await;
    let tag = unique("mix");
    let mut bodies = tagged_events(&tag, 4_990, 7, 50);
    // Hand-written edge cases whose stored values we know without our own parser.
    let edge = [
        (
            format!(
                r#"{{"event_id":"{tag}-tz","event_time":"2026-11-02T10:00:00.123+02:00","merchant_id":"m-ü","event_name":"  purchase ","value":19.99,"currency":"eur","user_id":"'); DROP TABLE RAW_EVENTS; --","order_id":"o-1","platform":"web","source":"shopify","consent_status":"granted","anonymous_id":"a-😀","properties":{{"b":1,"a":[1,2],"s":"ü😀\"q\""}},"extra":{{"k":"v"}}}}"#
            ),
            (
                "2026-11-02 08:00:00.123",
                "purchase",
                Some("19.9900"),
                Some("EUR"),
            ),
        ),
        (
            format!(
                r#"{{"event_id":"{tag}-ms","event_time":1730541600123,"merchant_id":"m","event_name":"view_content","value":"1.00005"}}"#
            ),
            (
                "2024-11-02 10:00:00.123",
                "view_content",
                Some("1.0001"),
                None,
            ),
        ),
        (
            format!(
                r#"{{"event_id":"{tag}-neg","event_time":"2026-01-01T00:00:00Z","merchant_id":"m","event_name":"refund","value":-1.00005,"currency":"GBP"}}"#
            ),
            (
                "2026-01-01 00:00:00.000",
                "refund",
                Some("-1.0001"),
                Some("GBP"),
            ),
        ),
    ];
    bodies.extend(edge.iter().map(|(body, _)| body.clone()));
    let bad = [
        (
            format!(
                r#"{{"event_id":"{tag}-nomerchant","event_time":"2026-01-01T00:00:00Z","event_name":"x"}}"#
            ),
            "missing_field",
        ),
        (
            format!(
                r#"{{"event_id":"{tag}-comma","event_time":"2026-01-01T00:00:00Z","merchant_id":"m","event_name":"x","value":"12,50"}}"#
            ),
            "invalid_field",
        ),
        (
            format!("{{\"event_id\":\"{tag}-broken\", \"merchant_id\": "),
            "invalid_json",
        ),
    ];
    bodies.extend(bad.iter().map(|(body, _)| body.clone()));
    // Pad to exactly 5,000 events with another array body mixing good and bad.
    let array = format!(
        r#"[{{"event_id":"{tag}-a1","event_time":"2026-05-05T05:05:05.5Z","merchant_id":"m","event_name":"add_to_cart"}}, 42, {{"event_id":"{tag}-a3","merchant_id":"m","event_name":"x","event_time":"yesterday"}},{{"event_id":"{tag}-a4","event_time":"2026-05-05T05:05:05Z","merchant_id":"m","event_name":"begin_checkout","properties":{{}}}}]"#
    );
    bodies.push(array);

    let batch = Tagged::of(tag.clone(), bodies);
    let parsed = batch.messages();
    let all: Vec<&Parsed<'_>> = parsed.iter().flat_map(|m| &m.parsed).collect();
    assert_eq!(
        all.len(),
        5_000,
        "4,990 generated + 3 edge + 3 bad + 4 in the array"
    );
    let valid: Vec<_> = all.iter().filter_map(|p| p.as_ref().ok()).collect();
    let rejected = all.len() - valid.len();
    assert!(
        rejected >= 90,
        "about 1 in 50 generated events is bad: {rejected}"
    );

    let chunks = Chunker::new(1_000_000).chunk(&parsed);
    let inserted = insert(&chunks).await;
    assert_eq!(inserted, all.len() as u64);

    // Every valid event landed once, with exactly our values.
    let (rows, by_id) = event_rows(&tag);
    assert_eq!(by_id.len(), valid.len());
    for event in &valid {
        let i = by_id[event.event_id()];
        assert_row_is(&rows, i, event);
        assert!(rows.text(i, "LOADED_AT").is_some());
    }
    for (body, (time, name, value, currency)) in &edge {
        let id: Value = serde_json::from_str::<Value>(body).unwrap()["event_id"].clone();
        let i = by_id[id.as_str().unwrap()];
        assert_eq!(rows.text(i, "EVENT_TIME").as_deref(), Some(*time));
        assert_eq!(rows.text(i, "EVENT_NAME").as_deref(), Some(*name));
        assert_eq!(rows.text(i, "VALUE").as_deref(), *value);
        assert_eq!(rows.text(i, "CURRENCY").as_deref(), *currency);
    }
    let tz = by_id[&format!("{tag}-tz")];
    assert_eq!(
        rows.text(tz, "USER_ID").as_deref(),
        Some("'); DROP TABLE RAW_EVENTS; --")
    );
    assert_eq!(rows.text(tz, "ANONYMOUS_ID").as_deref(), Some("a-😀"));
    assert_eq!(rows.text(tz, "MERCHANT_ID").as_deref(), Some("m-ü"));
    assert_eq!(
        serde_json::from_str::<Value>(&rows.text(tz, "PROPERTIES").unwrap()).unwrap(),
        json!({"b": 1, "a": [1, 2], "s": "ü😀\"q\""})
    );

    // Every rejection is in the quarantine with its reason and original text.
    let q = sfquery(&format!(
        "SELECT SOURCE_MESSAGE_ID, EVENT_ID, REASON, DETAIL, RAW_TEXT FROM RAW_EVENTS_REJECTED WHERE SOURCE_MESSAGE_ID LIKE '{tag}-%'"
    ));
    assert_eq!(q.rows.len(), rejected);
    for (body, reason) in &bad {
        let row = (0..q.rows.len())
            .find(|&i| q.text(i, "RAW_TEXT").as_deref() == Some(body.as_str()))
            .unwrap_or_else(|| panic!("{body} not quarantined verbatim"));
        assert_eq!(q.text(row, "REASON").as_deref(), Some(*reason));
        assert!(!q.text(row, "DETAIL").unwrap().is_empty());
    }
    let comma = (0..q.rows.len())
        .find(|&i| q.text(i, "EVENT_ID") == Some(format!("{tag}-comma")))
        .unwrap();
    assert!(q.text(comma, "DETAIL").unwrap().starts_with("value"));
    let in_array = (0..q.rows.len())
        .filter(|&i| {
            q.text(i, "SOURCE_MESSAGE_ID") == Some(format!("{tag}-{}", batch.bodies.len() - 1))
        })
        .map(|i| q.text(i, "RAW_TEXT").unwrap())
        .collect::<Vec<_>>();
    assert_eq!(in_array.len(), 2);
    assert!(in_array.contains(&"42".to_string()), "{in_array:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_retried_and_never_insert_twice() {
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[]).await;
    let batch = Tagged::new("fault", 300, 11);
    let (tag, parsed) = (&batch.tag, batch.messages());
    let chunks = Chunker::new(1_000_000).chunk(&parsed);
    assert_eq!(chunks.len(), 1);
    let target = "INSERT INTO RAW_EVENTS (";
    for (phase, action) in [
        ("before_execute", json!({"status": 503})),
        ("after_execute", json!({"drop_connection": true})),
        ("after_execute", json!({"status": 429})),
        ("after_execute", json!({"status": 503})),
        ("after_execute", json!({"status": 500})),
    ] {
        emulator
            .fault(json!({"match": {"statement_contains": target}, "count": 1, "phase": phase, "action": action}))
            .await;
    }
    let result = loader.run(chunks[0].statement(), deadline()).await.unwrap();
    assert_eq!(result.attempts, 6, "five faults, then the stored answer");
    assert_eq!(result.rows_inserted, Some(300));
    assert_eq!(rows_tagged(tag), 300);
    assert_eq!(
        count(&format!(
            "FROM (SELECT EVENT_ID FROM RAW_EVENTS WHERE EVENT_ID LIKE '{tag}-%' GROUP BY EVENT_ID HAVING COUNT(*) > 1)"
        )),
        0
    );

    let report = emulator.requests().await;
    let inserts = inserts(&report);
    assert_eq!(inserts.len(), 6);
    let request_id = &inserts[0]["request_id"];
    assert!(
        inserts.iter().all(|s| &s["request_id"] == request_id),
        "one requestId throughout"
    );
    assert_eq!(inserts[0]["retry"], false);
    assert!(
        inserts[1..].iter().all(|s| s["retry"] == true),
        "resubmissions say retry=true"
    );
    assert_eq!(
        inserts.iter().filter(|s| s["executed"] == true).count(),
        1,
        "{inserts:?}"
    );
    assert_eq!(emulator.faults().await, json!([]), "every fault was used");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_statement_answers_202_and_is_polled_to_completion() {
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[]).await;
    emulator.settings(json!({"async_threshold_ms": 100})).await;
    emulator
        .fault(json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1, "phase": "before_execute", "action": {"delay_ms": 700}}))
        .await;
    let batch = Tagged::new("slow", 50, 3);
    let (tag, parsed) = (&batch.tag, batch.messages());
    let chunks = Chunker::new(1_000_000).chunk(&parsed);
    let result = loader.run(chunks[0].statement(), deadline()).await;
    emulator
        .settings(json!({"async_threshold_ms": 45000}))
        .await;
    let result = result.unwrap();
    assert_eq!(result.attempts, 1);
    assert_eq!(result.rows_inserted, Some(50));
    assert_eq!(rows_tagged(tag), 50);
    let report = emulator.requests().await;
    let polls = report["by_path"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.starts_with("/api/v2/statements/"))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum::<u64>();
    assert!(polls >= 1, "the client polled the statement: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_split_at_the_statement_size_limit_and_all_rows_land_once() {
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[]).await;
    let batch = Tagged::new("split", 2_000, 5);
    let (tag, parsed) = (&batch.tag, batch.messages());
    let limit = 100_000;
    let chunks = Chunker::new(limit).chunk(&parsed);
    assert!(chunks.len() >= 10, "{} chunks", chunks.len());
    assert!(chunks.iter().all(|c| c.statement_size() <= limit));
    let results = loader
        .run_all(chunks.iter().map(Chunk::statement).collect(), deadline())
        .await;
    let inserted: u64 = results
        .into_iter()
        .map(|r| r.unwrap().rows_inserted.unwrap())
        .sum();
    assert_eq!(inserted, 2_000);
    assert_eq!(rows_tagged(tag), 2_000);
    let report = emulator.requests().await;
    assert_eq!(
        report["by_kind"]["INSERT"].as_u64(),
        Some(chunks.len() as u64)
    );
    assert!(
        report["by_kind"].get("CREATE").is_none(),
        "tables are bootstrapped once per process"
    );
}

/// The stack's service user (as `infra/local/stack.py` registers it) with one public key.
fn service_user(public_pem: &str) -> Value {
    json!({
        "account": setting("SNOWFLAKE_ACCOUNT"),
        "user": setting("SNOWFLAKE_USER"),
        "rsa_public_key": public_pem,
        "default_role": "TRACKLAYER_WRITER",
        "default_warehouse": "TRACKLAYER_WH",
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_key_is_picked_up_after_one_authentication_failure() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    let loader = loader(LoadSettings::default()).await;
    loader.ensure_tables(deadline()).await.unwrap();
    let secrets = aws_sdk_secretsmanager::Client::new(&tracklayer_tests::aws().await);
    let secret_id = setting("TRACKLAYER_SECRET_ID");
    let original = secrets
        .get_secret_value()
        .secret_id(&secret_id)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let original_public =
        std::fs::read_to_string(setting("TRACKLAYER_LOCAL_KEY").replace(".p8", ".pub")).unwrap();

    // Rotate: a new key in the secret, and only the new key registered in Snowflake.
    let new_key = tracklayer_tests::openssl_rsa_key();
    let new_public = tracklayer_tests::public_pem(&new_key);
    let mut rotated: Value = serde_json::from_str(&original).unwrap();
    rotated["private_key"] = json!(new_key);
    put_secret(&secrets, &secret_id, rotated.to_string()).await;
    emulator.register_user(service_user(&new_public)).await;
    emulator.clean().await;

    let outcome = loader
        .run(
            tracklayer::snowflake::Statement::new("SELECT 1 AS ONE"),
            deadline(),
        )
        .await;

    // Restore before asserting, so a failure leaves the stack usable.
    put_secret(&secrets, &secret_id, original).await;
    emulator.register_user(service_user(&original_public)).await;

    let result = outcome.unwrap();
    assert_eq!(result.get(0, "ONE"), Some("1"));
    let report = emulator.requests().await;
    let statuses: Vec<&Value> = report["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["status"])
        .collect();
    assert_eq!(
        statuses,
        vec![&json!(401), &json!(202)],
        "one refusal, then one accepted submission (async, polled): {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unrecoverable_errors_stop_the_batch_without_hammering() {
    let fault = json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 100, "action": {"snowflake_error": {"status": 422, "code": "003001", "sqlState": "42501", "message": "Insufficient privileges to operate on table 'RAW_EVENTS'"}}});
    let one_at_a_time = LoadSettings {
        max_concurrent_statements: 1,
        ..LoadSettings::default()
    };
    let (_guard, emulator, loader) = loader_case(one_at_a_time, &[fault]).await;
    let batch = Tagged::new("perm", 400, 9);
    let (tag, parsed) = (&batch.tag, batch.messages());
    let chunks = Chunker::new(50_000).chunk(&parsed);
    assert!(chunks.len() >= 4);
    let results = loader
        .run_all(chunks.iter().map(Chunk::statement).collect(), deadline())
        .await;
    let report = emulator.requests().await;
    emulator.clean().await;
    assert_eq!(
        report["by_kind"]["INSERT"], 1,
        "the first refusal stops the batch: {report}"
    );
    assert_eq!(results.len(), chunks.len());
    for result in &results {
        let err = result.as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Permission);
        assert_eq!(err.code(), Some("003001"));
        assert!(err.fix().contains("GRANT"), "{}", err.fix());
    }
    assert_eq!(rows_tagged(tag), 0);
}

/// A deadline that leaves `timeout` = 5 s for a statement sent now: the client stops polling
/// and cancels 3 s before it (at ~3.5 s), before Snowflake's own timeout (~5 s).
fn short_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(6_500)
}

/// One RAW_EVENTS chunk of `n` events under a fresh `<prefix>-...` tag.
async fn one_chunk(prefix: &str, n: usize) -> (String, Chunk) {
    let tag = unique(prefix);
    let batch = Tagged::of(tag.clone(), tagged_events(&tag, n, 17, 0));
    let mut chunks = Chunker::new(1_000_000).chunk(&batch.messages());
    assert_eq!(chunks.len(), 1);
    (tag, chunks.remove(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_slowed_past_the_deadline_is_cancelled_and_none_of_its_rows_land() {
    // The INSERT starts only after 30 s: far past the deadline.
    let fault = json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1, "phase": "before_execute", "action": {"delay_ms": 30000}});
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[fault]).await;
    let (tag, chunk) = one_chunk("cancel", 120).await;
    let error = loader
        .run(chunk.statement(), short_deadline())
        .await
        .unwrap_err();
    let cancels = emulator
        .requests_on("/api/v2/statements/{handle}/cancel")
        .await;
    let handle = match &error {
        tracklayer::snowflake::SnowflakeError::Deadline {
            statement_handle: Some(handle),
            outcome: Abandoned::Cancelled,
            ..
        } => handle.clone(),
        other => panic!("expected a confirmed cancel, got {other}"),
    };
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert!(
        error.to_string().contains("none of its rows landed"),
        "{error}"
    );
    assert_eq!(cancels, 1, "the client cancelled the statement once");
    let (status, body) = emulator.statement(&handle).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("000604")));
    assert_eq!(rows_tagged(&tag), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_that_finished_while_its_answer_was_late_succeeds_after_the_cancel() {
    // The INSERT runs at once, but the first poll's answer is held back past the deadline.
    let fault = json!({"match": {"method": "GET", "path_prefix": "/api/v2/statements/"}, "count": 1, "phase": "after_execute", "action": {"delay_ms": 20000}});
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[fault]).await;
    let (tag, chunk) = one_chunk("late", 80).await;
    let result = loader.run(chunk.statement(), short_deadline()).await;
    let cancels = emulator
        .requests_on("/api/v2/statements/{handle}/cancel")
        .await;
    emulator.clean().await;
    let result = result.unwrap();
    assert_eq!(
        cancels, 1,
        "the deadline came first, so the client cancelled"
    );
    assert_eq!(
        result.rows_inserted,
        Some(80),
        "read once more: it had succeeded"
    );
    assert_eq!(rows_tagged(&tag), 80);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_cancel_leaves_the_statement_to_its_own_timeout() {
    let faults = [
        json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1, "phase": "before_execute", "action": {"delay_ms": 30000}}),
        json!({"match": {"method": "POST", "path_prefix": "/api/v2/statements/"}, "count": 1, "action": {"status": 503}}),
    ];
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &faults).await;
    let (tag, chunk) = one_chunk("lostcancel", 60).await;
    let error = loader
        .run(chunk.statement(), short_deadline())
        .await
        .unwrap_err();
    let handle = match &error {
        tracklayer::snowflake::SnowflakeError::Deadline {
            statement_handle: Some(handle),
            outcome: Abandoned::CancelFailed(detail),
            ..
        } if detail.contains("HTTP 503") && detail.contains("still ran") => handle.clone(),
        other => panic!("expected a statement still running after a failed cancel, got {other}"),
    };
    // The submission's `timeout` (5 s here) stops it in Snowflake, well before its 30 s delay.
    let (status, body) = emulator
        .final_answer(&handle, Duration::from_secs(10))
        .await;
    emulator.clean().await;
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some("000630")),
        "{body}"
    );
    assert_eq!(rows_tagged(&tag), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_sets_the_wait_before_the_next_submission() {
    let fault = json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1, "action": {"status": 429, "headers": {"Retry-After": "2"}}});
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[fault]).await;
    let (_, chunk) = one_chunk("retryafter", 40).await;
    let started = tokio::time::Instant::now();
    let result = loader.run(chunk.statement(), deadline()).await.unwrap();
    let waited = started.elapsed();
    emulator.clean().await;
    assert_eq!(result.attempts, 2);
    // The tests' backoff is at most 200 ms: only Retry-After makes it wait 2 s.
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert_eq!(result.rows_inserted, Some(40));
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_contention_is_retried_and_the_rows_land_once() {
    let fault = json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 2, "action": {"snowflake_error": {"status": 422, "code": "000625", "sqlState": "57014", "message": "Statement '01b2' has locked table 'RAW_EVENTS' in transaction 1 and this lock has not yet been released. Your statement '01b3' was aborted because the number of waiters for this lock exceeds the 20 statements limit."}}});
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[fault]).await;
    let (tag, chunk) = one_chunk("lock", 50).await;
    let result = loader.run(chunk.statement(), deadline()).await.unwrap();
    emulator.clean().await;
    assert_eq!(result.attempts, 3, "two refusals, then the statement ran");
    assert_eq!(result.rows_inserted, Some(50));
    assert_eq!(rows_tagged(&tag), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_result_partition_fetch_is_retried_and_every_row_comes_back() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let loader = loader(LoadSettings::default()).await;
    loader.ensure_tables(deadline()).await.unwrap();
    let batch = Tagged::new("parts", 3_000, 19);
    let (tag, parsed) = (&batch.tag, batch.messages());
    let statements = Chunker::new(1_000_000)
        .chunk(&parsed)
        .iter()
        .map(Chunk::statement)
        .collect();
    for result in loader.run_all(statements, deadline()).await {
        result.unwrap();
    }
    let select = tracklayer::snowflake::Statement::new(format!(
        "SELECT EVENT_ID, RAW_PAYLOAD, PROPERTIES FROM RAW_EVENTS WHERE EVENT_ID LIKE '{tag}-%' ORDER BY EVENT_ID"
    ));
    // Results over 200 kB come in several partitions (the default is 10 MB).
    emulator.settings(json!({"partition_bytes": 200_000})).await;
    let first = loader.run(select.clone(), deadline()).await.unwrap();
    assert_eq!(first.rows.len(), 3_000);
    emulator.clean().await;
    // The same statement again: answered at once from its stored result, so the first GET is
    // the fetch of partition 1.
    emulator
        .fault(json!({"match": {"method": "GET", "path_prefix": "/api/v2/statements/"}, "count": 1, "action": {"status": 503}}))
        .await;
    let again = loader
        .run(
            tracklayer::snowflake::Statement {
                resubmission: true,
                ..select
            },
            deadline(),
        )
        .await;
    let faults_left = emulator.faults().await;
    emulator.clean().await;
    emulator
        .settings(json!({"partition_bytes": 10_000_000}))
        .await;
    assert_eq!(faults_left, json!([]), "a partition fetch met the 503");
    assert_eq!(again.unwrap().rows, first.rows);
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_contention_answered_by_a_poll_submits_the_statement_again() {
    // The first poll answers that the statement failed on a lock: polling again cannot help,
    // so the client submits it again (whether that answer is 202 or 200 depends on how far the
    // emulator got, so only the first poll is faulted).
    let fault = json!({"match": {"method": "GET", "path_prefix": "/api/v2/statements/"}, "count": 1, "action": {"snowflake_error": {"status": 422, "code": "000625", "sqlState": "57014", "message": "Statement was aborted because the number of waiters for this lock exceeds the 20 statements limit."}}});
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[fault]).await;
    let (tag, chunk) = one_chunk("polllock", 30).await;
    let result = loader.run(chunk.statement(), deadline()).await;
    let report = emulator.requests().await;
    emulator.clean().await;
    let result = result.unwrap();
    assert_eq!(
        result.attempts, 2,
        "submitted again after the poll's 000625: {report}"
    );
    let retries: Vec<bool> = report["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["retry"].as_bool().unwrap())
        .collect();
    assert_eq!(
        retries,
        [false, true],
        "the poll's 000625 makes one resubmission with retry=true: {report}"
    );
    assert_eq!(
        rows_tagged(&tag),
        30,
        "retry=true: the execution that did land is not run again"
    );
}
