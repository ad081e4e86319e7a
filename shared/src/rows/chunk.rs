//! Packing parsed messages into insert-ready chunks: one JSON array per statement, under the
//! statement size bound, never splitting a message, so every failure maps to message ids.

use super::element;
use super::{JsonArray, Provenance};
use crate::event::Parsed;
use crate::snowflake::{Statement, Table};

/// The parsed events of one SQS message.
#[derive(Debug)]
pub struct MessageRows<'a> {
    /// The SQS message id (also written to the quarantine's `SOURCE_MESSAGE_ID`).
    pub message_id: &'a str,
    /// Its events and rejections, in body order.
    pub parsed: Vec<Parsed<'a>>,
}

/// Rows for one table as one bound JSON array, and the messages they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Destination table.
    pub table: Table,
    /// The JSON array bound to the INSERT.
    pub body: String,
    /// Number of rows in `body`.
    pub rows: usize,
    /// Which message (its index in the input) each row came from.
    pub provenance: Provenance<usize>,
}

impl Chunk {
    /// The INSERT statement for this chunk.
    pub fn statement(&self) -> Statement {
        let mut statement = self.table.insert(self.body.clone());
        statement.table = Some(self.table);
        statement
    }

    /// Indexes of the messages (in the input) whose rows are in this chunk, in order.
    pub fn messages(&self) -> impl Iterator<Item = usize> + '_ {
        self.provenance.sources().copied()
    }

    /// Bytes the statement carries: SQL text plus the bound array.
    pub fn statement_size(&self) -> usize {
        self.table.insert_sql().len() + self.body.len()
    }
}

/// Builds chunks no larger than the statement size bound.
#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    max_statement_bytes: usize,
}

impl Chunker {
    /// A chunker for statements of at most `max_statement_bytes` (SQL plus bindings). A single
    /// message larger than that still gets a chunk of its own.
    pub fn new(max_statement_bytes: usize) -> Self {
        Chunker {
            max_statement_bytes,
        }
    }

    /// Packs the messages' events into `RAW_EVENTS` chunks and their rejections into
    /// `RAW_EVENTS_REJECTED` chunks, in input order.
    pub fn chunk(&self, messages: &[MessageRows<'_>]) -> Vec<Chunk> {
        let mut events = Builder::new(Table::RawEvents, self.max_statement_bytes);
        let mut rejects = Builder::new(Table::Rejected, self.max_statement_bytes);
        let mut done = Vec::new();
        let mut segment = String::new();
        for (index, message) in messages.iter().enumerate() {
            segment.clear();
            let mut rows = 0;
            for event in message.parsed.iter().filter_map(|p| p.as_ref().ok()) {
                element::push_event(&mut segment, event);
                rows += 1;
            }
            events.add(index, &segment, rows, &mut done);

            segment.clear();
            rows = 0;
            for rejection in message.parsed.iter().filter_map(|p| p.as_ref().err()) {
                element::push_rejection(&mut segment, rejection, message.message_id);
                rows += 1;
            }
            rejects.add(index, &segment, rows, &mut done);
        }
        events.finish(&mut done);
        rejects.finish(&mut done);
        done
    }
}

/// The chunk being filled for one table.
struct Builder {
    table: Table,
    budget: usize,
    array: JsonArray,
    provenance: Provenance<usize>,
}

impl Builder {
    fn new(table: Table, max_statement_bytes: usize) -> Self {
        Builder {
            table,
            budget: max_statement_bytes.saturating_sub(table.insert_sql().len()),
            array: JsonArray::new(),
            provenance: Provenance::default(),
        }
    }

    /// Adds one message's encoded rows, closing the current chunk first if they do not fit.
    fn add(&mut self, message: usize, segment: &str, rows: usize, done: &mut Vec<Chunk>) {
        if rows == 0 {
            return;
        }
        // the array so far, a comma and the segment
        if !self.array.is_empty() && self.array.len_bytes() + 1 + segment.len() > self.budget {
            self.finish(done);
        }
        if self.array.is_empty() {
            let room = self.budget.min(segment.len().max(64 * 1024));
            self.array = JsonArray::with_capacity(room);
        }
        self.array.push_elements(segment, rows);
        self.provenance.push(message, rows);
    }

    fn finish(&mut self, done: &mut Vec<Chunk>) {
        if self.array.is_empty() {
            return;
        }
        let array = std::mem::take(&mut self.array);
        done.push(Chunk {
            table: self.table,
            rows: array.len(),
            body: array.finish(),
            provenance: std::mem::take(&mut self.provenance),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_body;

    fn event(i: usize, pad: usize) -> String {
        format!(
            r#"{{"event_id":"e{i}","event_time":"2026-11-02T10:00:00Z","merchant_id":"m","event_name":"view_content","properties":{{"pad":"{}"}}}}"#,
            "x".repeat(pad)
        )
    }

    #[test]
    fn splits_at_the_size_limit_without_splitting_messages() {
        let bodies: Vec<String> = (0..100)
            .map(|i| format!("[{},{}]", event(2 * i, 300), event(2 * i + 1, 300)))
            .collect();
        let messages: Vec<MessageRows<'_>> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| MessageRows {
                message_id: ["m0", "m1"][i % 2],
                parsed: parse_body(b),
            })
            .collect();
        let limit = 20_000;
        let chunks = Chunker::new(limit).chunk(&messages);
        assert!(chunks.len() > 1);
        let mut seen = Vec::new();
        for chunk in &chunks {
            assert_eq!(chunk.table, Table::RawEvents);
            assert!(
                chunk.statement_size() <= limit,
                "{}",
                chunk.statement_size()
            );
            let rows: Vec<serde_json::Value> = serde_json::from_str(&chunk.body).unwrap();
            assert_eq!(rows.len(), chunk.rows);
            assert_eq!(
                rows.len(),
                2 * chunk.messages().count(),
                "messages stay whole"
            );
            seen.extend(chunk.messages());
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // Chunks are filled: all but the last take more than half the budget.
        for chunk in &chunks[..chunks.len() - 1] {
            assert!(chunk.statement_size() > limit / 2);
        }
    }

    #[test]
    fn oversized_message_gets_a_chunk_of_its_own() {
        let big = event(1, 50_000);
        let small = event(2, 10);
        let messages = vec![
            MessageRows {
                message_id: "a",
                parsed: parse_body(&small),
            },
            MessageRows {
                message_id: "b",
                parsed: parse_body(&big),
            },
            MessageRows {
                message_id: "c",
                parsed: parse_body(&small),
            },
        ];
        let chunks = Chunker::new(20_000).chunk(&messages);
        let groups: Vec<Vec<usize>> = chunks.iter().map(|c| c.messages().collect()).collect();
        assert_eq!(groups, vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn rejections_go_to_their_own_chunks_with_message_ids() {
        let body = format!(r#"[{},{{"event_id":"bad"}}]"#, event(1, 10));
        let messages = vec![MessageRows {
            message_id: "msg-1",
            parsed: parse_body(&body),
        }];
        let chunks = Chunker::new(1_000_000).chunk(&messages);
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].table, Table::RawEvents);
        assert_eq!(chunks[1].table, Table::Rejected);
        let rejects: Vec<serde_json::Value> = serde_json::from_str(&chunks[1].body).unwrap();
        assert_eq!(rejects[0]["m"], "msg-1");
        assert_eq!(rejects[0]["e"], "bad");
        assert_eq!(rejects[0]["re"], "missing_field");
        assert_eq!(rejects[0]["r"], r#"{"event_id":"bad"}"#);
    }
}
