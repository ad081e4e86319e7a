//! What one invocation did, logged as one JSON line with EMF metrics.

use serde_json::{Map, json};

use crate::report::{Metric, emf_line, loaded_age_metric};

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
    /// [`PARTLY_LOADED_ATTRIBUTE`](super::PARTLY_LOADED_ATTRIBUTE) and reported done.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

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
