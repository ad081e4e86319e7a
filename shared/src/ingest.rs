//! The ingest function: an SQS batch becomes events, chunks, and either INSERTs (stream mode)
//! or staged chunk messages (scheduled mode); the answer lists exactly the messages to retry.
//!
//! A message SQS delivered before goes into statements that skip rows already in the table. A
//! dead-letter redrive makes a new message (new id, receive count 1), so stream mode marks a
//! message that landed in part before it can get there: its body is sent back to the events
//! queue with the [`PARTLY_LOADED_ATTRIBUTE`] message attribute naming the original message id,
//! and the original is reported done. A marked message always takes the skipping statements,
//! its rejections keep the original id, and it is never sent back again (see
//! docs/operations.md, "What happens to redriven messages").

use std::collections::BTreeSet;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::{Map, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::{ConfigError, env_opt, env_parse, env_required};
use crate::event::parse_body;
use crate::load::{Chunk, ChunkLoad, Chunker, LoadSettings, Loader, MessageRows};
use crate::report::{Metric, age_ms, emf_line, loaded_age_metric, now_ms};
use crate::secrets::SecretSource;
use crate::snowflake::{RetryPolicy, SnowflakeError, Table};
use crate::staging::{SEND_BUDGET, StagingQueue, encode_message, received_before};

/// Namespace of stream-mode chunk keys: a chunk's requestId derives from its content and its
/// statement's text, so the same messages redelivered in the same batch resubmit the same id and
/// cannot load twice, and their `WHERE NOT EXISTS` form never reuses the plain INSERT's id.
const CHUNK_NAMESPACE: Uuid = Uuid::from_u128(0x7b1d_52a4_9a43_4f0e_8a0e_2c53_7e1f_a001);

/// The message attribute that marks a message whose rows landed in part; its value is the
/// original SQS message id. Custom attributes travel with a message into a dead-letter queue
/// and back.
pub const PARTLY_LOADED_ATTRIBUTE: &str = "tracklayer-partly-loaded";

/// Where validated events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Insert into Snowflake at once.
    Stream,
    /// Stage insert-ready chunks on the staging queue; `flush` loads them on a schedule.
    Scheduled,
}

impl LoadMode {
    /// `stream` or `scheduled`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Stream => "stream",
            LoadMode::Scheduled => "scheduled",
        }
    }
}

/// ingest's settings, read once at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// `TRACKLAYER_LOAD_MODE` (default `stream`).
    pub mode: LoadMode,
    /// `TRACKLAYER_SECRET_ID`: required in stream mode.
    pub secret_id: Option<String>,
    /// `TRACKLAYER_SECRET_TTL_SECONDS` (default 300).
    pub secret_ttl: Duration,
    /// `TRACKLAYER_STAGING_QUEUE_URL`: required in scheduled mode.
    pub staging_queue_url: Option<String>,
    /// `TRACKLAYER_EVENTS_QUEUE_URL` (stream mode, optional): the queue ingest reads, where a
    /// message that landed in part is sent back marked. Without it such a message is only
    /// retried, and a redrive of it from the dead-letter queue inserts its landed rows again.
    pub events_queue_url: Option<String>,
    /// Statement size and concurrency.
    pub load: LoadSettings,
}

impl IngestConfig {
    /// Reads and validates the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mode = match env_opt("TRACKLAYER_LOAD_MODE").as_deref().map(str::trim) {
            None | Some("stream") => LoadMode::Stream,
            Some("scheduled") => LoadMode::Scheduled,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "TRACKLAYER_LOAD_MODE",
                    format!(
                        "{other:?} is not a mode; use stream (insert at once) or scheduled (stage for flush)"
                    ),
                ));
            }
        };
        let config = IngestConfig {
            mode,
            secret_id: match mode {
                LoadMode::Stream => Some(env_required("TRACKLAYER_SECRET_ID")?),
                LoadMode::Scheduled => env_opt("TRACKLAYER_SECRET_ID"),
            },
            secret_ttl: Duration::from_secs(env_parse("TRACKLAYER_SECRET_TTL_SECONDS", 300u64)?),
            staging_queue_url: match mode {
                LoadMode::Scheduled => Some(env_required("TRACKLAYER_STAGING_QUEUE_URL")?),
                LoadMode::Stream => env_opt("TRACKLAYER_STAGING_QUEUE_URL"),
            },
            events_queue_url: env_opt("TRACKLAYER_EVENTS_QUEUE_URL"),
            load: LoadSettings::from_env()?,
        };
        Ok(config)
    }
}

/// What one invocation did; logged as one JSON line with EMF metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// `stream` or `scheduled`.
    pub mode: &'static str,
    /// The invocation's request id.
    pub request_id: String,
    /// SQS messages received.
    pub messages: usize,
    /// Events found in them (valid + rejected).
    pub events: usize,
    /// Events that failed validation (quarantined or staged for quarantine).
    pub rejected: usize,
    /// Valid events inserted into RAW_EVENTS (stream).
    pub loaded: u64,
    /// Rows Snowflake refused, quarantined by isolation (stream).
    pub refused: u64,
    /// Valid events staged (scheduled).
    pub staged: usize,
    /// Chunks built.
    pub chunks: usize,
    /// Snowflake statements sent (stream) or SendMessageBatch calls (scheduled).
    pub statements: u32,
    /// Bytes of chunk payload sent.
    pub bytes: usize,
    /// Messages reported as failed (SQS redelivers them).
    pub failed_messages: usize,
    /// Stream mode: messages that landed in part, sent back to the events queue marked
    /// [`PARTLY_LOADED_ATTRIBUTE`] and reported done.
    pub requeued: usize,
    /// Stream mode: how long the oldest message whose rows landed had waited on the events
    /// queue, from its SQS `SentTimestamp` to the moment its rows landed.
    pub loaded_age_ms: Option<u64>,
    /// Wall time.
    pub duration_ms: u64,
    /// The first error that failed messages, and its fix.
    pub error: Option<(String, String)>,
}

impl IngestSummary {
    /// The summary as one JSON line with EMF metrics.
    pub fn to_line(&self) -> String {
        let mut fields = Map::new();
        fields.insert("message".into(), json!("ingest invocation summary"));
        fields.insert("request_id".into(), json!(self.request_id));
        fields.insert("messages".into(), json!(self.messages));
        fields.insert("events".into(), json!(self.events));
        fields.insert("rejected".into(), json!(self.rejected));
        fields.insert("chunks".into(), json!(self.chunks));
        fields.insert("statements".into(), json!(self.statements));
        fields.insert("bytes".into(), json!(self.bytes));
        fields.insert("failures".into(), json!(self.failed_messages));
        fields.insert("requeued".into(), json!(self.requeued));
        fields.insert("duration_ms".into(), json!(self.duration_ms));
        if let Some((error, fix)) = &self.error {
            fields.insert("error".into(), json!(error));
            fields.insert("fix".into(), json!(fix));
        }
        if let Some(age) = self.loaded_age_ms {
            fields.insert("loaded_age_ms".into(), json!(age));
        }
        let mut metrics = vec![
            Metric::count("EventsLoaded", self.loaded as f64),
            Metric::count(
                "EventsRejected",
                (self.rejected as u64 + self.refused) as f64,
            ),
            Metric::count("EventsStaged", self.staged as f64),
            Metric::count("FailedMessages", self.failed_messages as f64),
            Metric::milliseconds("LoadLatencyMs", self.duration_ms as f64),
        ];
        metrics.extend(loaded_age_metric(self.loaded_age_ms));
        emf_line("ingest", self.mode, fields, &metrics)
    }
}

/// Where stream mode sends a message back marked as landed in part.
struct Requeue {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

enum Target {
    Stream(Box<Loader>, Option<Requeue>),
    Scheduled(StagingQueue),
}

/// The ingest handler, built once per process.
pub struct Ingest {
    target: Target,
    chunker: Chunker,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Builds the handler from validated settings and the AWS configuration.
    pub fn new(config: &IngestConfig, aws: &aws_config::SdkConfig) -> Self {
        let target = match config.mode {
            LoadMode::Stream => {
                let source = SecretSource::new(
                    aws_sdk_secretsmanager::Client::new(aws),
                    config.secret_id.clone().unwrap_or_default(),
                    config.secret_ttl,
                    RetryPolicy::default(),
                );
                let requeue = config.events_queue_url.clone().map(|queue_url| Requeue {
                    sqs: aws_sdk_sqs::Client::new(aws),
                    queue_url,
                });
                Target::Stream(Box::new(Loader::new(source, config.load)), requeue)
            }
            LoadMode::Scheduled => Target::Scheduled(StagingQueue::new(
                aws_sdk_sqs::Client::new(aws),
                config.staging_queue_url.clone().unwrap_or_default(),
            )),
        };
        Ingest {
            target,
            chunker: Chunker::new(config.load.max_statement_bytes),
        }
    }

    /// A stream-mode handler over an existing loader (tests).
    #[cfg(any(test, feature = "testkit"))]
    pub fn stream(loader: Loader) -> Self {
        Self::stream_to(loader, None)
    }

    /// The same, sending a message that landed in part back to `events_queue_url`, marked
    /// (tests).
    #[cfg(any(test, feature = "testkit"))]
    pub fn stream_requeuing(
        loader: Loader,
        sqs: aws_sdk_sqs::Client,
        events_queue_url: String,
    ) -> Self {
        let requeue = Requeue {
            sqs,
            queue_url: events_queue_url,
        };
        Self::stream_to(loader, Some(requeue))
    }

    #[cfg(any(test, feature = "testkit"))]
    fn stream_to(loader: Loader, requeue: Option<Requeue>) -> Self {
        let chunker = Chunker::new(loader.settings().max_statement_bytes);
        Ingest {
            target: Target::Stream(Box::new(loader), requeue),
            chunker,
        }
    }

    /// A scheduled-mode handler staging to `queue_url` (tests).
    #[cfg(any(test, feature = "testkit"))]
    pub fn scheduled(
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        max_statement_bytes: usize,
    ) -> Self {
        Ingest {
            target: Target::Scheduled(StagingQueue::new(sqs, queue_url)),
            chunker: Chunker::new(max_statement_bytes),
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> LoadMode {
        match self.target {
            Target::Stream(..) => LoadMode::Stream,
            Target::Scheduled(_) => LoadMode::Scheduled,
        }
    }

    /// Handles one SQS batch: the response lists exactly the messages whose rows did not
    /// land (or were not staged), so SQS redelivers only those.
    pub async fn handle(
        &self,
        event: &SqsEvent,
        request_id: &str,
        deadline: Instant,
    ) -> (SqsBatchResponse, IngestSummary) {
        let started = std::time::Instant::now();
        let records = &event.records;
        let messages: Vec<MessageRows<'_>> = records
            .iter()
            .map(|r| MessageRows {
                message_id: source_message_id(r),
                parsed: parse_body(r.body.as_deref().unwrap_or_default()),
            })
            .collect();
        let chunks = self.chunker.chunk(&messages);
        let mut summary = IngestSummary {
            mode: self.mode().as_str(),
            request_id: request_id.to_string(),
            messages: records.len(),
            events: messages.iter().map(|m| m.parsed.len()).sum(),
            rejected: messages
                .iter()
                .flat_map(|m| &m.parsed)
                .filter(|p| p.is_err())
                .count(),
            chunks: chunks.len(),
            ..IngestSummary::default()
        };
        let failed = match &self.target {
            Target::Stream(loader, requeue) => {
                let (failed, landed) = stream(
                    loader,
                    records,
                    &messages,
                    &chunks,
                    request_id,
                    deadline,
                    &mut summary,
                )
                .await;
                match requeue {
                    Some(requeue) => {
                        requeue_partly_loaded(requeue, records, failed, &landed, &mut summary).await
                    }
                    None => failed,
                }
            }
            Target::Scheduled(queue) => stage(queue, &chunks, &mut summary).await,
        };
        if self.mode() == LoadMode::Stream {
            summary.loaded_age_ms = oldest_landed_age_ms(records, &messages, &failed, now_ms());
        }
        let mut response = SqsBatchResponse::default();
        for index in &failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = records[*index].message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
        summary.failed_messages = failed.len();
        summary.duration_ms = started.elapsed().as_millis() as u64;
        (response, summary)
    }
}

/// The original message id a marked message carries ([`PARTLY_LOADED_ATTRIBUTE`]).
fn partly_loaded(record: &SqsMessage) -> Option<&str> {
    record
        .message_attributes
        .get(PARTLY_LOADED_ATTRIBUTE)?
        .string_value
        .as_deref()
        .filter(|id| !id.is_empty())
}

/// The id rows of a message are recorded under: the original id of a marked message, so its
/// rejections match those that landed before it was sent back.
fn source_message_id(record: &SqsMessage) -> &str {
    partly_loaded(record).unwrap_or(record.message_id.as_deref().unwrap_or_default())
}

/// Sends each failed message that landed in part, and is not marked yet, back to the events
/// queue marked, and takes it off the failures once SQS has it. A send that fails leaves the
/// message failed: SQS retries it as before.
async fn requeue_partly_loaded(
    requeue: &Requeue,
    records: &[SqsMessage],
    mut failed: BTreeSet<usize>,
    landed: &BTreeSet<usize>,
    summary: &mut IngestSummary,
) -> BTreeSet<usize> {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let partly: Vec<usize> = failed
        .intersection(landed)
        .copied()
        .filter(|&m| partly_loaded(&records[m]).is_none())
        .collect();
    for m in partly {
        let record = &records[m];
        let mark = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(source_message_id(record))
            .build()
            .expect("data type is set");
        let sent = requeue
            .sqs
            .send_message()
            .queue_url(&requeue.queue_url)
            .message_body(record.body.as_deref().unwrap_or_default())
            .message_attributes(PARTLY_LOADED_ATTRIBUTE, mark)
            .send()
            .await;
        match sent {
            Ok(_) => {
                failed.remove(&m);
                summary.requeued += 1;
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), message_id = ?record.message_id, "cannot send a partly loaded message back marked; SQS retries it unmarked");
            }
        }
    }
    failed
}

/// The age of the oldest message whose rows landed: it has rows and is not among `failed`.
fn oldest_landed_age_ms(
    records: &[SqsMessage],
    messages: &[MessageRows<'_>],
    failed: &BTreeSet<usize>,
    now_ms: u64,
) -> Option<u64> {
    records
        .iter()
        .enumerate()
        .filter(|&(i, _)| !failed.contains(&i) && !messages[i].parsed.is_empty())
        .filter_map(|(_, r)| age_ms(r.attributes.get("SentTimestamp")?, now_ms))
        .max()
}

fn fail_all(messages: usize) -> BTreeSet<usize> {
    (0..messages).collect()
}

fn record_error(summary: &mut IngestSummary, error: &SnowflakeError) {
    if summary.error.is_none() {
        let fix = error.fix();
        tracing::error!(kind = %error.kind(), error = %error, fix, "load failed; the affected messages will be retried by SQS");
        summary.error = Some((error.to_string(), fix));
    }
}

async fn stream(
    loader: &Loader,
    records: &[SqsMessage],
    messages: &[MessageRows<'_>],
    chunks: &[Chunk],
    request_id: &str,
    deadline: Instant,
    summary: &mut IngestSummary,
) -> (BTreeSet<usize>, BTreeSet<usize>) {
    if chunks.is_empty() {
        return (BTreeSet::new(), BTreeSet::new());
    }
    if let Err(error) = loader.ensure_tables(deadline).await {
        record_error(summary, &error);
        return (fail_all(messages.len()), BTreeSet::new());
    }
    let tag = format!("tracklayer:ingest:{request_id}");
    let loads: Vec<ChunkLoad<'_>> = chunks
        .iter()
        .map(|chunk| {
            // A message received before may have landed in a chunk of another composition
            // (another requestId), and a marked one did in part: their rows are inserted only
            // where they are not there yet.
            let again = chunk.messages.iter().any(|&m| {
                received_before(
                    records[m]
                        .attributes
                        .get("ApproximateReceiveCount")
                        .map(String::as_str),
                ) || partly_loaded(&records[m]).is_some()
            });
            ChunkLoad {
                table: chunk.table,
                body: &chunk.body,
                key: Uuid::new_v5(&CHUNK_NAMESPACE, chunk.body.as_bytes()),
                resubmission: again,
                tag: &tag,
                skip_loaded: again,
            }
        })
        .collect();
    let source_of =
        |chunk: usize, row: usize| message_of_row(messages, &chunks[chunk], row).to_string();
    let outcomes = loader.load_chunks(&loads, &source_of, deadline).await;
    let (mut failed, mut landed) = (BTreeSet::new(), BTreeSet::new());
    for (chunk, outcome) in chunks.iter().zip(outcomes) {
        summary.statements += outcome.statements;
        summary.bytes += chunk.body.len();
        match chunk.table {
            Table::RawEvents => summary.loaded += outcome.loaded,
            Table::Rejected => {}
        }
        summary.refused += outcome.quarantined;
        if let Some(error) = outcome.error {
            record_error(summary, &error);
            failed.extend(chunk.messages.iter().copied());
        } else {
            landed.extend(chunk.messages.iter().copied());
        }
    }
    (failed, landed)
}

/// The message id of row `row` of `chunk` (messages' rows are contiguous, in order).
fn message_of_row<'a>(messages: &[MessageRows<'a>], chunk: &Chunk, row: usize) -> &'a str {
    let mut seen = 0;
    for &m in &chunk.messages {
        let rows = messages[m]
            .parsed
            .iter()
            .filter(|p| p.is_ok() == (chunk.table == Table::RawEvents))
            .count();
        if row < seen + rows {
            return messages[m].message_id;
        }
        seen += rows;
    }
    ""
}

/// Sends chunks to the staging queue; returns the messages whose rows were not all staged.
async fn stage(
    queue: &StagingQueue,
    chunks: &[Chunk],
    summary: &mut IngestSummary,
) -> BTreeSet<usize> {
    let mut failed = BTreeSet::new();
    let mut pending: Vec<(usize, String)> = Vec::new();
    let staged_at = now_ms();
    for (index, chunk) in chunks.iter().enumerate() {
        let body = encode_message(
            Uuid::new_v4(),
            chunk.table,
            chunk.rows,
            &chunk.body,
            staged_at,
        );
        if body.len() > SEND_BUDGET {
            let error = format!(
                "a staged chunk of {} rows compresses to {} bytes, over SQS's message limit; lower TRACKLAYER_MAX_STATEMENT_BYTES",
                chunk.rows,
                body.len()
            );
            tracing::error!(error, "cannot stage chunk");
            summary
                .error
                .get_or_insert((error, "lower TRACKLAYER_MAX_STATEMENT_BYTES".into()));
            failed.extend(chunk.messages.iter().copied());
            continue;
        }
        pending.push((index, body));
    }
    let sent = queue.send(pending).await;
    summary.statements += sent.calls;
    for &index in &sent.sent {
        summary.bytes += chunks[index].body.len();
        if chunks[index].table == Table::RawEvents {
            summary.staged += chunks[index].rows;
        }
    }
    if let Some(error) = sent.error {
        summary.error.get_or_insert(error);
    }
    for index in sent.unsent {
        failed.extend(chunks[index].messages.iter().copied());
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn record(id: &str, body: &str, sent: &str) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.into());
        record.body = Some(body.into());
        record
            .attributes
            .insert("SentTimestamp".into(), sent.into());
        record
    }

    #[test]
    fn loaded_age_counts_only_messages_whose_rows_landed() {
        let event = r#"{"event_id":"e1","event_time":"2026-01-01T00:00:00Z","merchant_id":"m","event_name":"purchase"}"#;
        let records = [
            record("a", event, "1767225600000"),
            record("b", event, "1767225500000"),
            record("c", "[]", "1767225000000"),
        ];
        let messages: Vec<MessageRows<'_>> = records
            .iter()
            .map(|r| MessageRows {
                message_id: r.message_id.as_deref().unwrap(),
                parsed: parse_body(r.body.as_deref().unwrap()),
            })
            .collect();
        let now = 1_767_225_660_000;
        // "b" is older but failed; "c" holds no event.
        let failed = BTreeSet::from([1]);
        assert_eq!(
            oldest_landed_age_ms(&records, &messages, &failed, now),
            Some(60_000)
        );
        assert_eq!(
            oldest_landed_age_ms(&records, &messages, &BTreeSet::new(), now),
            Some(160_000)
        );
        assert_eq!(
            oldest_landed_age_ms(&records, &messages, &BTreeSet::from([0, 1]), now),
            None
        );
    }

    #[test]
    fn summary_line_declares_the_loaded_age_only_when_rows_landed() {
        let summary = IngestSummary {
            mode: "stream",
            loaded: 2,
            loaded_age_ms: Some(1_500),
            ..IngestSummary::default()
        };
        let line: Value = serde_json::from_str(&summary.to_line()).unwrap();
        assert_eq!(line["LoadedEventAgeSeconds"], 1.5);
        assert_eq!(line["loaded_age_ms"], 1_500);
        let names = crate::report::declared_metrics;
        assert!(names(&line).contains(&"LoadedEventAgeSeconds".to_string()));
        let staged = IngestSummary {
            mode: "scheduled",
            staged: 2,
            ..IngestSummary::default()
        };
        let line: Value = serde_json::from_str(&staged.to_line()).unwrap();
        assert!(line.get("LoadedEventAgeSeconds").is_none(), "{line}");
        assert!(!names(&line).contains(&"LoadedEventAgeSeconds".to_string()));
    }
}

/// The batch response without a stack: staging to a queue nothing answers on, and which row
/// came from which message.
#[cfg(test)]
mod batch_response_tests {
    use super::*;
    use aws_sdk_sqs::config::retry::RetryConfig;
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};

    const EVENT: &str = r#"{"event_id":"e-1","event_time":"2026-11-02T10:00:00Z","merchant_id":"m","event_name":"purchase"}"#;

    fn record(id: &str, body: &str) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.into());
        record.body = Some(body.into());
        record
    }

    /// Scheduled mode staging to 127.0.0.1:1, where nothing listens: every send is refused at
    /// once, with the SDK's retries off.
    fn unreachable_staging() -> Ingest {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDTEST", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(RetryConfig::disabled())
            .build();
        let sqs = aws_sdk_sqs::Client::from_conf(config);
        Ingest::scheduled(sqs, "http://127.0.0.1:1/q/staging".into(), 1_000_000)
    }

    fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn every_message_with_rows_fails_when_staging_cannot_be_reached_and_the_fix_says_where() {
        let mut event = SqsEvent::default();
        let two = format!("{EVENT}\n{}", EVENT.replace("e-1", "e-2"));
        event.records = vec![
            record("m-valid", EVENT),
            record("m-invalid", r#"{"event_id":"e-3"}"#),
            record("m-ndjson", &two),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        let (response, summary) = unreachable_staging()
            .handle(&event, "req-1", deadline)
            .await;
        assert_eq!(failed_ids(&response), ["m-valid", "m-invalid", "m-ndjson"]);
        assert_eq!(summary.failed_messages, 3);
        assert_eq!(
            (summary.events, summary.rejected, summary.staged),
            (4, 1, 0)
        );
        // Two chunks (events, rejections) in one SendMessageBatch, sent twice.
        assert_eq!((summary.chunks, summary.statements), (2, 2));
        let (error, fix) = summary.error.expect("the failure is reported");
        assert!(
            error.starts_with("cannot send to the staging queue"),
            "{error}"
        );
        assert!(fix.contains("TRACKLAYER_STAGING_QUEUE_URL"), "{fix}");
    }

    #[tokio::test]
    async fn a_batch_without_records_fails_nothing_and_sends_nothing() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (response, summary) = unreachable_staging()
            .handle(&SqsEvent::default(), "req-2", deadline)
            .await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((summary.statements, summary.failed_messages), (0, 0));
        assert_eq!(summary.error, None);
    }

    #[test]
    fn each_row_is_traced_to_the_message_it_came_from() {
        let bodies = [
            ("a", format!("[{EVENT},{{\"event_id\":\"bad\"}}]")),
            ("b", String::new()),
            ("c", format!("{EVENT}\n{EVENT}")),
        ];
        let messages: Vec<MessageRows<'_>> = bodies
            .iter()
            .map(|(id, body)| MessageRows {
                message_id: id,
                parsed: parse_body(body),
            })
            .collect();
        let chunks = Chunker::new(1_000_000).chunk(&messages);
        let of = |table: Table| -> Vec<&str> {
            let chunk = chunks.iter().find(|c| c.table == table).unwrap();
            (0..chunk.rows)
                .map(|row| message_of_row(&messages, chunk, row))
                .collect()
        };
        assert_eq!(of(Table::RawEvents), ["a", "c", "c"]);
        assert_eq!(of(Table::Rejected), ["a", "b"]);
        let events = chunks.iter().find(|c| c.table == Table::RawEvents).unwrap();
        assert_eq!(
            message_of_row(&messages, events, 3),
            "",
            "past the last row"
        );
    }
}
