//! Stream mode: the batch's chunks are inserted at once, and a message that landed in part is
//! sent back to the events queue marked, so a redrive of it cannot load its rows twice.

use std::borrow::Cow;
use std::collections::BTreeSet;

use aws_lambda_events::event::sqs::SqsMessage;
use tokio::time::Instant;
use uuid::Uuid;

use super::{IngestSummary, PARTLY_LOADED_ATTRIBUTE, partly_loaded, source_message_id};
use crate::load::{ChunkLoad, Delivery};
use crate::rows::{Chunk, MessageRows, Provenance};
use crate::snowflake::{SnowflakeError, Table};
use crate::staging::received_before;

/// Namespace of stream-mode chunk keys: a chunk's requestId derives from its content and its
/// statement's text, so the same messages redelivered in the same batch resubmit the same id and
/// cannot load twice, and their `WHERE NOT EXISTS` form never reuses the plain INSERT's id.
const CHUNK_NAMESPACE: Uuid = Uuid::from_u128(0x7b1d_52a4_9a43_4f0e_8a0e_2c53_7e1f_a001);

/// Where stream mode sends a message back marked as landed in part.
pub(super) struct Requeue {
    pub(super) sqs: aws_sdk_sqs::Client,
    pub(super) queue_url: String,
}

/// Sends each failed message that landed in part, and is not marked yet, back to the events
/// queue marked, and takes it off the failures once SQS has it. A send that fails leaves the
/// message failed: SQS retries it as before.
pub(super) async fn requeue_partly_loaded(
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

pub(super) async fn stream(
    delivery: &Delivery,
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
    if let Err(error) = delivery.prepare(deadline).await {
        record_error(summary, &error);
        return (fail_all(messages.len()), BTreeSet::new());
    }
    let tag = format!("tracklayer:ingest:{request_id}");
    // Borrowed ids: one small allocation per message would stay on the heap between the
    // chunks' large buffers and raise the peak RSS by megabytes.
    let sources: Vec<Provenance<Cow<'_, str>>> = chunks
        .iter()
        .map(|chunk| {
            chunk
                .provenance
                .map(|&m| Cow::Borrowed(messages[m].message_id))
        })
        .collect();
    let loads: Vec<ChunkLoad<'_>> = chunks
        .iter()
        .zip(&sources)
        .map(|(chunk, sources)| {
            // A message received before may have landed in a chunk of another composition
            // (another requestId), and a marked one did in part: their rows are inserted only
            // where they are not there yet.
            let again = chunk.messages().any(|m| {
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
                sources,
                skip_loaded: again,
            }
        })
        .collect();
    let outcomes = delivery.deliver(&loads, deadline).await;
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
            failed.extend(chunk.messages());
        } else {
            landed.extend(chunk.messages());
        }
    }
    (failed, landed)
}
