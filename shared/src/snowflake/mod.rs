//! Snowflake's SQL API v2: accounts, authentication, statements, errors and our two tables.

pub mod account;
pub mod auth;
pub mod client;
pub mod error;
pub mod identifier;
pub mod tables;

pub use crate::config::ConfigError;
pub use account::Account;
pub use client::{Client, QueryResult, RetryPolicy, SessionContext, Statement};
pub use error::{Abandoned, ApiError, ErrorKind, SnowflakeError};
pub use identifier::Identifier;
pub use tables::Table;
