//! Scheduled mode: the batch's chunks go to the staging queue, for flush to load.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::IngestSummary;
use crate::report::now_ms;
use crate::rows::Chunk;
use crate::snowflake::Table;
use crate::staging::{SEND_BUDGET, StagingQueue, encode_message};

/// Sends chunks to the staging queue; returns the messages whose rows were not all staged.
pub(super) async fn stage(
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
            failed.extend(chunk.messages());
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
        failed.extend(chunks[index].messages());
    }
    failed
}
