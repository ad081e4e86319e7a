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

/// Builds the EMF line: `fields` as plain log fields, `metrics` declared under `_aws`, with
/// the dimensions `Function` and `Mode`.
pub fn emf_line(
    function: &str,
    mode: &str,
    fields: Map<String, Value>,
    metrics: &[Metric],
) -> String {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_with_its_value() {
        let mut fields = Map::new();
        fields.insert("messages".into(), json!(3));
        let line = emf_line(
            "ingest",
            "stream",
            fields,
            &[
                Metric {
                    name: "EventsLoaded",
                    value: 5.0,
                    unit: "Count",
                },
                Metric {
                    name: "LoadLatencyMs",
                    value: 12.0,
                    unit: "Milliseconds",
                },
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
