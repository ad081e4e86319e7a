//! TrackLayer's Snowflake destination: everything the three Lambda functions share.
//!
//! An SQS record becomes an [`event::Event`] (or an [`event::Rejection`]), an element of a
//! bound JSON array, a [`snowflake::Statement`], and a receipt.
//!
//! Modules import only those below them, leaf first: `config`, `report`, `event` (inside it:
//! `json` ← `detail` ← `fields`, `timestamp`, `value` ← `scan` ← `validate` ← `body`);
//! `snowflake` (the SQL API client, a leaf); `secrets`; `rows` (the row format: elements, the
//! array builder, the INSERTs, chunks); `staging`; `load`; and at the top `ingest`, `flush` and
//! `connection_test`.

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
