//! Staged chunks: insert-ready JSON arrays packed into SQS messages by ingest's scheduled mode
//! and loaded by flush.
//!
//! A staging message body is a small JSON envelope, readable in the SQS console:
//! `{"v":2,"id":"<chunk id>","table":"raw_events","rows":812,"bytes":734012,"staged_at":1767225600000,"gz":"<base64 of gzip of the JSON array>"}`.
//! The chunk id lets flush recognise a second delivery of a chunk within a run; a chunk
//! delivered again in a later run is loaded skipping the rows already there (see `flush`).
//! `staged_at` (epoch milliseconds, ingest's clock) survives a dead-letter redrive, which gives
//! the message a new id and a receive count of 1: a chunk staged longer ago than any first
//! delivery waits is loaded skipping rows already there too. Version 1 envelopes (no
//! `staged_at`) are still read.

mod envelope;
mod queue;

pub use envelope::*;
pub use queue::*;
