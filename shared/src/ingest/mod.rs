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
//!
//! This file is the invocation, in order: parse every message, chunk, load or stage, answer.
//! Beside it: `config` (settings and mode), `stream` (insert at once, send back what landed in
//! part), `stage` (scheduled mode's staging) and `report` (the summary line).

mod config;
mod report;
mod stage;
mod stream;

use std::collections::BTreeSet;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tokio::time::Instant;

use crate::event::parse_body;
use crate::load::{Delivery, Loader};
use crate::report::{age_ms, now_ms};
use crate::rows::{Chunker, MessageRows};
use crate::secrets::SecretSource;
use crate::snowflake::RetryPolicy;
use crate::staging::StagingQueue;
pub use config::{IngestConfig, LoadMode};
pub use report::IngestSummary;
use stage::stage;
use stream::{Requeue, requeue_partly_loaded, stream};

/// The message attribute that marks a message whose rows landed in part; its value is the
/// original SQS message id. Custom attributes travel with a message into a dead-letter queue
/// and back.
pub const PARTLY_LOADED_ATTRIBUTE: &str = "tracklayer-partly-loaded";

enum Target {
    Stream(Box<Delivery>, Option<Requeue>),
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
                let delivery = Delivery::SqlApi(Loader::new(source, config.load));
                Target::Stream(Box::new(delivery), requeue)
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
            target: Target::Stream(Box::new(Delivery::SqlApi(loader)), requeue),
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
            Target::Stream(delivery, requeue) => {
                let (failed, landed) = stream(
                    delivery,
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
pub(super) fn partly_loaded(record: &SqsMessage) -> Option<&str> {
    record
        .message_attributes
        .get(PARTLY_LOADED_ATTRIBUTE)?
        .string_value
        .as_deref()
        .filter(|id| !id.is_empty())
}

/// The id rows of a message are recorded under: the original id of a marked message, so its
/// rejections match those that landed before it was sent back.
pub(super) fn source_message_id(record: &SqsMessage) -> &str {
    partly_loaded(record).unwrap_or(record.message_id.as_deref().unwrap_or_default())
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

/// The batch response without a stack: staging to a queue nothing answers on, and which row
/// came from which message.
#[cfg(test)]
mod batch_response_tests {
    use super::*;
    use crate::snowflake::Table;
    use aws_sdk_sqs::config::retry::RetryConfig;
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    use std::time::Duration;

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

    /// Stream mode reading its secret from 127.0.0.1:1, where nothing listens.
    fn unreachable_secret() -> Ingest {
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
            .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
                "AKIDTEST", "test", None, None, "test",
            ))
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled())
            .build();
        let source = SecretSource::new(
            aws_sdk_secretsmanager::Client::from_conf(config),
            "tracklayer/snowflake".into(),
            Duration::from_secs(300),
            RetryPolicy::default(),
        );
        Ingest::stream(Loader::new(source, crate::load::LoadSettings::default()))
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
    async fn stream_mode_fails_every_message_with_rows_when_the_secret_cannot_be_read() {
        let mut event = SqsEvent::default();
        event.records = vec![
            record("m-valid", EVENT),
            record("m-invalid", r#"{"event_id":"e-3"}"#),
            record("m-empty", "[]"),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        let (response, summary) = unreachable_secret().handle(&event, "req-3", deadline).await;
        // Every message fails, the one without rows too: nothing could be loaded.
        assert_eq!(failed_ids(&response), ["m-valid", "m-invalid", "m-empty"]);
        assert_eq!((summary.mode, summary.chunks), ("stream", 2));
        assert_eq!((summary.loaded, summary.statements), (0, 0));
        let (error, fix) = summary.error.expect("the failure is reported");
        assert!(
            error.starts_with(
                r#"cannot read secret "tracklayer/snowflake" from Secrets Manager: dispatch failure"#
            ),
            "{error}"
        );
        assert!(
            error.ends_with(". Check TRACKLAYER_SECRET_ID and that the function's role may call secretsmanager:GetSecretValue on it"),
            "{error}"
        );
        assert_eq!(fix, "Fix the setting named in the error.");
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
                .map(|row| messages[*chunk.provenance.source_of(row).unwrap()].message_id)
                .collect()
        };
        assert_eq!(of(Table::RawEvents), ["a", "c", "c"]);
        assert_eq!(of(Table::Rejected), ["a", "b"]);
        let events = chunks.iter().find(|c| c.table == Table::RawEvents).unwrap();
        assert_eq!(events.provenance.source_of(3), None, "past the last row");
    }
}
