//! The flush handler against the local stack: exactly-once loading of staged chunks, an empty
//! run that contacts nobody, crash safety, faults, poison rows and suspend-after-flush.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use tracklayer::flush::{Flush, FlushConfig, FlushReport, FlushRequest, FlushStatus};
use tracklayer::ingest::Ingest;
use tracklayer::load::{LoadMethod, LoadSettings};
use tracklayer::staging::StagedChunk;
use tracklayer_tests::{
    Emulator, aws, count, drain_queue, exclusive, flush_config, fresh_queue, loader,
    queue_with_dlq, receive_all, setting, settle, sfquery, tagged_events, unique,
};

fn in_minutes(n: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(60 * n)
}

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&aws().await)
}

/// Stages the bodies through ingest's scheduled mode, in SQS batches of up to 10,000
/// messages with ids `<tag>-<n>`. Returns (valid, invalid) event counts.
async fn stage_bodies(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    tag: &str,
    bodies: &[String],
    chunk_bytes: usize,
) -> (usize, usize) {
    stage_in_batches(sqs, queue, tag, bodies, 10_000, chunk_bytes).await
}

/// As [`stage_bodies`], in SQS batches of `batch_size` messages (one ingest invocation each).
async fn stage_in_batches(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    tag: &str,
    bodies: &[String],
    batch_size: usize,
    chunk_bytes: usize,
) -> (usize, usize) {
    let ingest = Ingest::scheduled(sqs.clone(), queue.to_string(), chunk_bytes);
    let (mut valid, mut invalid) = (0, 0);
    for (batch, slice) in bodies.chunks(batch_size).enumerate() {
        let mut event = SqsEvent::default();
        for (i, body) in slice.iter().enumerate() {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("{tag}-{}", batch * batch_size + i));
            message.body = Some(body.clone());
            event.records.push(message);
        }
        let (response, summary) = ingest.handle(&event, "stage", in_minutes(2)).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{}",
            summary.to_line()
        );
        valid += summary.events - summary.rejected;
        invalid += summary.rejected;
    }
    (valid, invalid)
}

async fn stage(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    tag: &str,
    n: usize,
    bad_every: u32,
    chunk_bytes: usize,
) -> (usize, usize) {
    stage_bodies(
        sqs,
        queue,
        tag,
        &tagged_events(tag, n, n as u64, bad_every),
        chunk_bytes,
    )
    .await
}

/// What each test starts with: the lock on the local Snowflake's global state (held while the
/// guard lives), an SQS client, a fresh staging queue, and a unique tag for its rows.
async fn case(
    prefix: &str,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    aws_sdk_sqs::Client,
    String,
    String,
) {
    let guard = exclusive().await;
    let sqs = sqs().await;
    let queue = fresh_queue(&sqs, "flush-test").await;
    (guard, sqs, queue, unique(prefix))
}

fn config(queue: &str) -> FlushConfig {
    flush_config(queue, LoadMethod::SqlApi)
}

/// The same, loading through Snowpipe Streaming.
fn streaming_config(queue: &str) -> FlushConfig {
    flush_config(queue, LoadMethod::Streaming)
}

/// One streaming run over `queue` with `faults` installed, commits 200 ms after each append;
/// the run must load everything. Returns its report and the request report.
async fn streaming_run(queue: &str, faults: &[Value]) -> (FlushReport, Value) {
    streaming_run_committing(queue, faults, 200).await
}

/// The same, with commits `commit_delay_ms` after each append.
async fn streaming_run_committing(
    queue: &str,
    faults: &[Value],
    commit_delay_ms: u64,
) -> (FlushReport, Value) {
    let emulator = Emulator::default();
    emulator.clean().await;
    emulator
        .settings(json!({"streaming": {"commit_delay_ms": commit_delay_ms}}))
        .await;
    for fault in faults {
        emulator.fault(fault.clone()).await;
    }
    let report = run(
        &flusher(streaming_config(queue)).await,
        FlushRequest::default(),
    )
    .await;
    let requests = emulator.requests().await;
    emulator.clean().await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    (report, requests)
}

async fn flusher(config: FlushConfig) -> Flush {
    Flush::with_loader(config, sqs().await, loader(LoadSettings::default()).await)
}

async fn run(flush: &Flush, request: FlushRequest) -> FlushReport {
    flush.run(request, in_minutes(5)).await
}

/// A run with no fault that must load everything.
async fn loaded_run(queue: &str) -> FlushReport {
    Emulator::default().clean().await;
    let report = run(&flusher(config(queue)).await, FlushRequest::default()).await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    report
}

/// One run of a default flush over `queue` with `fault` installed in a clean local Snowflake;
/// returns its report and what the local Snowflake was asked, and leaves it clean again.
async fn run_with_fault(queue: &str, fault: Value) -> (FlushReport, Value) {
    let emulator = Emulator::default();
    emulator.clean().await;
    emulator.fault(fault).await;
    let report = run(&flusher(config(queue)).await, FlushRequest::default()).await;
    let requests = emulator.requests().await;
    emulator.clean().await;
    (report, requests)
}

/// Messages on `queue` that count as `attributes` (waiting, in flight), summed.
async fn messages_on(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    attributes: &[QueueAttributeName],
) -> u64 {
    sqs.get_queue_attributes()
        .queue_url(queue)
        .set_attribute_names(Some(attributes.to_vec()))
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .values()
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}

/// Inserts the chunk's rows with the loader directly, as a run that loaded it before it was
/// lost or dead-lettered did.
async fn insert_directly(chunk: &StagedChunk) {
    let loader = loader(LoadSettings::default()).await;
    loader.ensure_tables(in_minutes(1)).await.unwrap();
    loader
        .run(chunk.table.insert(chunk.body.clone()), in_minutes(1))
        .await
        .unwrap();
}

/// Quarantined rows from messages tagged `tag`.
fn rejected(tag: &str) -> u64 {
    count(&format!(
        "FROM RAW_EVENTS_REJECTED WHERE SOURCE_MESSAGE_ID LIKE '{tag}-%'"
    ))
}

fn landed(tag: &str) -> (u64, u64) {
    let total = count(&format!("FROM RAW_EVENTS WHERE EVENT_ID LIKE '{tag}-%'"));
    let distinct = sfquery(&format!(
        "SELECT COUNT(DISTINCT EVENT_ID) AS N FROM RAW_EVENTS WHERE EVENT_ID LIKE '{tag}-%'"
    ))
    .text(0, "N")
    .unwrap()
    .parse()
    .unwrap();
    (total, distinct)
}

/// 100,000 events (1% invalid) staged by ingest, then one flush run with `method`: every valid
/// event in RAW_EVENTS once, every invalid one in RAW_EVENTS_REJECTED; returns the run's report
/// and what the local Snowflake was asked.
async fn flush_100000(prefix: &str, method: LoadMethod) -> (FlushReport, Value) {
    let (_guard, sqs, queue, tag) = case(prefix).await;
    let (valid, invalid) = stage(&sqs, &queue, &tag, 100_000, 100, 1_000_000).await;
    assert_eq!((valid, invalid), (99_000, 1_000));

    let emulator = Emulator::default();
    emulator.clean().await;
    emulator
        .settings(json!({"streaming": {"commit_delay_ms": 200}}))
        .await;
    let flush = flusher(flush_config(&queue, method)).await;
    let report = run(&flush, FlushRequest::default()).await;
    let requests = emulator.requests().await;
    emulator.clean().await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert_eq!(report.events_loaded, valid as u64);
    assert_eq!(report.events_rejected, invalid as u64);
    assert_eq!(report.leftover_estimate, 0);
    assert!(report.snowflake_contacted);
    assert_eq!(landed(&tag), (valid as u64, valid as u64));
    assert_eq!(rejected(&tag), invalid as u64);
    (report, requests)
}

#[tokio::test(flavor = "multi_thread")]
async fn flushes_100000_staged_events_exactly_once() {
    let (report, requests) = flush_100000("f100k", LoadMethod::SqlApi).await;
    assert!(
        report.statements <= 100,
        "{} statements for 100,000 events",
        report.statements
    );
    assert_eq!(
        requests["by_kind"]["INSERT"].as_u64(),
        Some(report.statements)
    );
    assert_eq!((report.appends, report.append_bytes), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_100000_staged_events_exactly_once_with_no_insert() {
    let (report, requests) = flush_100000("s100k", LoadMethod::Streaming).await;
    assert_eq!(report.statements, 0, "{}", report.to_line());
    assert_eq!(requests["by_kind"]["INSERT"], Value::Null, "{requests}");
    assert_eq!(requests["by_streaming"]["append"], report.appends);
    // Each append is at most 4 MB compressed; the rows are ~1.2 KB of NDJSON each.
    assert!(report.appends >= 2, "{}", report.to_line());
    assert_eq!(
        requests["by_streaming"]["open"], 2,
        "one channel per table, opened once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn small_ingest_batches_are_packed_into_full_statements() {
    let (_guard, sqs, queue, tag) = case("fpack").await;
    // 20 ingest invocations of 500 messages: 20 chunks of events and 20 tiny ones of rejects.
    let bodies = tagged_events(&tag, 10_000, 10_000, 100);
    let (valid, invalid) = stage_in_batches(&sqs, &queue, &tag, &bodies, 500, 1_000_000).await;
    assert_eq!((valid, invalid), (9_900, 100));

    let report = loaded_run(&queue).await;
    assert_eq!(report.chunks_loaded, 40, "every staged message deleted");
    assert_eq!(report.leftover_estimate, 0);
    assert_eq!((report.events_loaded, report.events_rejected), (9_900, 100));
    assert_eq!(landed(&tag), (9_900, 9_900));
    assert_eq!(rejected(&tag), 100);
    // Full statements, plus at most one part-filled statement per table.
    let full = report
        .bytes_sent
        .div_ceil(LoadSettings::default().max_statement_bytes as u64 - 2_000);
    assert!(
        report.statements <= full + 2,
        "{} statements for {} bytes",
        report.statements,
        report.bytes_sent
    );
    assert!(
        report.statements < 20,
        "fewer statements than staged chunks"
    );
    assert_eq!(
        Emulator::default().requests().await["by_kind"]["INSERT"].as_u64(),
        Some(report.statements)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_queue_sends_nothing_to_snowflake() {
    let (_guard, _, queue, _) = case("fempty").await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let flush = flusher(config(&queue)).await;
    let report = run(&flush, FlushRequest::default()).await;
    assert_eq!(report.status, FlushStatus::Empty);
    assert!(!report.snowflake_contacted);
    assert_eq!(report.statements, 0);
    assert_eq!(
        emulator.requests().await["total"],
        0,
        "no authentication, no statement"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_chunk_waits_for_the_next_run_rather_than_coming_back_in_this_one() {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let (_guard, sqs, queue, tag) = case("fhide").await;
    let (valid, _) = stage(&sqs, &queue, &tag, 200, 0, 1_000_000).await;
    let emulator = Emulator::default();
    emulator.clean().await;
    emulator
        .fault(json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1000, "action": {"status": 503}}))
        .await;
    let flush = flusher(config(&queue)).await;
    let first = run(
        &flush,
        FlushRequest {
            max_seconds: Some(8),
        },
    )
    .await;
    emulator.clean().await;
    assert_eq!(first.status, FlushStatus::Partial, "{}", first.to_line());
    assert_eq!(
        (first.chunks_failed, first.events_loaded),
        (1, 0),
        "{}",
        first.to_line()
    );
    let receive = |wait: i32| {
        sqs.receive_message()
            .queue_url(&queue)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
    };
    let right_after = receive(0).await.unwrap().messages.unwrap_or_default();
    assert!(
        right_after.is_empty(),
        "hidden for the rest of the run's time"
    );
    // Visible again once the run's time is over (8 s plus the 1 s margin), received by the run
    // once: released at once, the run would have taken it again (and hidden it for 30 s).
    let back = receive(20).await.unwrap().messages.unwrap_or_default();
    assert_eq!(back.len(), 1);
    let count = back[0]
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .cloned();
    assert_eq!(
        count.as_deref(),
        Some("2"),
        "this receive and the run's one"
    );
    sqs.change_message_visibility()
        .queue_url(&queue)
        .receipt_handle(back[0].receipt_handle.clone().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let second = run(&flush, FlushRequest::default()).await;
    assert_eq!(second.status, FlushStatus::Loaded, "{}", second.to_line());
    assert_eq!(landed(&tag), (valid as u64, valid as u64));
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_waiting_for_a_statement_slot_stay_hidden_and_are_received_once() {
    let _guard = exclusive().await;
    let sqs = sqs().await;
    // A chunk received a second time goes to the dead-letter queue instead.
    let (queue, dlq) = queue_with_dlq(&sqs, "fwait", 1).await;
    let tag = unique("fwait");
    let (valid, _) = stage(&sqs, &queue, &tag, 1_200, 0, 20_000).await;
    let staged = messages_on(
        &sqs,
        &queue,
        &[QueueAttributeName::ApproximateNumberOfMessages],
    )
    .await;
    // More than the run holds waiting (a batch of 10 per receiver, one in the channel, one
    // being packed), so the receivers are still receiving when the first wait runs out.
    assert!(staged >= 50, "{staged} chunks");
    let emulator = Emulator::default();
    emulator.clean().await;
    // One statement at a time, one chunk each, 300 ms each: a batch of 10 waits 3 s for the
    // packer, longer than the 2 s visibility timeout.
    emulator
        .fault(json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1000, "phase": "after_execute", "action": {"delay_ms": 300}}))
        .await;
    let mut settings = config(&queue);
    settings.visibility = Duration::from_secs(2);
    let one_at_a_time = LoadSettings {
        max_statement_bytes: 20_000,
        max_concurrent_statements: 1,
    };
    let flush = Flush::with_loader(settings, sqs.clone(), loader(one_at_a_time).await);
    let report = run(&flush, FlushRequest::default()).await;
    emulator.clean().await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert_eq!(report.chunks_loaded, staged, "{}", report.to_line());
    assert_eq!(report.chunks_redelivered, 0, "{}", report.to_line());
    assert_eq!(landed(&tag), (valid as u64, valid as u64));
    let everywhere = [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ];
    assert_eq!(messages_on(&sqs, &dlq, &everywhere).await, 0);
    assert_eq!(messages_on(&sqs, &queue, &everywhere).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_cut_off_by_its_deadline_leaves_the_rest_for_the_next_run() {
    let (_guard, sqs, queue, tag) = case("fcut").await;
    let (valid, _) = stage(&sqs, &queue, &tag, 3_000, 0, 20_000).await;
    let emulator = Emulator::default();
    emulator.clean().await;
    // Every INSERT takes 400 ms, so a 1-second run cannot load ~100 chunks.
    emulator
        .fault(json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1000, "phase": "after_execute", "action": {"delay_ms": 400}}))
        .await;
    let mut settings = config(&queue);
    settings.receivers = 1;
    // Statements in flight at the cut-off get the margin to finish (the client sends none with
    // less than 4 s left).
    settings.margin = Duration::from_secs(5);
    // Statements as small as the staged chunks, so the run holds many of them.
    let small = LoadSettings {
        max_statement_bytes: 20_000,
        ..LoadSettings::default()
    };
    let flush = Flush::with_loader(settings, sqs.clone(), loader(small).await);
    let first = run(
        &flush,
        FlushRequest {
            max_seconds: Some(1),
        },
    )
    .await;
    emulator.clean().await;
    assert_eq!(first.status, FlushStatus::Partial, "{}", first.to_line());
    // How much lands before the cut-off depends on how fast this machine is (none, on a loaded
    // one); that the run stops short and the next run finishes is what is asserted.
    assert!(
        (first.events_loaded as usize) < valid,
        "{}",
        first.to_line()
    );
    assert!(first.leftover_estimate > 0);
    let second = run(&flush, FlushRequest::default()).await;
    assert_eq!(second.status, FlushStatus::Loaded, "{}", second.to_line());
    // A statement still running at the cut-off may have landed without its answer arriving;
    // its chunks came back and their rows were found already loaded, not inserted again.
    assert_eq!(
        first.events_loaded + second.events_loaded + second.rows_already_loaded,
        valid as u64,
        "{} / {}",
        first.to_line(),
        second.to_line()
    );
    assert_eq!(landed(&tag), (valid as u64, valid as u64));
}

/// What a flush killed between INSERT and delete leaves behind: the staged chunk's rows
/// inserted, its message received once and visible again (nothing deleted).
async fn crash_after_insert(sqs: &aws_sdk_sqs::Client, queue: &str) {
    let received = receive_all(sqs, queue).await;
    let chunk = StagedChunk::from_message(received[0].body.as_deref().unwrap()).unwrap();
    insert_directly(&chunk).await;
    let unfinished = received
        .iter()
        .map(|m| m.message_id.clone().unwrap())
        .collect();
    settle(sqs, queue, &received, &unfinished).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_inserted_before_a_crash_is_not_loaded_again() {
    let (_guard, sqs, queue, tag) = case("fcrash").await;
    let (valid, _) = stage(&sqs, &queue, &tag, 500, 0, 1_000_000).await;
    crash_after_insert(&sqs, &queue).await;
    assert_eq!(landed(&tag), (valid as u64, valid as u64));

    let report = loaded_run(&queue).await;
    assert_eq!(
        landed(&tag),
        (valid as u64, valid as u64),
        "no event_id twice"
    );
    assert_eq!(report.chunks_redelivered, 1);
    assert_eq!(report.rows_already_loaded, valid as u64);
    assert_eq!(report.events_loaded, 0);
    assert_eq!(report.chunks_loaded, 1, "and its message is deleted");
    let requests = Emulator::default().requests().await;
    assert_eq!(requests["by_kind"]["INSERT"], 1, "{requests}");
}

/// Sends `chunk` to `queue` as a new message with its `staged_at` set to `staged_ago` before
/// now: what a dead-letter redrive leaves (new message id, receive count 1, the same body).
async fn resend_staged(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    chunk: &StagedChunk,
    staged_ago: Duration,
) {
    let staged_at = tracklayer::report::now_ms() - staged_ago.as_millis() as u64;
    let copy = StagedChunk {
        staged_at: Some(staged_at),
        ..chunk.clone()
    };
    sqs.send_message()
        .queue_url(queue)
        .message_body(copy.to_message())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn redriven_chunk_staged_long_ago_loads_no_row_twice() {
    let (_guard, sqs, queue, tag) = case("fredrive").await;
    let (valid, _) = stage(&sqs, &queue, &tag, 300, 0, 1_000_000).await;
    let bodies = drain_queue(&sqs, &queue).await;
    assert_eq!(bodies.len(), 1, "one chunk");
    let chunk = StagedChunk::from_message(&bodies[0]).unwrap();
    assert_eq!(chunk.rows, valid);
    // Its rows landed (a run loaded it, then it failed four more runs and was dead-lettered).
    insert_directly(&chunk).await;
    assert_eq!(landed(&tag), (valid as u64, valid as u64));

    // Redriven: a new message, first delivery, staged 11 minutes ago (two 5-minute periods
    // are 10).
    let flush = flusher(config(&queue)).await;
    resend_staged(&sqs, &queue, &chunk, Duration::from_secs(11 * 60)).await;
    let report = run(&flush, FlushRequest::default()).await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert_eq!(report.chunks_loaded, 1);
    assert_eq!(report.chunks_redelivered, 1, "{}", report.to_line());
    assert_eq!(report.events_loaded, 0);
    assert_eq!(report.rows_already_loaded, valid as u64);
    assert_eq!(landed(&tag), (valid as u64, valid as u64), "no row twice");
    assert!(drain_queue(&sqs, &queue).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_staged_within_two_periods_is_a_first_delivery() {
    let (_guard, sqs, queue, tag) = case("ffresh").await;
    let (valid, _) = stage(&sqs, &queue, &tag, 300, 0, 1_000_000).await;
    let chunk = StagedChunk::from_message(&drain_queue(&sqs, &queue).await[0]).unwrap();
    resend_staged(&sqs, &queue, &chunk, Duration::from_secs(9 * 60)).await;
    let report = loaded_run(&queue).await;
    assert_eq!(report.chunks_redelivered, 0, "the plain INSERT");
    assert_eq!(report.rows_already_loaded, 0);
    assert_eq!(report.events_loaded, valid as u64);
    assert_eq!(landed(&tag), (valid as u64, valid as u64));
    let requests = Emulator::default().requests().await;
    assert_eq!(requests["by_kind"]["INSERT"], 1, "{requests}");
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_errors_drops_and_slow_answers_lose_and_double_nothing() {
    let (_guard, sqs, queue, tag) = case("ffault").await;
    let (valid, _) = stage(&sqs, &queue, &tag, 4_000, 0, 100_000).await;
    let emulator = Emulator::default();
    emulator.clean().await;
    emulator.settings(json!({"async_threshold_ms": 100})).await;
    let insert = json!({"statement_contains": "INSERT INTO RAW_EVENTS ("});
    for (phase, action, n) in [
        ("before_execute", json!({"status": 429}), 2),
        ("after_execute", json!({"status": 503}), 2),
        ("after_execute", json!({"drop_connection": true}), 2),
        ("before_execute", json!({"delay_ms": 500}), 2),
    ] {
        emulator
            .fault(json!({"match": insert, "count": n, "phase": phase, "action": action}))
            .await;
    }
    let flush = Flush::with_loader(
        config(&queue),
        sqs.clone(),
        loader(LoadSettings::default()).await,
    );
    let report = run(&flush, FlushRequest::default()).await;
    let faults_left = emulator.faults().await;
    emulator.clean().await;
    emulator
        .settings(json!({"async_threshold_ms": 45000}))
        .await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert_eq!(faults_left, json!([]), "every fault was met");
    assert_eq!(report.events_loaded, valid as u64);
    assert_eq!(landed(&tag), (valid as u64, valid as u64));
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_row_in_a_staged_chunk_is_quarantined_and_the_rest_load() {
    let (_guard, sqs, queue, tag) = case("fpoison").await;
    let events = tagged_events(&tag, 1_000, 1_000, 0);
    let (valid, _) = stage_bodies(&sqs, &queue, &tag, &events, 1_000_000).await;
    let probe: Value = serde_json::from_str(&events[437]).unwrap();
    let poison = probe["event_id"].as_str().unwrap().to_string();
    let (report, _) = run_with_fault(&queue, json!({"match": {"binding_contains": poison, "statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1000, "action": {"snowflake_error": {"status": 422, "code": "100038", "sqlState": "22018", "message": "Numeric value 'x' is not recognized"}}})).await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert_eq!(report.events_loaded, valid as u64 - 1);
    assert_eq!(report.events_rejected, 1);
    assert_eq!(landed(&tag), (valid as u64 - 1, valid as u64 - 1));
    let q = sfquery(&format!(
        "SELECT SOURCE_MESSAGE_ID, REASON, DETAIL FROM RAW_EVENTS_REJECTED WHERE EVENT_ID = '{poison}'"
    ));
    assert_eq!(q.rows.len(), 1);
    assert!(
        q.text(0, "SOURCE_MESSAGE_ID")
            .unwrap()
            .starts_with("staged:")
    );
    assert_eq!(q.text(0, "REASON").as_deref(), Some("snowflake_rejected"));
    assert!(q.text(0, "DETAIL").unwrap().contains("100038"));
}

#[tokio::test(flavor = "multi_thread")]
async fn warehouse_is_suspended_only_after_a_run_that_loaded() {
    let (_guard, sqs, queue, tag) = case("fsusp").await;
    let emulator = Emulator::default();
    emulator.clean().await;
    let mut settings = config(&queue);
    settings.suspend_after_flush = true;
    let flush = flusher(settings).await;
    let empty = run(&flush, FlushRequest::default()).await;
    assert_eq!(empty.status, FlushStatus::Empty);
    assert!(!empty.warehouse_suspended);
    assert_eq!(emulator.requests().await["total"], 0);

    stage(&sqs, &queue, &tag, 200, 0, 1_000_000).await;
    let report = run(&flush, FlushRequest::default()).await;
    let requests = emulator.requests().await;
    let warehouses = reqwest::get(format!(
        "{}/__emulator/settings",
        setting("SNOWFLAKE_EMULATOR_URL")
    ))
    .await
    .unwrap()
    .json::<Value>()
    .await
    .unwrap();
    emulator
        .settings(json!({"warehouses": {"TRACKLAYER_WH": {"state": "STARTED"}}}))
        .await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert!(report.warehouse_suspended, "{:?}", report.suspend_detail);
    assert_eq!(requests["by_kind"]["ALTER"], 1, "{requests}");
    let last = requests["statements"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["kind"], "ALTER", "the suspend comes after the loads");
    assert_eq!(
        warehouses["warehouses"]["TRACKLAYER_WH"]["state"],
        "SUSPENDED"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_stop_the_run_and_keep_every_chunk() {
    let (_guard, sqs, queue, tag) = case("fauth").await;
    stage(&sqs, &queue, &tag, 2_000, 0, 50_000).await;
    let (report, requests) = run_with_fault(&queue, json!({"match": {"statement_contains": "INSERT"}, "count": 1000, "action": {"snowflake_error": {"status": 401, "code": "390144", "sqlState": "08001", "message": "JWT token is invalid."}}})).await;
    assert_eq!(report.status, FlushStatus::Failed, "{}", report.to_line());
    assert!(
        report.fix.as_deref().unwrap().contains("JWT"),
        "{:?}",
        report.fix
    );
    assert_eq!(report.chunks_loaded, 0);
    assert!(
        requests["by_kind"]["INSERT"].as_u64().unwrap() <= 8,
        "no retry storm: {requests}"
    );
    assert_eq!(landed(&tag), (0, 0));
    // Every chunk is still there for the next run.
    let waiting = messages_on(
        &sqs,
        &queue,
        &[
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ],
    )
    .await;
    assert!(waiting >= report.chunks_failed && waiting > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunk_delivered_twice_at_once_loads_once() {
    let (_guard, sqs, queue, tag) = case("ftwice").await;
    let (valid, _) = stage(&sqs, &queue, &tag, 2_000, 0, 100_000).await;
    // Every staged message twice, as SQS's at-least-once delivery may hand them out.
    let copies = drain_queue(&sqs, &queue).await;
    let chunks = copies.len();
    for body in copies.iter().chain(copies.iter()) {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let report = run(&flusher(config(&queue)).await, FlushRequest::default()).await;
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert_eq!(
        report.chunks_loaded as usize, chunks,
        "copies are not counted twice"
    );
    assert_eq!(report.events_loaded, valid as u64);
    assert_eq!(
        landed(&tag),
        (valid as u64, valid as u64),
        "each chunk landed once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loaded_age_is_counted_from_the_staging_messages_sent_timestamp() {
    let (_guard, sqs, queue, tag) = case("fage").await;
    let before_staging = tracklayer::report::now_ms();
    let (valid, _) = stage(&sqs, &queue, &tag, 200, 0, 1_000_000).await;
    let staged = tracklayer::report::now_ms();
    let flush = flusher(config(&queue)).await;
    let flush_started = tracklayer::report::now_ms();
    let report = run(&flush, FlushRequest::default()).await;
    let after_flush = tracklayer::report::now_ms();
    assert_eq!(report.status, FlushStatus::Loaded, "{}", report.to_line());
    assert_eq!(report.events_loaded, valid as u64);
    let age = report
        .loaded_age_ms
        .expect("rows landed, so their age is reported");
    // SQS stamped the chunks while they were staged; their rows landed during the run.
    assert!(
        age <= after_flush - before_staging,
        "age {age} ms, but staging began {} ms before the run ended",
        after_flush - before_staging
    );
    // ...and they had waited at least from the end of staging to the start of the run.
    assert!(
        age >= flush_started - staged,
        "age {age} ms, but {} ms passed between staging and the run",
        flush_started - staged
    );
    let line: Value = serde_json::from_str(&report.to_line()).unwrap();
    assert_eq!(line["LoadedEventAgeSeconds"], age as f64 / 1000.0);

    let empty = run(&flush, FlushRequest::default()).await;
    assert_eq!(empty.status, FlushStatus::Empty);
    assert_eq!(empty.loaded_age_ms, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn compile_error_stops_the_run_quarantines_nothing_and_keeps_every_chunk() {
    let (_guard, sqs, queue, tag) = case("fcompile").await;
    stage(&sqs, &queue, &tag, 2_000, 0, 50_000).await;
    let staged = messages_on(
        &sqs,
        &queue,
        &[QueueAttributeName::ApproximateNumberOfMessages],
    )
    .await;
    // RAW_EVENTS was made beforehand with VALUE as text: every INSERT fails to compile.
    let (report, requests) = run_with_fault(&queue, json!({"match": {"statement_contains": "INSERT INTO RAW_EVENTS ("}, "count": 1000, "action": {"snowflake_error": {"status": 422, "code": "002023", "sqlState": "22000", "message": "SQL compilation error: Expression type does not match column data type, expecting VARCHAR(16777216) but got NUMBER(18,4) for column VALUE"}}})).await;
    assert_eq!(report.status, FlushStatus::Failed, "{}", report.to_line());
    assert_eq!(
        (
            report.chunks_loaded,
            report.events_loaded,
            report.events_rejected
        ),
        (0, 0, 0)
    );
    let fix = report.fix.clone().unwrap();
    assert!(
        fix.contains("Column VALUE of table TRACKLAYER.EVENTS.RAW_EVENTS"),
        "{fix}"
    );
    assert!(
        requests["by_kind"]["INSERT"].as_u64().unwrap() <= 4,
        "the statements in flight, no bisection: {requests}"
    );
    assert_eq!(
        count(&format!(
            "FROM RAW_EVENTS_REJECTED WHERE EVENT_ID LIKE '{tag}-%'"
        )),
        0,
        "nothing quarantined"
    );
    assert_eq!(landed(&tag), (0, 0));
    let left: Vec<String> = drain_queue(&sqs, &queue).await;
    assert_eq!(
        left.len() as u64,
        staged,
        "every staged chunk is still on the queue"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_loads_every_staged_event_once_with_no_insert_statement() {
    let (_guard, sqs, queue, tag) = case("fstream").await;
    let (valid, invalid) = stage(&sqs, &queue, &tag, 3_000, 100, 200_000).await;
    assert_eq!((valid, invalid), (2_970, 30));
    let (report, requests) = streaming_run(&queue, &[]).await;
    assert_eq!(
        (report.events_loaded, report.events_rejected),
        (valid as u64, invalid as u64)
    );
    assert_eq!(report.leftover_estimate, 0);
    assert_eq!(
        report.statements, 0,
        "no SQL API statement loads a first delivery"
    );
    assert_eq!(requests["by_kind"]["INSERT"], Value::Null, "{requests}");
    assert!(report.appends >= 2, "{}", report.to_line());
    assert_eq!(
        requests["by_streaming"]["append"], report.appends,
        "every append was accepted and counted"
    );
    assert!(
        report.append_bytes > report.bytes_sent,
        "NDJSON rows carry their column names: {}",
        report.to_line()
    );
    assert_eq!(
        requests["by_streaming"]["open"], 2,
        "one channel per table, opened once"
    );
    assert_eq!(landed(&tag), (valid as u64, valid as u64));
    assert_eq!(rejected(&tag), invalid as u64);
    // The load time comes from the client (a default pipe would give every row one value).
    let q = sfquery(&format!(
        "SELECT COUNT(*) AS N FROM RAW_EVENTS WHERE EVENT_ID LIKE '{tag}-%' AND LOADED_AT IS NOT NULL AND RAW_PAYLOAD:event_id::STRING = EVENT_ID"
    ));
    assert_eq!(q.text(0, "N").as_deref(), Some(valid.to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_reopens_a_fenced_or_refused_channel_and_still_loads_each_row_once() {
    let (_guard, sqs, queue, tag) = case("fsfault").await;
    let (valid, invalid) = stage(&sqs, &queue, &tag, 2_000, 100, 100_000).await;
    let append = "/v2/streaming/data/";
    let faults = [
        // Another writer opens the channel before the first append: it is fenced (stale token).
        json!({"match": {"method": "POST", "path_prefix": append}, "count": 1, "action": {"fence_channel": true}}),
        // A throttled append, a 503 with a bare-string body, then an append whose answer is
        // lost after Snowflake took it (a retry with the old token is refused: reopen, replay).
        json!({"match": {"method": "POST", "path_prefix": append}, "count": 1, "action": {"status": 429}}),
        json!({"match": {"method": "POST", "path_prefix": append}, "count": 1, "action": {"status": 503, "body": "ERR_GENERAL_EXCEPTION_RETRY_REQUEST"}}),
        json!({"match": {"method": "POST", "path_prefix": append}, "count": 1, "phase": "after_execute", "action": {"drop_connection": true}}),
    ];
    let (report, requests) = streaming_run(&queue, &faults).await;
    assert_streamed_once(&report, &requests, &tag, (valid, invalid), 3);
}

/// Every staged event of `tag` (`valid`, `invalid`) landed once, through at least `opens`
/// channel opens.
fn assert_streamed_once(
    report: &FlushReport,
    requests: &Value,
    tag: &str,
    (valid, invalid): (usize, usize),
    opens: u64,
) {
    assert_eq!(report.chunks_failed, 0, "{}", report.to_line());
    assert_eq!(
        (report.events_loaded, report.events_rejected),
        (valid as u64, invalid as u64)
    );
    assert!(
        requests["by_streaming"]["open"].as_u64().unwrap() >= opens,
        "{requests}"
    );
    assert_eq!(landed(tag), (valid as u64, valid as u64), "no row twice");
    assert_eq!(rejected(tag), invalid as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_reopens_again_when_the_replay_after_a_reopen_is_refused() {
    let (_guard, sqs, queue, tag) = case("fsreplay").await;
    let (valid, invalid) = stage(&sqs, &queue, &tag, 3_000, 100, 150_000).await;
    let append = "/v2/streaming/data/";
    let reopen = json!({"channel_error": {"code": "ERR_CHANNEL_MUST_BE_REOPENED"}});
    let faults = [
        json!({"match": {"method": "POST", "path_prefix": append}, "count": 1, "action": {"delay_ms": 0}}),
        json!({"match": {"method": "POST", "path_prefix": append}, "count": 1, "action": reopen}),
        json!({"match": {"method": "POST", "path_prefix": append}, "count": 1, "action": reopen}),
    ];
    // Commits late, so earlier batches are still uncommitted when the second append asks for a
    // reopen: the reopen discards them, and replaying the first of them is refused too.
    let (report, requests) = streaming_run_committing(&queue, &faults, 1500).await;
    assert_streamed_once(&report, &requests, &tag, (valid, invalid), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn streaming_loads_a_redelivered_chunk_through_the_skipping_insert() {
    let (_guard, sqs, queue, tag) = case("fsredo").await;
    let (valid, _) = stage(&sqs, &queue, &tag, 500, 0, 1_000_000).await;
    crash_after_insert(&sqs, &queue).await;
    let (report, requests) = streaming_run(&queue, &[]).await;
    assert_eq!(landed(&tag), (valid as u64, valid as u64), "no row twice");
    assert_eq!(report.chunks_redelivered, 1);
    assert_eq!(report.rows_already_loaded, valid as u64);
    assert_eq!(requests["by_kind"]["INSERT"], 1, "{requests}");
    assert_eq!(
        requests["by_streaming"]["append"],
        Value::Null,
        "{requests}"
    );
    assert_eq!((report.appends, report.append_bytes), (0, 0));
}
