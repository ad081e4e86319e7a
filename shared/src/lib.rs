//! TrackLayer's Snowflake destination: everything the three Lambda functions share.
//!
//! An SQS record becomes an [`event::Event`] (or an [`event::Rejection`]), an element of a
//! bound JSON array, a [`snowflake::Statement`], and a receipt.

pub mod config;
pub mod connection_test;
pub mod event;
pub mod flush;
pub mod ingest;
pub mod load;
pub mod report;
pub mod secrets;
pub mod snowflake;
pub mod staging;
