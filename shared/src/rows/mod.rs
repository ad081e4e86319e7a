//! The row format, in one place: how an event or a rejection travels to Snowflake.
//!
//! Rows travel as elements of one JSON array bound to one INSERT. `element` writes them
//! (`{"r","t","n","v","c"}` for `RAW_EVENTS`, `{"m","e","mi","re","d","r"}` for the quarantine);
//! and reads a refused one back for the quarantine; `array` is the one builder of such an array;
//! `sql` holds the INSERTs that unpack it; `streaming` writes the same rows as the NDJSON
//! lines Snowpipe Streaming takes; `provenance` says which message or staged chunk each
//! row came from; `chunk` packs the rows of SQS messages into arrays under the statement bound.
//!
//! Imports run one way: `element` ← `array` ← `chunk` → `provenance`; `sql` stands alone. The module reads the
//! event contract (`crate::event`) and the SQL API's statement and tables (`crate::snowflake`).

pub mod array;
pub mod chunk;
pub mod element;
#[cfg(any(test, feature = "testkit"))]
pub mod invariants;
mod provenance;
mod sql;
pub mod streaming;

pub use array::JsonArray;
pub use chunk::{Chunk, Chunker, MessageRows};
pub use provenance::Provenance;
