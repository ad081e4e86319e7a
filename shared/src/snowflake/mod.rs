//! Snowflake's SQL API v2 and Snowpipe Streaming's REST API: accounts, authentication,
//! statements, channels, errors and our two tables.

pub mod account;
pub mod auth;
pub mod client;
pub mod error;
pub mod identifier;
pub mod streaming;
pub mod tables;

pub use account::{Account, AccountError};
pub use auth::KeyError;
pub use client::{Client, QueryResult, RetryPolicy, SessionContext, Statement};
pub use error::{Abandoned, ApiError, ErrorKind, SnowflakeError};
pub use identifier::{Identifier, InvalidIdentifier};
pub use tables::Table;
