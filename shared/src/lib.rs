//! TrackLayer's Snowflake destination: everything the three Lambda functions share.
//!
//! An SQS record becomes an [`event::Event`] (or an [`event::Rejection`]), an element of a
//! bound JSON array ([`rows::JsonArray`]) in a [`rows::Chunk`], a [`snowflake::Statement`]
//! (through [`load::Delivery`]), and a receipt: `ingest/mod.rs` → `event/body.rs` →
//! `rows/element.rs` → `rows/chunk.rs` → `load/sql_api/insert.rs` → `ingest/mod.rs`'s batch
//! response, or through `staging/` and `flush/` for scheduled mode.
//!
//! Modules import only those below them, leaf first: `config`, `report`, `event` (inside it:
//! `json` ← `detail` ← `fields`, `timestamp`, `value` ← `scan` ← `validate` ← `body`);
//! `snowflake` (the SQL API and Snowpipe Streaming clients, a leaf); `secrets`; `rows` (the row
//! format: elements, the array builder, the INSERTs, provenance, chunks, streaming NDJSON);
//! `staging` (the queue between ingest and flush); `load` (the `Delivery` seam, the SQL API path
//! in `load/sql_api/` and the streaming path in `load/streaming/`); and at the top `ingest`,
//! `flush` and `connection_test`, each an orchestration `mod.rs` over one file per role.

pub mod config;
pub mod connection_test;
pub mod event;
pub mod flush;
pub mod ingest;
pub mod load;
pub mod report;
pub mod rows;
pub mod secrets;
pub mod snowflake;
pub mod staging;
