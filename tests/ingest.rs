//! The ingest handler against the local stack: exact landing, every bad input accounted for,
//! partial batch failures, poison isolation, and scheduled mode never touching Snowflake.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::{Value, json};
use tracklayer::event::parse_body;
use tracklayer::flush::{Flush, FlushRequest, FlushStatus};
use tracklayer::ingest::{Ingest, IngestSummary};
use tracklayer::load::{LoadMethod, LoadSettings};
use tracklayer::staging::StagedChunk;
use tracklayer_tests::{
    Emulator, assert_row_is, aws, count, create_secret, drain_queue, event_id_of, event_rows,
    exclusive, flush_config, fresh_queue, inserts, loader, loader_case, queue_with_dlq,
    receive_all, rows_tagged, settle, sfquery, tagged_events, unique,
};

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(120)
}

/// An SQS event as Lambda delivers it; message ids are `<tag>-<n>`.
fn sqs_event(tag: &str, bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (i, body) in bodies.iter().enumerate() {
        let mut message = SqsMessage::default();
        message.message_id = Some(format!("{tag}-{i}"));
        message.body = Some(body.clone());
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), "1".into());
        event.records.push(message);
    }
    event
}

fn failures(response: &SqsBatchResponse) -> BTreeSet<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// Asserts that no message of the batch failed, showing the summary line if one did.
fn assert_none_failed(response: &SqsBatchResponse, summary: &IngestSummary) {
    assert_eq!(failures(response), BTreeSet::new(), "{}", summary.to_line());
}

/// The stack to ourselves, `n` generated events (seed `seed`) under a fresh `<prefix>-...`
/// tag, one a message, and a stream-mode handler.
async fn stream_case(
    prefix: &str,
    n: usize,
    seed: u64,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    String,
    Vec<String>,
    Ingest,
) {
    let guard = exclusive().await;
    let tag = unique(prefix);
    let bodies = tagged_events(&tag, n, seed, 0);
    let ingest = Ingest::stream(loader(LoadSettings::default()).await);
    (guard, tag, bodies, ingest)
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_batch_of_10000_messages_lands_exactly() {
    let (_guard, tag, bodies, ingest) = stream_case("ing10k", 10_000, 21).await;
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-10k", deadline())
        .await;
    assert_none_failed(&response, &summary);
    assert_eq!(summary.messages, 10_000);
    assert_eq!(summary.loaded, 10_000);
    assert_eq!(summary.rejected, 0);

    let (rows, by_id) = event_rows(&tag);
    assert_eq!(by_id.len(), 10_000, "every event once");
    for body in &bodies {
        let parsed = parse_body(body);
        let event = parsed[0].as_ref().unwrap();
        assert_row_is(&rows, by_id[event.event_id()], event);
        assert_eq!(event.raw(), body, "the whole body is the event's raw text");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivered_messages_in_a_new_batch_do_not_land_twice() {
    let (_guard, tag, bodies, ingest) = stream_case("redeliv", 150, 41).await;
    let (response, _) = ingest
        .handle(&sqs_event(&tag, &bodies[..100]), "req-a", deadline())
        .await;
    assert!(response.batch_item_failures.is_empty());
    // Messages 50..100 come back (as after a lost answer), batched with 50 new ones: a chunk
    // of another composition, so another requestId.
    let mut again = sqs_event(&tag, &bodies);
    again.records.drain(..50);
    for record in &mut again.records[..50] {
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), "2".into());
    }
    let (response, summary) = ingest.handle(&again, "req-b", deadline()).await;
    assert_none_failed(&response, &summary);
    assert_eq!(summary.loaded, 50, "only the new events inserted");
    let (_, by_id) = event_rows(&tag);
    assert_eq!(by_id.len(), 150);
    assert_eq!(
        rows_tagged(&tag),
        150,
        "the 50 redelivered events are not inserted again"
    );
}

/// The length of the corpus's largest string: its event is just under 1 MiB.
const BIG_PAD: usize = 1024 * 1024 - 200;

/// The bad-input corpus: bodies tagged `<tag>-...`, each with the reasons its events get ("ok"
/// for one that loads), in the order of the events it holds.
fn bad_inputs(tag: &str) -> Vec<(String, Vec<&'static str>)> {
    let ev = |suffix: &str, extra: &str| {
        format!(
            r#"{{"event_id":"{tag}-{suffix}","event_time":"2026-11-02T10:00:00Z","merchant_id":"m","event_name":"purchase"{extra}}}"#
        )
    };
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let big_pad = "x".repeat(BIG_PAD);
    let emoji = "ü😀漢字\u{0007}";
    vec![
        ("{not json".into(), vec!["invalid_json"]),
        (r#""just a string""#.into(), vec!["not_an_object"]),
        ("42".into(), vec!["not_an_object"]),
        (format!(r#"{{"event_id":"{tag}-nomerchant","event_time":"2026-11-02T10:00:00Z","event_name":"x"}}"#), vec!["missing_field"]),
        (format!(r#"{{"event_id":"{tag}-emptyname","event_time":"2026-11-02T10:00:00Z","merchant_id":"m","event_name":"  "}}"#), vec!["invalid_field"]),
        (format!(r#"{{"event_id":"","event_time":"2026-11-02T10:00:00Z","merchant_id":"{tag}","event_name":"x"}}"#), vec!["invalid_field"]),
        (ev("nan", r#","value":"NaN""#), vec!["invalid_field"]),
        (ev("huge", r#","value":1e30"#), vec!["invalid_field"]),
        (ev("comma", r#","value":"12,50""#), vec!["invalid_field"]),
        (ev("bool", r#","value":true"#), vec!["invalid_field"]),
        (ev("cur4", r#","currency":"EURO""#), vec!["invalid_field"]),
        (ev("propsarr", r#","properties":[1,2]"#), vec!["invalid_field"]),
        (ev("deep", &format!(r#","properties":{{"d":{deep}}}"#)), vec!["invalid_json"]),
        (ev("big", &format!(r#","properties":{{"pad":"{big_pad}"}}"#)), vec!["ok"]),
        (format!(r#"{{"event_id":"{tag}-{emoji}","event_time":"2026-11-02T10:00:00Z","merchant_id":"{emoji}","event_name":"{emoji}","user_id":"{emoji}","anonymous_id":"{emoji}","order_id":"{emoji}","platform":"{emoji}","source":"{emoji}","consent_status":"{emoji}","properties":{{"{emoji}":"{emoji}"}}}}"#).replace('\u{0007}', "\\u0007"), vec!["ok"]),
        (ev("sql", r#","user_id":"'); DROP TABLE RAW_EVENTS; --","order_id":"\"; DELETE FROM RAW_EVENTS; --""#), vec!["ok"]),
        (format!("[{},{{\"event_id\":\"{tag}-arrbad\"}},7,{}]", ev("arr1", ""), ev("arr2", "")), vec!["ok", "missing_field", "not_an_object", "ok"]),
        (String::new(), vec!["empty_body"]),
        (format!("{}\n{}\n", ev("nd1", ""), "{broken"), vec!["ok", "invalid_json"]),
    ]
}

/// Every event of `cases` (sent as messages `<tag>-<i>`) landed in RAW_EVENTS or in
/// RAW_EVENTS_REJECTED with its reasons and its message's text, the rows read back exactly.
fn assert_bad_inputs_accounted_for(tag: &str, cases: &[(String, Vec<&'static str>)]) {
    let (expected_events, expected_ok) = corpus_counts(cases);
    let landed = rows_tagged(tag);
    let q = sfquery(&format!(
        "SELECT SOURCE_MESSAGE_ID, REASON, RAW_TEXT, DETAIL FROM RAW_EVENTS_REJECTED WHERE SOURCE_MESSAGE_ID LIKE '{tag}-%'"
    ));
    assert_eq!(
        landed as usize + q.rows.len(),
        expected_events,
        "landed + quarantined = sent"
    );
    assert_eq!(landed as usize, expected_ok);

    // Per message: the reasons, in any order, and the original text.
    for (i, (body, reasons)) in cases.iter().enumerate() {
        let id = format!("{tag}-{i}");
        let mut got: Vec<String> = (0..q.rows.len())
            .filter(|&r| q.text(r, "SOURCE_MESSAGE_ID").as_deref() == Some(id.as_str()))
            .map(|r| q.text(r, "REASON").unwrap())
            .collect();
        got.sort();
        let mut want: Vec<String> = reasons
            .iter()
            .filter(|r| **r != "ok")
            .map(|r| r.to_string())
            .collect();
        want.sort();
        assert_eq!(got, want, "message {i}: {}", &body[..body.len().min(80)]);
        if reasons.len() == 1 && reasons[0] != "ok" {
            let row = (0..q.rows.len())
                .find(|&r| q.text(r, "SOURCE_MESSAGE_ID").as_deref() == Some(id.as_str()))
                .unwrap();
            assert_eq!(
                q.text(row, "RAW_TEXT").as_deref().unwrap_or(""),
                body.as_str(),
                "message {i} verbatim"
            );
            assert!(!q.text(row, "DETAIL").unwrap().is_empty());
        }
    }
    let sql = sfquery(&format!(
        "SELECT USER_ID, ORDER_ID FROM RAW_EVENTS WHERE EVENT_ID = '{tag}-sql'"
    ));
    assert_eq!(
        sql.text(0, "USER_ID").as_deref(),
        Some("'); DROP TABLE RAW_EVENTS; --")
    );
    assert_eq!(
        sql.text(0, "ORDER_ID").as_deref(),
        Some("\"; DELETE FROM RAW_EVENTS; --")
    );
    let big = sfquery(&format!(
        "SELECT LENGTH(RAW_PAYLOAD:properties.pad::STRING) AS L FROM RAW_EVENTS WHERE EVENT_ID = '{tag}-big'"
    ));
    assert_eq!(
        big.text(0, "L").unwrap().parse::<usize>().unwrap(),
        BIG_PAD,
        "RAW_PAYLOAD is an object holding the whole 1 MB value"
    );
}

/// (events, loadable events) of the corpus.
fn corpus_counts(cases: &[(String, Vec<&'static str>)]) -> (usize, usize) {
    let events = cases.iter().map(|(_, e)| e.len()).sum();
    let ok = cases
        .iter()
        .flat_map(|(_, e)| e)
        .filter(|r| **r == "ok")
        .count();
    (events, ok)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_input_is_accounted_for_with_its_reason() {
    let _guard = exclusive().await;
    let tag = unique("bad");
    let cases = bad_inputs(&tag);
    let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();
    let (events, ok) = corpus_counts(&cases);
    let ingest = Ingest::stream(loader(LoadSettings::default()).await);
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-bad", deadline())
        .await;
    assert_none_failed(&response, &summary);
    assert_eq!(summary.events, events);
    assert_eq!(summary.loaded as usize, ok);
    assert_bad_inputs_accounted_for(&tag, &cases);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_input_is_accounted_for_through_snowpipe_streaming() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let queue = fresh_queue(&sqs, "staging-corpus").await;
    let tag = unique("sbad");
    let cases = bad_inputs(&tag);
    let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();
    let (events, ok) = corpus_counts(&cases);
    let ingest = Ingest::scheduled(sqs.clone(), queue.clone(), 1_000_000);
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-sbad", deadline())
        .await;
    assert_none_failed(&response, &summary);
    assert_eq!(summary.events, events);
    assert_eq!(summary.staged, ok);

    let config = flush_config(&queue, LoadMethod::Streaming);
    let loader = loader(LoadSettings::default()).await;
    let flush = Flush::with_loader(config, sqs.clone(), loader);
    let report = flush
        .run(
            FlushRequest::default(),
            tokio::time::Instant::now() + Duration::from_secs(120),
        )
        .await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert_eq!(report.events_loaded as usize, ok);
    assert_eq!(report.events_rejected as usize, events - ok);
    assert_eq!(report.statements, 0, "{}", report.to_line());
    let requests = emulator.requests().await;
    assert_eq!(
        requests["by_kind"]["INSERT"],
        Value::Null,
        "every row streamed: {requests}"
    );
    assert_eq!(requests["by_streaming"]["append"], report.appends);
    assert_bad_inputs_accounted_for(&tag, &cases);
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_503_on_one_chunk_fails_only_its_messages() {
    let (_guard, emulator, loader) = loader_case(
        LoadSettings {
            max_statement_bytes: 20_000,
            max_concurrent_statements: 1,
        },
        &[],
    )
    .await;
    let tag = unique("p503");
    let bodies = tagged_events(&tag, 200, 31, 0);
    let victim = format!("{tag}-");
    // Every attempt at the chunk holding message 0's event fails with 503.
    let first_event_id = event_id_of(&bodies[0]);
    emulator
        .fault(json!({"match": {"binding_contains": first_event_id}, "count": 1000, "action": {"status": 503}}))
        .await;
    let ingest = Ingest::stream(loader);
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-503", deadline())
        .await;
    emulator.clean().await;
    let failed = failures(&response);
    assert!(summary.chunks >= 5, "{}", summary.chunks);
    assert!(!failed.is_empty() && failed.len() < 60, "{failed:?}");
    assert!(failed.contains(&format!("{victim}0")));
    // The failed messages are a prefix (the first chunk), and exactly the others landed once.
    let expected_failed: BTreeSet<String> =
        (0..failed.len()).map(|i| format!("{tag}-{i}")).collect();
    assert_eq!(failed, expected_failed);
    assert_eq!(rows_tagged(&tag) as usize, 200 - failed.len());
    assert!(
        summary.error.as_ref().unwrap().0.contains("503"),
        "{:?}",
        summary.error
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn row_refused_by_snowflake_is_isolated_and_the_rest_land() {
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[]).await;
    let tag = unique("poison");
    let bodies = tagged_events(&tag, 300, 41, 0);
    let poison_id = event_id_of(&bodies[137]);
    emulator
        .fault(json!({"match": {"binding_contains": poison_id, "statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1000, "action": {"snowflake_error": {"status": 422, "code": "100038", "sqlState": "22018", "message": "Numeric value 'x' is not recognized"}}}))
        .await;
    let ingest = Ingest::stream(loader);
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-poison", deadline())
        .await;
    let report = emulator.requests().await;
    emulator.clean().await;
    assert_none_failed(&response, &summary);
    assert_eq!(summary.loaded, 299);
    assert_eq!(summary.refused, 1);
    assert_eq!(rows_tagged(&tag), 299);
    let q = sfquery(&format!(
        "SELECT SOURCE_MESSAGE_ID, EVENT_ID, REASON, DETAIL, RAW_TEXT FROM RAW_EVENTS_REJECTED WHERE SOURCE_MESSAGE_ID LIKE '{tag}-%'"
    ));
    assert_eq!(q.rows.len(), 1);
    assert_eq!(q.text(0, "SOURCE_MESSAGE_ID"), Some(format!("{tag}-137")));
    assert_eq!(q.text(0, "EVENT_ID"), Some(poison_id));
    assert_eq!(q.text(0, "REASON").as_deref(), Some("snowflake_rejected"));
    assert!(q.text(0, "DETAIL").unwrap().contains("100038"));
    assert_eq!(q.text(0, "RAW_TEXT"), Some(bodies[137].clone()));
    // Bisection is logarithmic: a handful of statements, not one per row.
    let inserts = report["by_kind"]["INSERT"].as_u64().unwrap();
    assert!(inserts <= 2 + 2 * 10, "{inserts} INSERTs");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_mode_stages_chunks_and_never_contacts_snowflake() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let queue = fresh_queue(&sqs, "staging-test").await;
    let tag = unique("sched");
    let mut bodies = tagged_events(&tag, 3_000, 51, 0);
    bodies.push("{broken".into());
    let ingest = Ingest::scheduled(sqs.clone(), queue.clone(), 200_000);
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-sched", deadline())
        .await;
    assert_none_failed(&response, &summary);
    assert_eq!(summary.staged, 3_000);
    assert_eq!(
        emulator.requests().await["total"],
        0,
        "scheduled mode sent nothing to Snowflake"
    );

    let mut rows = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for body in drain_queue(&sqs, &queue).await {
        let chunk = StagedChunk::from_message(&body).unwrap();
        let parsed: Vec<Value> = serde_json::from_str(&chunk.body).unwrap();
        assert_eq!(parsed.len(), chunk.rows);
        assert!(chunk.body.len() <= 200_000);
        *rows.entry(chunk.table.name()).or_insert(0) += chunk.rows;
        assert!(ids.insert(chunk.id), "chunk ids are unique");
    }
    assert_eq!(rows.get("RAW_EVENTS"), Some(&3_000));
    assert_eq!(rows.get("RAW_EVENTS_REJECTED"), Some(&1));
    assert_eq!(ids.len(), summary.chunks);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_fail_every_message_with_the_fix_and_retry_once() {
    let fault = json!({"match": {"statement_contains": "INSERT"}, "count": 1000, "action": {"snowflake_error": {"status": 401, "code": "390144", "sqlState": "08001", "message": "JWT token is invalid. [0ce9eb56-821d-4ca9-a774-04ae89a0cf5a]"}}});
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[fault]).await;
    let tag = unique("auth");
    let bodies = tagged_events(&tag, 50, 61, 0);
    let ingest = Ingest::stream(loader);
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-auth", deadline())
        .await;
    let report = emulator.requests().await;
    emulator.clean().await;
    assert_eq!(
        failures(&response).len(),
        50,
        "every message is retried by SQS"
    );
    let (error, fix) = summary.error.clone().unwrap();
    assert!(error.contains("390144"), "{error}");
    // Snowflake's message carries only a UUID: the fix gives the query that reads the reason.
    assert!(
        fix.contains("SELECT JSON_EXTRACT_PATH_TEXT(SYSTEM$GET_LOGIN_FAILURE_DETAILS('0ce9eb56-821d-4ca9-a774-04ae89a0cf5a'), 'errorCode');"),
        "{fix}"
    );
    assert!(fix.contains("RSA_PUBLIC_KEY_FP"), "{fix}");
    assert_eq!(
        report["by_kind"]["INSERT"], 2,
        "one try and one after re-reading the secret: {report}"
    );
    let line: Value = serde_json::from_str(&summary.to_line()).unwrap();
    assert_eq!(line["failures"], 50);
    assert_eq!(line["FailedMessages"], 50.0);
    assert_eq!(line["fix"], fix);
}

/// The same SQS event with every message received `count` times.
fn received(mut event: SqsEvent, count: u32) -> SqsEvent {
    for record in &mut event.records {
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), count.to_string());
    }
    event
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_cancelled_at_the_deadline_lands_once_when_loaded_again() {
    let fault = json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1, "phase": "before_execute", "action": {"delay_ms": 30000}});
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[fault]).await;
    let tag = unique("cancelled");
    let bodies = tagged_events(&tag, 150, 71, 0);
    let ingest = Ingest::stream(loader);
    // Time for one statement: it is cancelled ~3 s before this deadline.
    let short = tokio::time::Instant::now() + Duration::from_millis(6_500);
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-cancel", short)
        .await;
    let cancels = emulator
        .requests_on("/api/v2/statements/{handle}/cancel")
        .await;
    assert_eq!(failures(&response).len(), 150, "{}", summary.to_line());
    assert_eq!(cancels, 1);
    let (error, _) = summary.error.clone().unwrap();
    assert!(
        error.contains("was cancelled; none of its rows landed"),
        "{error}"
    );
    assert_eq!(rows_tagged(&tag), 0);

    // SQS delivers the batch again: every row lands, once.
    let again = received(sqs_event(&tag, &bodies), 2);
    let (response, summary) = ingest.handle(&again, "req-again", deadline()).await;
    emulator.clean().await;
    assert_none_failed(&response, &summary);
    assert_eq!(summary.loaded, 150);
    let (_, by_id) = event_rows(&tag);
    assert_eq!(by_id.len(), 150, "every event once");
    assert_eq!(rows_tagged(&tag), 150);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_redelivered_whole_runs_its_skipping_insert_under_its_own_request_id() {
    let (_guard, emulator, loader) = loader_case(LoadSettings::default(), &[]).await;
    let tag = unique("whole");
    let bodies = tagged_events(&tag, 100, 81, 0);
    let ingest = Ingest::stream(loader);
    let (_, first) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-1", deadline())
        .await;
    assert_eq!(first.loaded, 100);
    // The same messages again, as after a lost batch response: the same chunk, which now
    // goes as the INSERT that skips rows already loaded: another statement text.
    let (response, again) = ingest
        .handle(&received(sqs_event(&tag, &bodies), 2), "req-2", deadline())
        .await;
    let report = emulator.requests().await;
    emulator.clean().await;
    assert_none_failed(&response, &again);
    let inserts = inserts(&report);
    assert_eq!(inserts.len(), 2, "{report}");
    assert_ne!(
        inserts[0]["request_id"], inserts[1]["request_id"],
        "two statement texts, two requestIds"
    );
    assert_eq!(inserts[1]["retry"], true);
    assert_eq!(
        inserts[1]["executed"], true,
        "the skipping INSERT ran; it was not answered from the plain INSERT's result"
    );
    assert_eq!(again.loaded, 0, "nothing new: every row was there");
    assert_eq!(rows_tagged(&tag), 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn compile_and_context_errors_fail_the_messages_and_quarantine_nothing() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    let loader = loader(LoadSettings {
        max_statement_bytes: 20_000,
        max_concurrent_statements: 1,
    })
    .await;
    loader.ensure_tables(deadline()).await.unwrap();
    let ingest = Ingest::stream(loader);
    let cases = [
        (
            "002023",
            "SQL compilation error: Expression type does not match column data type, expecting NUMBER(18,4) but got VARCHAR(16777216) for column VALUE",
            vec![
                "Column VALUE of table TRACKLAYER.EVENTS.RAW_EVENTS",
                "infra/sql/raw_events.sql",
            ],
        ),
        (
            "000904",
            "SQL compilation error: error line 1 at position 270\ninvalid identifier 'RAW_PAYLOAD'",
            vec!["TRACKLAYER.EVENTS.RAW_EVENTS has no column RAW_PAYLOAD"],
        ),
        (
            "090105",
            "Cannot perform INSERT. This session does not have a current database. Call 'USE DATABASE', or use a qualified name.",
            vec!["the secret's database (TRACKLAYER)", "upper-case name"],
        ),
        (
            "390189",
            "Role 'TRACKLAYER_WRITER' specified in the connect string is not granted to this user.",
            vec!["the secret's role (TRACKLAYER_WRITER)", "SHOW ROLES"],
        ),
    ];
    for (code, message, words) in cases {
        emulator.clean().await;
        emulator
            .fault(json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1000, "action": {"snowflake_error": {"status": 422, "code": code, "sqlState": "22000", "message": message}}}))
            .await;
        let tag = unique(&format!("cfg{code}"));
        let mut bodies = tagged_events(&tag, 200, 91, 0);
        bodies.push("{broken".into());
        let (response, summary) = ingest
            .handle(&sqs_event(&tag, &bodies), "req-cfg", deadline())
            .await;
        let report = emulator.requests().await;
        emulator.clean().await;
        let failed = failures(&response);
        assert!(
            failed.len() >= 200,
            "{code}: the events' messages are retried: {failed:?}"
        );
        assert_eq!(summary.refused, 0, "{code}: nothing quarantined as refused");
        let refused = report["statements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "INSERT" && s["status"] == 422)
            .count();
        assert_eq!(
            refused, 1,
            "{code}: one refusal stops the run, no bisection: {report}"
        );
        assert_eq!(
            count(&format!(
                "FROM RAW_EVENTS_REJECTED WHERE EVENT_ID LIKE '{tag}-%'"
            )),
            0,
            "{code}: no event quarantined"
        );
        assert_eq!(rows_tagged(&tag), 0);
        let (error, fix) = summary.error.clone().unwrap();
        assert!(error.contains(code), "{error}");
        for word in words {
            assert!(fix.contains(word), "{code}: {word:?} not in {fix}");
        }
        assert!(
            fix.contains("Nothing was quarantined") || fix.contains("queued"),
            "{fix}"
        );
    }
}

#[test]
fn bad_setting_stops_the_binary_naming_the_setting() {
    let binary = tracklayer_tests::repo_root().join("target/debug/ingest");
    assert!(
        binary.exists(),
        "build the workspace first (make test does)"
    );
    // (environment, texts the refusal must hold)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case<'_>; 2] = [
        (
            &[("TRACKLAYER_LOAD_MODE", "sometimes")],
            &["TRACKLAYER_LOAD_MODE", "\"sometimes\" is not a mode"],
        ),
        (
            &[
                ("TRACKLAYER_LOAD_MODE", "stream"),
                ("TRACKLAYER_SECRET_ID", "tracklayer/snowflake"),
                ("TRACKLAYER_LOAD_METHOD", "streaming"),
            ],
            &[
                "TRACKLAYER_LOAD_METHOD",
                "streaming needs TRACKLAYER_LOAD_MODE=scheduled",
            ],
        ),
    ];
    for (env, expected) in cases {
        let out = std::process::Command::new(&binary)
            .envs(env.iter().copied())
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let all = format!("{stdout}{stderr}");
        for text in expected {
            assert!(all.contains(text), "{text:?} not in {all}");
        }
    }
}

/// A loader whose secret is the stack's but points at `schema`.
async fn loader_in_schema(schema: &str) -> tracklayer::load::Loader {
    let secrets = aws_sdk_secretsmanager::Client::new(&aws().await);
    let stack_secret = secrets
        .get_secret_value()
        .secret_id(tracklayer_tests::setting("TRACKLAYER_SECRET_ID"))
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let mut secret: Value = serde_json::from_str(&stack_secret).unwrap();
    secret["schema"] = json!(schema);
    let name = create_secret(&secrets, "tracklayer/premade", &secret).await;
    let source = tracklayer::secrets::SecretSource::new(
        secrets,
        name,
        Duration::from_secs(300),
        tracklayer_tests::fast_retry(),
    );
    tracklayer::load::Loader::new(source, LoadSettings::default())
}

#[tokio::test(flavor = "multi_thread")]
async fn premade_table_with_another_column_type_fails_the_messages_and_quarantines_nothing() {
    let _guard = exclusive().await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let schema = unique("PREMADE").to_ascii_uppercase().replace('-', "_");
    // The data team made RAW_EVENTS beforehand, with EVENT_TIME as epoch milliseconds.
    let ddl = tracklayer::snowflake::Table::RawEvents
        .ddl()
        .replace(
            "EVENT_TIME TIMESTAMP_NTZ NOT NULL",
            "EVENT_TIME NUMBER(18, 0) NOT NULL",
        )
        .replace(
            "CREATE TABLE IF NOT EXISTS RAW_EVENTS",
            &format!("CREATE TABLE TRACKLAYER.{schema}.RAW_EVENTS"),
        );
    assert!(ddl.contains("EVENT_TIME NUMBER(18, 0)"), "{ddl}");
    let setup = loader(LoadSettings::default()).await;
    for sql in [format!("CREATE SCHEMA TRACKLAYER.{schema}"), ddl] {
        setup
            .run(tracklayer::snowflake::Statement::new(sql), deadline())
            .await
            .unwrap();
    }
    let ingest = Ingest::stream(loader_in_schema(&schema).await);
    let tag = unique("premade");
    let mut bodies = tagged_events(&tag, 50, 17, 0);
    bodies.push("{broken".into());
    let (response, summary) = ingest
        .handle(&sqs_event(&tag, &bodies), "req-premade", deadline())
        .await;
    let report = emulator.requests().await;
    let failed = failures(&response);
    assert_eq!(
        failed,
        (0..50)
            .map(|i| format!("{tag}-{i}"))
            .collect::<BTreeSet<_>>(),
        "every event's message is retried; the broken one was quarantined: {}",
        summary.to_line()
    );
    assert_eq!(
        report["by_kind"]["INSERT"], 2,
        "the events' INSERT (refused at compile time, not bisected) and the rejects': {report}"
    );
    let (error, fix) = summary.error.clone().unwrap();
    assert!(error.contains("002023"), "{error}");
    assert!(fix.contains("EVENT_TIME"), "{fix}");
    assert_eq!(summary.refused, 0);
    let rows = sfquery(&format!(
        "SELECT (SELECT COUNT(*) FROM TRACKLAYER.{schema}.RAW_EVENTS) AS E, \
         (SELECT COUNT(*) FROM TRACKLAYER.{schema}.RAW_EVENTS_REJECTED) AS R"
    ));
    assert_eq!(
        (rows.text(0, "E"), rows.text(0, "R")),
        (Some("0".into()), Some("1".into())),
        "no event landed or was quarantined; the broken body was"
    );
    setup
        .run(
            tracklayer::snowflake::Statement::new(format!(
                "DROP SCHEMA TRACKLAYER.{schema} CASCADE"
            )),
            deadline(),
        )
        .await
        .unwrap();
}

/// The Lambda event for messages received from SQS (with `All` attributes and message
/// attributes), as the event source mapping builds it.
fn lambda_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    use aws_lambda_events::event::sqs::SqsMessageAttribute;
    let mut event = SqsEvent::default();
    for received in messages {
        let mut message = SqsMessage::default();
        message.message_id = received.message_id.clone();
        message.receipt_handle = received.receipt_handle.clone();
        message.body = received.body.clone();
        for (name, value) in received.attributes.clone().unwrap_or_default() {
            message.attributes.insert(name.as_str().to_string(), value);
        }
        for (name, value) in received.message_attributes.clone().unwrap_or_default() {
            let mut attribute = SqsMessageAttribute::default();
            attribute.string_value = value.string_value;
            attribute.data_type = Some(value.data_type);
            message.message_attributes.insert(name, attribute);
        }
        event.records.push(message);
    }
    event
}

#[tokio::test(flavor = "multi_thread")]
async fn partly_loaded_message_redriven_from_the_dlq_loads_each_row_once() {
    let _guard = exclusive().await;
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let (events, dlq) = queue_with_dlq(&sqs, "ing-events", 2).await;
    let tag = unique("ingpart");
    let good = (0..3).map(|i| format!(r#"{{"event_id":"{tag}-{i}","event_time":"2026-01-01T00:00:00Z","merchant_id":"m","event_name":"purchase"}}"#));
    let bad = (0..2).map(|i| format!(r#"{{"event_id":"{tag}-bad-{i}","event_time":"2026-01-01T00:00:00Z","event_name":"purchase"}}"#));
    let body = format!("[{}]", good.chain(bad).collect::<Vec<_>>().join(","));
    let original = sqs
        .send_message()
        .queue_url(&events)
        .message_body(&body)
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap();
    let landed = || {
        count(&format!(
            "FROM RAW_EVENTS WHERE EVENT_ID LIKE '{tag}-%' AND EVENT_ID NOT LIKE '{tag}-bad-%'"
        ))
    };
    let quarantined = || {
        count(&format!(
            "FROM RAW_EVENTS_REJECTED WHERE EVENT_ID LIKE '{tag}-bad-%'"
        ))
    };

    // The quarantine cannot be written (Snowflake answers 503 for it, every attempt); the
    // valid events land.
    let emulator = Emulator::default();
    emulator.clean().await;
    emulator
        .fault(json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS_REJECTED"}, "count": 10_000, "action": {"status": 503}}))
        .await;
    let ingest = Ingest::stream_requeuing(
        loader(LoadSettings::default()).await,
        sqs.clone(),
        events.clone(),
    );
    let received = receive_all(&sqs, &events).await;
    assert_eq!(received.len(), 1);
    let (response, summary) = ingest
        .handle(&lambda_event(&received), "req-part-1", deadline())
        .await;
    assert_eq!(
        failures(&response),
        BTreeSet::new(),
        "sent back, so done: {}",
        summary.to_line()
    );
    assert_eq!(
        (summary.loaded, summary.requeued),
        (3, 1),
        "{}",
        summary.to_line()
    );
    settle(&sqs, &events, &received, &failures(&response)).await;
    assert_eq!((landed(), quarantined()), (3, 0));

    // The marked copy fails until it is dead-lettered (maxReceiveCount 2): it is not sent back
    // again, and its valid events are not inserted again.
    for attempt in 0..2 {
        let received = receive_all(&sqs, &events).await;
        assert_eq!(received.len(), 1, "attempt {attempt}");
        let mark = &received[0].message_attributes.as_ref().unwrap()["tracklayer-partly-loaded"];
        assert_eq!(mark.string_value.as_deref(), Some(original.as_str()));
        let (response, summary) = ingest
            .handle(&lambda_event(&received), "req-part-2", deadline())
            .await;
        assert_eq!(failures(&response).len(), 1, "{}", summary.to_line());
        assert_eq!(
            (summary.loaded, summary.requeued),
            (0, 0),
            "{}",
            summary.to_line()
        );
        settle(&sqs, &events, &received, &failures(&response)).await;
    }
    assert!(
        receive_all(&sqs, &events).await.is_empty(),
        "moved to the DLQ"
    );
    assert_eq!((landed(), quarantined()), (3, 0));

    // Fixed; redriven the way SQS's move task does: a new message, same body and attributes.
    emulator.clean().await;
    let dead = receive_all(&sqs, &dlq).await;
    assert_eq!(dead.len(), 1);
    sqs.send_message()
        .queue_url(&events)
        .message_body(dead[0].body.as_deref().unwrap())
        .set_message_attributes(dead[0].message_attributes.clone())
        .send()
        .await
        .unwrap();
    settle(&sqs, &dlq, &dead, &BTreeSet::new()).await;
    let received = receive_all(&sqs, &events).await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].attributes.as_ref().unwrap()
            [&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount],
        "1",
        "a first delivery to SQS"
    );
    let (response, summary) = ingest
        .handle(&lambda_event(&received), "req-part-3", deadline())
        .await;
    assert_none_failed(&response, &summary);
    assert_eq!(summary.loaded, 0, "{}", summary.to_line());
    settle(&sqs, &events, &received, &BTreeSet::new()).await;
    assert_eq!((landed(), quarantined()), (3, 2), "every event once");
    let sources = sfquery(&format!(
        "SELECT DISTINCT SOURCE_MESSAGE_ID AS ID FROM RAW_EVENTS_REJECTED WHERE EVENT_ID LIKE '{tag}-bad-%'"
    ));
    assert_eq!(sources.rows.len(), 1);
    assert_eq!(
        sources.text(0, "ID").as_deref(),
        Some(original.as_str()),
        "the original message id"
    );
    assert!(receive_all(&sqs, &events).await.is_empty());
    assert!(receive_all(&sqs, &dlq).await.is_empty());
}
