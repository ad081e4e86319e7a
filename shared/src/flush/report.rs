//! The run's answer: counts, status, the first error and its fix, logged as one JSON line
//! with EMF metrics.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::load::ChunkOutcome;
use crate::report::{Metric, emf_line, loaded_age_metric};
use crate::snowflake::Table;

/// How a run ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushStatus {
    /// Nothing was staged; Snowflake was not contacted.
    #[default]
    Empty,
    /// Everything received was loaded and the queue was drained.
    Loaded,
    /// Time ran out or some chunks failed transiently; the rest waits for the next run.
    Partial,
    /// An error no retry fixes (credentials, grants, warehouse); every unloaded chunk stays.
    Failed,
}

/// The run's answer, also logged as one JSON line with EMF metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    /// How it ended.
    pub status: FlushStatus,
    /// Chunks whose rows all landed (and whose messages were deleted).
    pub chunks_loaded: u64,
    /// Rows inserted into RAW_EVENTS.
    pub events_loaded: u64,
    /// Rows inserted into RAW_EVENTS_REJECTED (validation rejects and rows Snowflake refused).
    pub events_rejected: u64,
    /// Snowflake statements sent.
    pub statements: u64,
    /// Bytes of rows sent.
    pub bytes_sent: u64,
    /// Snowpipe Streaming appends Snowflake accepted (replays after a reopen included); 0 on
    /// the SQL API path.
    pub appends: u64,
    /// Their NDJSON bytes before compression: what Snowpipe Streaming bills by.
    pub append_bytes: u64,
    /// Wall time.
    pub duration_ms: u64,
    /// Whether anything at all was sent to Snowflake.
    pub snowflake_contacted: bool,
    /// Whether the warehouse was suspended after the run.
    pub warehouse_suspended: bool,
    /// Why not, when suspension was asked for and did not happen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend_detail: Option<String>,
    /// Messages SQS still counts on the staging queue (approximate).
    pub leftover_estimate: u64,
    /// Chunks that could not be loaded this run (they stay on the queue).
    pub chunks_failed: u64,
    /// Chunks SQS had delivered before (a run died or failed before deleting them), or staged
    /// more than two flush periods ago (redriven from the dead-letter queue, or first received
    /// after an outage); their rows went to statements that skip rows already loaded.
    pub chunks_redelivered: u64,
    /// Rows of those chunks that were already in the table, so not inserted again.
    pub rows_already_loaded: u64,
    /// How long the oldest staged chunk whose rows landed this run had waited on the staging
    /// queue, from its SQS `SentTimestamp` to the moment its rows landed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_age_ms: Option<u64>,
    /// The first error, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl FlushReport {
    /// The report as one JSON line with EMF metrics.
    pub fn to_line(&self) -> String {
        let mut fields = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        fields.insert("message".into(), Value::from("flush run summary"));
        let mut metrics = vec![
            Metric::count("EventsLoaded", self.events_loaded as f64),
            Metric::count("EventsRejected", self.events_rejected as f64),
            Metric::count("FailedChunks", self.chunks_failed as f64),
            Metric::milliseconds("LoadLatencyMs", self.duration_ms as f64),
            Metric::count("Statements", self.statements as f64),
            Metric::count("Appends", self.appends as f64),
        ];
        metrics.extend(loaded_age_metric(self.loaded_age_ms));
        emf_line("flush", "scheduled", fields, &metrics)
    }
}

/// A run that was not stopped by a failure loaded everything only if no chunk failed and
/// nothing is left on the queue.
pub(super) fn final_status(report: &FlushReport) -> FlushStatus {
    match report.status {
        FlushStatus::Failed => FlushStatus::Failed,
        _ if report.chunks_failed == 0 && report.leftover_estimate == 0 => FlushStatus::Loaded,
        _ => FlushStatus::Partial,
    }
}

pub(super) fn count_rows(report: &mut FlushReport, table: Table, outcome: &ChunkOutcome) {
    match table {
        Table::RawEvents => report.events_loaded += outcome.loaded,
        Table::Rejected => report.events_rejected += outcome.loaded,
    }
    report.events_rejected += outcome.quarantined;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_has_the_documented_fields() {
        let report = FlushReport {
            status: FlushStatus::Loaded,
            events_loaded: 10,
            ..FlushReport::default()
        };
        let line: Value = serde_json::from_str(&report.to_line()).unwrap();
        for field in [
            "status",
            "chunks_loaded",
            "events_loaded",
            "events_rejected",
            "statements",
            "bytes_sent",
            "appends",
            "append_bytes",
            "duration_ms",
            "snowflake_contacted",
            "warehouse_suspended",
            "leftover_estimate",
        ] {
            assert!(line.get(field).is_some(), "{field}");
        }
        assert_eq!(line["status"], "loaded");
        assert_eq!(line["EventsLoaded"], 10.0);
    }

    #[test]
    fn report_line_has_statements_and_the_age_of_what_landed() {
        let report = FlushReport {
            status: FlushStatus::Loaded,
            statements: 3,
            loaded_age_ms: Some(7_250_000),
            ..FlushReport::default()
        };
        let line: Value = serde_json::from_str(&report.to_line()).unwrap();
        assert_eq!(line["Statements"], 3.0);
        assert_eq!(line["LoadedEventAgeSeconds"], 7250.0);
        assert_eq!(line["loaded_age_ms"], 7_250_000);
        let declared = crate::report::declared_metrics(&line);
        assert!(declared.contains(&"Statements".to_string()), "{declared:?}");
        assert!(
            declared.contains(&"LoadedEventAgeSeconds".to_string()),
            "{declared:?}"
        );
    }

    #[test]
    fn report_line_has_no_age_when_nothing_landed() {
        let line: Value = serde_json::from_str(&FlushReport::default().to_line()).unwrap();
        assert!(line.get("LoadedEventAgeSeconds").is_none(), "{line}");
        assert!(line.get("loaded_age_ms").is_none(), "{line}");
        assert!(
            !crate::report::declared_metrics(&line).contains(&"LoadedEventAgeSeconds".to_string())
        );
        assert_eq!(line["Statements"], 0.0);
    }
}
