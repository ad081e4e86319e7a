//! Packing the rows of staged chunks into statements filled near the size bound (the ledger
//! that settles them is `ledger.rs`).
//!
//! Ingest stages one chunk per table per invocation, so a small SQS batch leaves a chunk far
//! below the statement bound, and its rejections a tiny one. Flush therefore does not send one
//! INSERT per staged chunk: it streams their rows into statements of up to
//! `max_statement_bytes`, splitting a chunk between two statements where one fills up.

use uuid::Uuid;

use crate::rows::array::{elements, inside};
use crate::rows::{JsonArray, Provenance};
use crate::snowflake::Table;

/// Namespace of packed statements' requestIds.
const PACK_NAMESPACE: Uuid = Uuid::from_u128(0x6c0f_4d1e_58a2_4b7e_9a31_2f6d_8e0b_7c45);

/// Rows of one or more staged chunks, bound to one INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Packed {
    /// Destination table.
    pub table: Table,
    /// Whether rows already in the table are skipped (chunks delivered more than once).
    pub skip_loaded: bool,
    /// The bound JSON array.
    pub body: String,
    /// The staged chunk each row came from.
    pub chunks: Provenance<Uuid>,
}

impl Packed {
    /// The statement's key: derived from the chunks and rows it holds, so a retry within the run
    /// reuses its requestId (which also covers the statement's text and values, see
    /// `Statement::keyed`). A later run packs differently; it skips rows already loaded instead.
    pub fn key(&self) -> Uuid {
        let mut name = format!("{}:{}:", self.table.name(), self.skip_loaded);
        for (chunk, rows) in self.chunks.runs() {
            name.push_str(&format!("{chunk}/{rows},"));
        }
        Uuid::new_v5(&PACK_NAMESPACE, name.as_bytes())
    }
}

/// Fills statements of one kind (table, and whether rows already loaded are skipped).
#[derive(Debug)]
pub(super) struct Packer {
    table: Table,
    skip_loaded: bool,
    /// Room for the array: the bound minus the SQL text.
    room: usize,
    array: JsonArray,
    chunks: Provenance<Uuid>,
}

impl Packer {
    /// A packer for statements of at most `max_statement_bytes` (SQL text plus bound array).
    pub fn new(table: Table, skip_loaded: bool, max_statement_bytes: usize) -> Self {
        Packer {
            table,
            skip_loaded,
            room: max_statement_bytes.saturating_sub(table.insert_sql_for(skip_loaded).len()),
            array: JsonArray::new(),
            chunks: Provenance::default(),
        }
    }

    /// Whether `bytes` more of elements fit in the statement being filled.
    fn fits(&self, bytes: usize) -> bool {
        let comma = usize::from(!self.array.is_empty());
        self.array.len_bytes() + comma + bytes <= self.room
    }

    fn push(&mut self, chunk: Uuid, elements: &str, rows: usize) {
        self.array.push_elements(elements, rows);
        self.chunks.push(chunk, rows);
    }

    fn cut(&mut self, full: &mut Vec<Packed>) {
        full.extend(self.finish());
    }

    /// Adds the rows of a staged chunk (`body`, a JSON array of `rows` elements). Statements
    /// that fill up go to `full`. Returns in how many statements the chunk's rows now are
    /// (0 for an empty chunk). An element larger than the bound gets a statement of its own.
    pub fn add(
        &mut self,
        chunk: Uuid,
        body: &str,
        rows: usize,
        full: &mut Vec<Packed>,
    ) -> Result<usize, String> {
        let inner =
            inside(body).ok_or_else(|| format!("staged chunk {chunk} is not a JSON array"))?;
        if inner.trim().is_empty() {
            return Ok(0);
        }
        if self.fits(inner.len()) {
            self.push(chunk, inner, rows);
            return Ok(1);
        }
        let elements =
            elements(body).map_err(|e| format!("staged chunk {chunk} is not a JSON array: {e}"))?;
        let mut parts = 0;
        let mut in_current = false;
        for element in elements {
            if !self.array.is_empty() && !self.fits(element.len()) {
                self.cut(full);
                in_current = false;
            }
            if !in_current {
                parts += 1;
                in_current = true;
            }
            self.push(chunk, element, 1);
        }
        Ok(parts)
    }

    /// The statement being filled, if it holds any rows.
    pub fn finish(&mut self) -> Option<Packed> {
        if self.array.is_empty() {
            return None;
        }
        Some(Packed {
            table: self.table,
            skip_loaded: self.skip_loaded,
            body: std::mem::take(&mut self.array).finish(),
            chunks: std::mem::take(&mut self.chunks),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk_body(prefix: &str, rows: usize) -> String {
        let elements: Vec<String> = (0..rows)
            .map(|i| format!(r#"{{"r":"{prefix}-{i:04}"}}"#))
            .collect();
        format!("[{}]", elements.join(","))
    }

    fn rows_of(packed: &Packed) -> Vec<String> {
        let rows: Vec<serde_json::Value> = serde_json::from_str(&packed.body).unwrap();
        rows.iter()
            .map(|r| r["r"].as_str().unwrap().into())
            .collect()
    }

    #[test]
    fn small_chunks_share_one_statement() {
        let mut packer = Packer::new(Table::Rejected, false, 100_000);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut full = Vec::new();
        assert_eq!(packer.add(a, &chunk_body("a", 3), 3, &mut full), Ok(1));
        assert_eq!(packer.add(b, &chunk_body("b", 2), 2, &mut full), Ok(1));
        assert!(full.is_empty());
        let packed = packer.finish().unwrap();
        assert_eq!(packed.chunks.runs(), [(a, 3), (b, 2)]);
        assert_eq!(
            rows_of(&packed),
            ["a-0000", "a-0001", "a-0002", "b-0000", "b-0001"]
        );
        assert_eq!(packed.chunks.source_of(2), Some(&a));
        assert_eq!(packed.chunks.source_of(3), Some(&b));
        assert_eq!(packed.chunks.source_of(5), None);
        assert!(packer.finish().is_none());
    }

    #[test]
    fn a_chunk_that_does_not_fit_is_split_at_an_element_and_nothing_exceeds_the_bound() {
        let bound = Table::RawEvents.insert_sql().len() + 2 + 1_000;
        let mut packer = Packer::new(Table::RawEvents, false, bound);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut full = Vec::new();
        // 40 elements of 15 bytes (+1 comma) each: 600 bytes; then 60 more.
        assert_eq!(packer.add(a, &chunk_body("a", 40), 40, &mut full), Ok(1));
        assert_eq!(packer.add(b, &chunk_body("b", 60), 60, &mut full), Ok(2));
        let mut all = full.clone();
        all.extend(packer.finish());
        assert_eq!(all.len(), 2);
        for packed in &all {
            assert!(
                Table::RawEvents.insert_sql().len() + packed.body.len() <= bound,
                "{}",
                packed.body.len()
            );
        }
        let rows: Vec<String> = all.iter().flat_map(rows_of).collect();
        let expected: Vec<String> = (0..40)
            .map(|i| format!("a-{i:04}"))
            .chain((0..60).map(|i| format!("b-{i:04}")))
            .collect();
        assert_eq!(rows, expected, "every row once, in order");
        assert_eq!(all[0].chunks.runs()[0], (a, 40));
        assert_eq!(all[0].chunks.runs()[1].0, b);
        assert_eq!(all[0].chunks.runs()[1].1 + all[1].chunks.runs()[0].1, 60);
        assert_ne!(all[0].key(), all[1].key());
    }

    #[test]
    fn an_oversized_element_gets_a_statement_of_its_own() {
        let mut packer = Packer::new(Table::Rejected, false, 10);
        let a = Uuid::new_v4();
        let mut full = Vec::new();
        assert_eq!(packer.add(a, &chunk_body("a", 2), 2, &mut full), Ok(2));
        assert_eq!(full.len(), 1);
        let b = Uuid::new_v4();
        assert_eq!(packer.add(b, &chunk_body("b", 2), 2, &mut full), Ok(2));
        full.extend(packer.finish());
        let rows: Vec<Vec<String>> = full.iter().map(rows_of).collect();
        assert_eq!(rows, [["a-0000"], ["a-0001"], ["b-0000"], ["b-0001"]]);
    }

    #[test]
    fn empty_and_malformed_chunks() {
        let mut packer = Packer::new(Table::Rejected, true, 100_000);
        let mut full = Vec::new();
        assert_eq!(packer.add(Uuid::new_v4(), "[]", 0, &mut full), Ok(0));
        assert!(packer.add(Uuid::new_v4(), "{}", 1, &mut full).is_err());
        assert!(packer.finish().is_none());
    }

    #[test]
    fn key_depends_on_the_rows_held() {
        let a = Uuid::new_v4();
        let packed = |skip_loaded| {
            let mut packer = Packer::new(Table::RawEvents, skip_loaded, 1_000);
            packer.add(a, "[1]", 1, &mut Vec::new()).unwrap();
            packer.finish().unwrap()
        };
        let (one, same, skipping) = (packed(false), packed(false), packed(true));
        assert_eq!(one.key(), same.key());
        assert_ne!(one.key(), skipping.key());
    }

    proptest::proptest! {
        /// Whatever the chunks and the bound: every row lands in exactly one statement, in
        /// order; no statement of two or more rows exceeds the bound; segments and part counts
        /// agree with where the rows went.
        #[test]
        fn packing_keeps_every_row_once_and_statements_within_the_bound(
            chunks in proptest::collection::vec(proptest::collection::vec(0usize..300, 0..40), 0..12),
            room in 1usize..4_000,
        ) {
            let bound = Table::RawEvents.insert_sql().len() + 2 + room;
            let mut packer = Packer::new(Table::RawEvents, false, bound);
            let mut full = Vec::new();
            let mut expected = Vec::new();
            let mut parts_total = 0;
            let ids: Vec<Uuid> = chunks.iter().map(|_| Uuid::new_v4()).collect();
            for (c, (id, sizes)) in ids.iter().zip(&chunks).enumerate() {
                let rows: Vec<String> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &pad)| format!(r#"{{"r":"{c}-{i}","p":"{}"}}"#, "x".repeat(pad)))
                    .collect();
                expected.extend((0..rows.len()).map(|i| format!("{c}-{i}")));
                let parts = packer.add(*id, &format!("[{}]", rows.join(",")), rows.len(), &mut full).unwrap();
                proptest::prop_assert_eq!(parts == 0, rows.is_empty());
                parts_total += parts;
            }
            full.extend(packer.finish());
            let got: Vec<String> = full.iter().flat_map(rows_of).collect();
            proptest::prop_assert_eq!(got, expected);
            let segments: usize = full.iter().map(|p| p.chunks.runs().len()).sum();
            proptest::prop_assert_eq!(segments, parts_total);
            for packed in &full {
                let rows = rows_of(packed).len();
                proptest::prop_assert_eq!(packed.chunks.rows(), rows);
                proptest::prop_assert!(rows > 0);
                if rows > 1 {
                    proptest::prop_assert!(Table::RawEvents.insert_sql().len() + packed.body.len() <= bound);
                }
            }
        }
    }
}
