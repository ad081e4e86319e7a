//! The staging queue: what ingest sends chunks to and flush receives, hides, deletes and releases
//! them from.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

/// How many messages one ReceiveMessage call asks for (SQS's maximum).
pub const RECEIVE_BATCH: i32 = 10;

/// What one SendMessageBatch call may carry: SQS's 1 MiB, less room for the request's own framing.
pub const SEND_BUDGET: usize = crate::staging::SQS_MAX_MESSAGE_BYTES - 16 * 1024;

/// What [`StagingQueue::send`] did, by the caller's indexes.
#[derive(Debug, Default)]
pub struct SendReport {
    /// SendMessageBatch calls made.
    pub calls: u32,
    /// Bodies SQS took.
    pub sent: Vec<usize>,
    /// Bodies not sent after the second attempt.
    pub unsent: Vec<usize>,
    /// The first failed call's error and its fix.
    pub error: Option<(String, String)>,
}

/// The staging queue at one URL.
#[derive(Debug, Clone)]
pub struct StagingQueue {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

impl StagingQueue {
    pub fn new(sqs: aws_sdk_sqs::Client, url: String) -> Self {
        StagingQueue { sqs, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends staging message bodies, each with the caller's index, in SendMessageBatch calls of
    /// at most ten messages and [`SEND_BUDGET`] bytes; what SQS refuses or fails is sent once
    /// more. Bodies must each fit in [`SEND_BUDGET`].
    pub async fn send(&self, mut pending: Vec<(usize, String)>) -> SendReport {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

        let mut report = SendReport::default();
        for attempt in 0..2 {
            let mut retry = Vec::new();
            let mut batch: Vec<(usize, String)> = Vec::new();
            let mut batch_bytes = 0;
            let mut batches = Vec::new();
            for (index, body) in pending {
                if batch.len() == 10
                    || (batch_bytes + body.len() > SEND_BUDGET && !batch.is_empty())
                {
                    batches.push(std::mem::take(&mut batch));
                    batch_bytes = 0;
                }
                batch_bytes += body.len();
                batch.push((index, body));
            }
            if !batch.is_empty() {
                batches.push(batch);
            }
            for batch in batches {
                let entries: Vec<SendMessageBatchRequestEntry> = batch
                    .iter()
                    .map(|(index, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(index.to_string())
                            .message_body(body)
                            .build()
                            .expect("id and body are set")
                    })
                    .collect();
                report.calls += 1;
                let sent = self
                    .sqs
                    .send_message_batch()
                    .queue_url(&self.url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                match sent {
                    Ok(output) => {
                        let refused: BTreeSet<String> =
                            output.failed.iter().map(|f| f.id.clone()).collect();
                        for (index, body) in batch {
                            if refused.contains(&index.to_string()) {
                                retry.push((index, body));
                            } else {
                                report.sent.push(index);
                            }
                        }
                        for failure in &output.failed {
                            tracing::warn!(id = failure.id, code = failure.code, message = ?failure.message, attempt, "staging queue refused a chunk");
                        }
                    }
                    Err(e) => {
                        let detail = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                        tracing::warn!(error = detail, attempt, "SendMessageBatch failed");
                        report.error.get_or_insert((
                            format!("cannot send to the staging queue: {detail}"),
                            "check TRACKLAYER_STAGING_QUEUE_URL and that the function may call sqs:SendMessage on it".into(),
                        ));
                        retry.extend(batch);
                    }
                }
            }
            pending = retry;
            if pending.is_empty() || attempt == 1 {
                break;
            }
        }
        report.unsent = pending.into_iter().map(|(index, _)| index).collect();
        report
    }

    /// Receives up to ten staged chunks, hidden for `visibility`, with their receive count and
    /// sent timestamp.
    pub async fn receive(
        &self,
        wait_seconds: i32,
        visibility: Duration,
    ) -> Result<Vec<Message>, String> {
        self.sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(RECEIVE_BATCH)
            .wait_time_seconds(wait_seconds)
            .visibility_timeout(visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map(|out| out.messages.unwrap_or_default())
            .map_err(|e| {
                format!(
                    "cannot receive from the staging queue: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })
    }

    /// Makes chunks that did not load visible again at once, so the next run (or another
    /// receiver of this one) retries them without waiting out the visibility timeout.
    pub async fn release(&self, handles: &[String]) {
        self.set_visibility(handles, 0).await;
    }

    /// Sets the visibility timeout of messages, ten per call.
    pub async fn set_visibility(&self, handles: &[String], seconds: i32) {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
        for group in handles.chunks(10) {
            let entries = group
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(seconds)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let changed = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            // Not fatal either way: a chunk not released returns after its visibility timeout,
            // and one whose timeout was not extended may be taken again (it is then loaded
            // skipping the rows already there).
            match changed {
                Ok(out) if !out.failed.is_empty() => {
                    tracing::warn!(
                        failed = out.failed.len(),
                        seconds,
                        "cannot change the visibility of some staged chunks"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), seconds, "cannot change the visibility of staged chunks");
                }
                _ => {}
            }
        }
    }

    /// Deletes messages, ten per call.
    pub async fn delete(&self, handles: &[String]) {
        use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
        for group in handles.chunks(10) {
            let entries = group
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            let deleted = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            // A chunk that landed but could not be deleted comes back, and is then loaded
            // skipping the rows already there.
            match deleted {
                Ok(out) if !out.failed.is_empty() => {
                    tracing::warn!(
                        failed = out.failed.len(),
                        "some loaded chunks could not be deleted; their rows will be found already loaded next run"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "deleting loaded chunks failed; their rows will be found already loaded next run")
                }
                _ => {}
            }
        }
    }

    /// Messages in the queue, visible or not (SQS's estimate); 0 when it cannot be read.
    pub async fn depth(&self) -> u64 {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await;
        match attributes {
            Ok(out) => out
                .attributes
                .unwrap_or_default()
                .values()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum(),
            Err(_) => 0,
        }
    }
}

/// Whether SQS delivered a message before (a run may have loaded it and died), from its
/// `ApproximateReceiveCount` attribute: ingest reads it from the Lambda event, flush from
/// ReceiveMessage.
pub fn received_before(receive_count: Option<&str>) -> bool {
    receive_count
        .and_then(|count| count.parse::<u32>().ok())
        .is_some_and(|count| count > 1)
}

/// A received message's `ApproximateReceiveCount`, when it was asked for and sent.
pub fn receive_count(
    attributes: &Option<HashMap<MessageSystemAttributeName, String>>,
) -> Option<&str> {
    attributes
        .as_ref()?
        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
        .map(String::as_str)
}

/// The message's SQS `SentTimestamp` (epoch milliseconds), when it was asked for and sent.
pub fn sent_timestamp(
    attributes: &Option<HashMap<MessageSystemAttributeName, String>>,
) -> Option<&str> {
    attributes
        .as_ref()?
        .get(&MessageSystemAttributeName::SentTimestamp)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_was_received_before_when_its_receive_count_is_above_one() {
        assert!(!received_before(None));
        assert!(!received_before(Some("1")));
        assert!(received_before(Some("2")));
        assert!(!received_before(Some("not a number")));
        let attributes = Some(HashMap::from([(
            MessageSystemAttributeName::ApproximateReceiveCount,
            "3".to_string(),
        )]));
        assert_eq!(receive_count(&attributes), Some("3"));
        assert_eq!(receive_count(&None), None);
    }

    #[test]
    fn reads_the_sent_timestamp_attribute() {
        let attributes = Some(HashMap::from([(
            MessageSystemAttributeName::SentTimestamp,
            "1767225600000".to_string(),
        )]));
        assert_eq!(sent_timestamp(&attributes), Some("1767225600000"));
        assert_eq!(sent_timestamp(&None), None);
        assert_eq!(sent_timestamp(&Some(HashMap::new())), None);
    }
}
