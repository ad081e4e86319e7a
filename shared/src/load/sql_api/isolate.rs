//! Poison isolation: when Snowflake refuses a chunk for its data, the chunk is bisected until
//! the refused rows stand alone; they go to the quarantine with Snowflake's error as the detail
//! and everything else lands.
//!
//! Bisection runs only for data errors (Snowflake's 100xxx: a value one row holds). Compilation
//! and context errors fail every sub-statement the same way, so they stop the run instead (see
//! [`crate::snowflake::error`]) and nothing is quarantined.
//!
//! Every statement's requestId is derived from the chunk's key, the row range and the
//! statement's exact text and values ([`Statement::keyed`]), so a chunk loaded again under the
//! same key (a stream-mode batch redelivered whole) resubmits the same ids with `retry=true`,
//! while the `WHERE NOT EXISTS` form of the same rows never shares an id with the plain INSERT;
//! sub-statements of a chunk marked `skip_loaded` also skip rows already in the table, so
//! nothing lands twice either way.

use std::borrow::Cow;

use tokio::time::Instant;

use super::Loader;
use crate::load::{ChunkLoad, ChunkOutcome};
use crate::rows::array::elements;
use crate::rows::{JsonArray, Provenance};
use crate::snowflake::{ErrorKind, SnowflakeError, Table};

impl Loader {
    /// Bisects a refused chunk: halves that load stay loaded, single refused rows go to the
    /// quarantine with Snowflake's error.
    pub(super) async fn isolate(&self, chunk: &ChunkLoad<'_>, deadline: Instant) -> ChunkOutcome {
        let mut outcome = ChunkOutcome {
            statements: 1,
            ..ChunkOutcome::default()
        };
        let rows = match elements(chunk.body) {
            Ok(rows) => rows,
            Err(e) => {
                outcome.error = Some(SnowflakeError::Protocol {
                    http_status: 0,
                    detail: format!("chunk body is not a JSON array: {e}"),
                });
                return outcome;
            }
        };
        let mut refused: Vec<(usize, SnowflakeError)> = Vec::new();
        let mut ranges = split(0, rows.len());
        while let Some((start, end)) = ranges.pop() {
            outcome.statements += 1;
            let part = format!("{start}-{end}");
            match self
                .run(chunk.statement(join(&rows[start..end]), &part), deadline)
                .await
            {
                Ok(result) => outcome.loaded += result.rows_inserted.unwrap_or_default(),
                Err(e) if e.kind() == ErrorKind::Data && end - start == 1 => {
                    refused.push((start, e))
                }
                Err(e) if e.kind() == ErrorKind::Data => ranges.extend(split(start, end)),
                Err(e) => {
                    outcome.error = Some(e);
                    return outcome;
                }
            }
        }
        if refused.is_empty() {
            return outcome;
        }
        if chunk.table == Table::Rejected {
            outcome.error = Some(refused.swap_remove(0).1);
            return outcome;
        }
        let quarantine = quarantine_rows(&rows, &refused, chunk.sources);
        outcome.statements += 1;
        let statement = ChunkLoad {
            table: Table::Rejected,
            ..*chunk
        }
        .statement(quarantine, "quarantine");
        match self.run(statement, deadline).await {
            Ok(result) => outcome.quarantined = result.rows_inserted.unwrap_or_default(),
            Err(e) => outcome.error = Some(e),
        }
        outcome
    }
}

/// Two halves of `start..end`, the first half popped first.
fn split(start: usize, end: usize) -> Vec<(usize, usize)> {
    let mid = start + (end - start) / 2;
    [(mid, end), (start, mid)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .collect()
}

/// The JSON array of `rows`.
fn join(rows: &[&str]) -> String {
    let mut body = JsonArray::with_capacity(rows.iter().map(|r| r.len() + 1).sum());
    for row in rows {
        body.push_element(row);
    }
    body.finish()
}

/// The quarantine rows for the refused rows, each under its source.
fn quarantine_rows(
    rows: &[&str],
    refused: &[(usize, SnowflakeError)],
    sources: &Provenance<Cow<'_, str>>,
) -> String {
    let mut body = JsonArray::new();
    for (row, error) in refused {
        let source = sources.source_of(*row).map_or("", |s| s.as_ref());
        body.push_refused(rows[*row], error, source);
    }
    body.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_range_in_order() {
        assert_eq!(split(0, 5), vec![(2, 5), (0, 2)]);
        assert_eq!(split(3, 5), vec![(4, 5), (3, 4)]);
        assert_eq!(split(0, 1), vec![(0, 1)]);
    }

    #[test]
    fn quarantine_rows_name_each_refused_rows_source_and_error() {
        let rows = elements(
            r#"[{"r":"{\"event_id\":\"e0\"}","t":"2026-01-01 00:00:00.000","n":"x"},{"r":"{}","t":"2026-01-01 00:00:00.000","n":"y"},{"r":"{\"event_id\":\"e2\",\"merchant_id\":\"m\"}","t":"2026-01-01 00:00:00.000","n":"z"}]"#,
        )
        .unwrap();
        let error = |code: &str| {
            SnowflakeError::from(crate::snowflake::ApiError {
                http_status: 422,
                code: code.into(),
                sql_state: "22018".into(),
                message: "Numeric value 'abc' is not recognized".into(),
                ..crate::snowflake::ApiError::default()
            })
        };
        let refused = [(0, error("100038")), (2, error("100035"))];
        let mut sources = Provenance::default();
        for row in 0..3 {
            sources.push(Cow::Owned(format!("msg-{row}")), 1);
        }
        let body = quarantine_rows(&rows, &refused, &sources);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 2);
        assert_eq!(
            (&parsed[0]["m"], &parsed[0]["e"]),
            (&"msg-0".into(), &"e0".into())
        );
        assert_eq!(
            (&parsed[1]["m"], &parsed[1]["e"]),
            (&"msg-2".into(), &"e2".into())
        );
        assert_eq!(parsed[1]["mi"], "m");
        assert!(parsed[0]["d"].as_str().unwrap().contains("100038"));
        assert!(parsed[1]["d"].as_str().unwrap().contains("100035"));
    }
}
