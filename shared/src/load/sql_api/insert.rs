//! Chunks to INSERTs: every statement's requestId derives from the chunk's key, and a chunk
//! Snowflake refuses for one row's data goes to the bisection (`isolate.rs`).

use tokio::time::Instant;
use uuid::Uuid;

use super::Loader;
use crate::load::{ChunkLoad, ChunkOutcome};
use crate::snowflake::{ErrorKind, Statement};

impl ChunkLoad<'_> {
    /// The INSERT of `body` (the whole chunk or the part `part` names).
    pub(super) fn statement(&self, body: String, part: &str) -> Statement {
        let mut statement = if self.skip_loaded {
            self.table.insert_skipping_loaded(body)
        } else {
            self.table.insert(body)
        };
        statement.resubmission = self.resubmission;
        statement.query_tag = Some(self.tag.to_string());
        statement.table = Some(self.table);
        statement.keyed(Uuid::new_v5(&self.key, part.as_bytes()))
    }
}

impl Loader {
    /// Loads chunks with bounded concurrency (see [`Loader::run_all`]); a chunk Snowflake
    /// refuses for one row's data (a 100xxx error) is bisected and its refused rows quarantined.
    pub async fn load_chunks(
        &self,
        chunks: &[ChunkLoad<'_>],
        deadline: Instant,
    ) -> Vec<ChunkOutcome> {
        let statements = chunks
            .iter()
            .map(|c| c.statement(c.body.to_string(), ""))
            .collect();
        let results = self.run_all(statements, deadline).await;
        let mut outcomes = Vec::with_capacity(chunks.len());
        for (chunk, result) in chunks.iter().zip(results) {
            let outcome = match result {
                Ok(result) => ChunkOutcome {
                    loaded: result.rows_inserted.unwrap_or_default(),
                    statements: 1,
                    ..ChunkOutcome::default()
                },
                Err(e) if e.kind() == ErrorKind::Data => {
                    tracing::warn!(table = chunk.table.name(), error = %e, "Snowflake refused the chunk's data; isolating the refused rows");
                    self.isolate(chunk, deadline).await
                }
                Err(e) => ChunkOutcome {
                    statements: 1,
                    error: Some(e),
                    ..ChunkOutcome::default()
                },
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::Provenance;
    use crate::snowflake::Table;

    #[test]
    fn skipping_form_of_the_same_rows_gets_another_request_id() {
        let sources = Provenance::default();
        let load = |skip_loaded| ChunkLoad {
            table: Table::RawEvents,
            body: "[]",
            key: Uuid::from_u128(1),
            resubmission: true,
            tag: "t",
            sources: &sources,
            skip_loaded,
        };
        let plain = load(false).statement("[1]".into(), "");
        assert_eq!(
            plain.request_id,
            load(false).statement("[1]".into(), "").request_id
        );
        assert_ne!(
            plain.request_id,
            load(true).statement("[1]".into(), "").request_id
        );
        assert_ne!(
            plain.request_id,
            load(false).statement("[1]".into(), "0-1").request_id
        );
        assert_eq!(plain.table, Some(Table::RawEvents));
    }
}
