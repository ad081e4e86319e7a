//! One structured JSON line per invocation, which is also a CloudWatch Embedded Metric Format
//! record: the summary a person reads and the metrics CloudWatch graphs come from one print.

use serde_json::{Map, Value, json};

/// CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "TrackLayer";

/// A metric in the summary: name, value, unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// EMF metric name (e.g. `EventsLoaded`).
    pub name: &'static str,
    /// Its value for this invocation.
    pub value: f64,
    /// `Count`, `Milliseconds` or `Bytes`.
    pub unit: &'static str,
}

impl Metric {
    /// A `Count` metric.
    pub fn count(name: &'static str, value: f64) -> Self {
        Metric {
            name,
            value,
            unit: "Count",
        }
    }

    /// A `Milliseconds` metric.
    pub fn milliseconds(name: &'static str, value: f64) -> Self {
        Metric {
            name,
            value,
            unit: "Milliseconds",
        }
    }
}

/// Builds the EMF line: `fields` as plain log fields, `metrics` declared under `_aws`, with
/// the dimensions `Function` and `Mode`.
pub fn emf_line(
    function: &str,
    mode: &str,
    fields: Map<String, Value>,
    metrics: &[Metric],
) -> String {
    let timestamp = now_ms();
    let mut record = fields;
    record.insert("Function".into(), json!(function));
    record.insert("Mode".into(), json!(mode));
    for metric in metrics {
        record.insert(metric.name.into(), json!(metric.value));
    }
    record.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function", "Mode"]],
                "Metrics": metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    Value::Object(record).to_string()
}

/// Milliseconds since the Unix epoch, the unit of SQS's `SentTimestamp` and EMF's `Timestamp`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// How long ago, at `now_ms`, SQS stamped a message's `SentTimestamp` (epoch milliseconds as
/// text); `None` when the attribute is not a number.
pub fn age_ms(sent_timestamp: &str, now_ms: u64) -> Option<u64> {
    let sent: u64 = sent_timestamp.trim().parse().ok()?;
    Some(now_ms.saturating_sub(sent))
}

/// The `LoadedEventAgeSeconds` metric: how long the oldest message whose rows landed in this
/// invocation had waited on its queue (see docs/operations.md, "Freshness").
pub fn loaded_age_metric(loaded_age_ms: Option<u64>) -> Option<Metric> {
    loaded_age_ms.map(|ms| Metric {
        name: "LoadedEventAgeSeconds",
        value: ms as f64 / 1000.0,
        unit: "Seconds",
    })
}

/// The metric names an EMF line declares (tests of the lines ingest and flush print).
#[cfg(test)]
pub(crate) fn declared_metrics(line: &serde_json::Value) -> Vec<String> {
    line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_is_counted_from_the_sent_timestamp() {
        assert_eq!(age_ms("1767225600000", 1_767_225_612_345), Some(12_345));
        assert_eq!(age_ms("1767225600000", 1_767_225_599_000), Some(0));
        assert_eq!(age_ms("soon", 1_767_225_600_000), None);
        let metric = loaded_age_metric(Some(90_500)).unwrap();
        assert_eq!(
            (metric.name, metric.value, metric.unit),
            ("LoadedEventAgeSeconds", 90.5, "Seconds")
        );
        assert_eq!(loaded_age_metric(None), None);
    }

    #[test]
    fn emf_line_declares_every_metric_with_its_value() {
        let mut fields = Map::new();
        fields.insert("messages".into(), json!(3));
        let line = emf_line(
            "ingest",
            "stream",
            fields,
            &[
                Metric::count("EventsLoaded", 5.0),
                Metric::milliseconds("LoadLatencyMs", 12.0),
            ],
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["messages"], 3);
        assert_eq!(v["EventsLoaded"], 5.0);
        assert_eq!(v["Function"], "ingest");
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "TrackLayer");
        assert_eq!(cw["Dimensions"], json!([["Function", "Mode"]]));
        assert_eq!(
            cw["Metrics"][1],
            json!({"Name": "LoadLatencyMs", "Unit": "Milliseconds"})
        );
    }
}
