//! The staging message's envelope: its format, how ingest writes it and flush reads it.

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::snowflake::Table;

/// Format version of the envelope ingest writes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version flush still reads (1: without `staged_at`).
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// SQS's limit for one message, and for one SendMessageBatch call.
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A chunk as it travels through the staging queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedChunk {
    /// Stable id: how flush tells a second delivery of the chunk from a new chunk.
    pub id: Uuid,
    /// Destination table.
    pub table: Table,
    /// Rows in `body`.
    pub rows: usize,
    /// The JSON array bound to the INSERT.
    pub body: String,
    /// When ingest staged it (epoch milliseconds); `None` for a version 1 envelope.
    pub staged_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    v: u32,
    id: Uuid,
    table: Table,
    rows: usize,
    bytes: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged_at: Option<u64>,
    #[serde(borrow)]
    gz: &'a str,
}

/// A staging message that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StagingError {
    /// Not our envelope, or a version this build does not know.
    #[error("not a TrackLayer staging message: {0}")]
    Envelope(String),
    /// The payload does not decompress to the announced JSON array.
    #[error("staged chunk {id} is corrupt: {detail}")]
    Corrupt {
        /// Chunk id.
        id: Uuid,
        /// What failed.
        detail: String,
    },
}

impl StagedChunk {
    /// A new chunk with a fresh id, staged at `staged_at` (epoch milliseconds).
    pub fn new(table: Table, rows: usize, body: String, staged_at: u64) -> Self {
        StagedChunk {
            id: Uuid::new_v4(),
            table,
            rows,
            body,
            staged_at: Some(staged_at),
        }
    }

    /// The SQS message body: the envelope with the gzip+base64 payload (version 1 when the
    /// chunk has no `staged_at`).
    pub fn to_message(&self) -> String {
        envelope(self.id, self.table, self.rows, &self.body, self.staged_at)
    }

    /// Reads a staging message body back.
    pub fn from_message(message: &str) -> Result<Self, StagingError> {
        let envelope: Envelope<'_> =
            serde_json::from_str(message).map_err(|e| StagingError::Envelope(e.to_string()))?;
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&envelope.v) {
            return Err(StagingError::Envelope(format!(
                "format version {} (this build reads {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}); deploy matching ingest and flush versions",
                envelope.v
            )));
        }
        if envelope.v >= 2 && envelope.staged_at.is_none() {
            return Err(StagingError::Envelope(format!(
                "format version {} without staged_at",
                envelope.v
            )));
        }
        let corrupt = |detail: String| StagingError::Corrupt {
            id: envelope.id,
            detail,
        };
        let compressed = base64::engine::general_purpose::STANDARD
            .decode(envelope.gz)
            .map_err(|e| corrupt(format!("base64: {e}")))?;
        let mut body = String::with_capacity(envelope.bytes);
        flate2::read::GzDecoder::new(compressed.as_slice())
            .take(envelope.bytes as u64 + 1)
            .read_to_string(&mut body)
            .map_err(|e| corrupt(format!("gzip: {e}")))?;
        if body.len() != envelope.bytes {
            return Err(corrupt(format!(
                "{} bytes after decompression, {} announced",
                body.len(),
                envelope.bytes
            )));
        }
        Ok(StagedChunk {
            id: envelope.id,
            table: envelope.table,
            rows: envelope.rows,
            body,
            staged_at: envelope.staged_at,
        })
    }
}

/// The staging message for a chunk body staged at `staged_at` (epoch milliseconds), without
/// copying the body into a [`StagedChunk`].
pub fn encode_message(id: Uuid, table: Table, rows: usize, body: &str, staged_at: u64) -> String {
    envelope(id, table, rows, body, Some(staged_at))
}

fn envelope(id: Uuid, table: Table, rows: usize, body: &str, staged_at: Option<u64>) -> String {
    let mut gz =
        flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
    gz.write_all(body.as_bytes())
        .expect("writing to memory cannot fail");
    let compressed = gz.finish().expect("writing to memory cannot fail");
    let envelope = Envelope {
        v: if staged_at.is_some() {
            FORMAT_VERSION
        } else {
            OLDEST_READABLE_VERSION
        },
        id,
        table,
        rows,
        bytes: body.len(),
        staged_at,
        gz: &base64::engine::general_purpose::STANDARD.encode(compressed),
    };
    serde_json::to_string(&envelope).expect("envelope serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_envelope() {
        let body = format!(
            "[{}]",
            vec![r#"{"r":"{\"event_id\":\"ü😀\"}","t":"2026-01-01 00:00:00.000","n":"x"}"#; 500]
                .join(",")
        );
        let chunk = StagedChunk::new(Table::RawEvents, 500, body.clone(), 1_767_225_600_000);
        let message = chunk.to_message();
        assert!(
            message.len() < body.len() / 4,
            "compressed: {} of {}",
            message.len(),
            body.len()
        );
        let envelope: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert_eq!(envelope["v"], 2);
        assert_eq!(envelope["table"], "raw_events");
        assert_eq!(envelope["rows"], 500);
        assert_eq!(envelope["staged_at"], 1_767_225_600_000u64);
        assert_eq!(StagedChunk::from_message(&message).unwrap(), chunk);
    }

    #[test]
    fn reads_version_1_envelopes_without_staged_at() {
        let v1 = StagedChunk {
            staged_at: None,
            ..StagedChunk::new(Table::Rejected, 1, "[{\"m\":\"x\"}]".into(), 0)
        };
        let message = v1.to_message();
        let envelope: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert_eq!(envelope["v"], 1);
        assert!(envelope.get("staged_at").is_none(), "{envelope}");
        let read = StagedChunk::from_message(&message).unwrap();
        assert_eq!(read, v1);
        assert_eq!(read.staged_at, None);
    }

    #[test]
    fn rejects_foreign_and_corrupt_messages() {
        assert!(matches!(
            StagedChunk::from_message(r#"{"event_id":"x"}"#),
            Err(StagingError::Envelope(_))
        ));
        let mut envelope: serde_json::Value = serde_json::from_str(
            &StagedChunk::new(Table::RawEvents, 0, "[]".into(), 1).to_message(),
        )
        .unwrap();
        envelope["v"] = 3.into();
        let err = StagedChunk::from_message(&envelope.to_string()).unwrap_err();
        assert!(err.to_string().contains("format version 3"), "{err}");
        envelope["v"] = 2.into();
        let mut no_stamp = envelope.clone();
        no_stamp.as_object_mut().unwrap().remove("staged_at");
        let err = StagedChunk::from_message(&no_stamp.to_string()).unwrap_err();
        assert!(err.to_string().contains("without staged_at"), "{err}");
        envelope["bytes"] = 3.into();
        assert!(matches!(
            StagedChunk::from_message(&envelope.to_string()),
            Err(StagingError::Corrupt { .. })
        ));
    }
}
