//! The one-statement bulk INSERTs that unpack a bound JSON array of elements into a table.
//!
//! A chunk of rows travels as ONE bound JSON-array string and is unpacked server-side with
//! `TABLE(FLATTEN(INPUT => PARSE_JSON(?)))` (the SQL API has no array bindings, and
//! `PARSE_JSON` is not allowed in a `VALUES` list). The elements are written by `element.rs`.

use crate::snowflake::{Statement, Table};

impl Table {
    /// The INSERT that loads one bound JSON array into this table.
    pub fn insert_sql(self) -> &'static str {
        match self {
            Table::RawEvents => INSERT_RAW_EVENTS,
            Table::Rejected => INSERT_REJECTED,
        }
    }

    /// The INSERT that loads one bound JSON array but skips rows already in the table: for
    /// rows that may have landed before (see [`Table::insert_skipping_loaded`]).
    pub fn insert_sql_skipping_loaded(self) -> &'static str {
        match self {
            Table::RawEvents => INSERT_RAW_EVENTS_SKIPPING_LOADED,
            Table::Rejected => INSERT_REJECTED_SKIPPING_LOADED,
        }
    }

    /// [`insert_sql_skipping_loaded`](Table::insert_sql_skipping_loaded) when `skip_loaded`,
    /// else [`insert_sql`](Table::insert_sql).
    pub fn insert_sql_for(self, skip_loaded: bool) -> &'static str {
        if skip_loaded {
            self.insert_sql_skipping_loaded()
        } else {
            self.insert_sql()
        }
    }

    /// A statement inserting the rows of `json_array` (built by [`JsonArray`](super::JsonArray)).
    pub fn insert(self, json_array: String) -> Statement {
        Statement::new(self.insert_sql()).bind(json_array)
    }

    /// A statement inserting the rows of `json_array` that are not in the table yet: the same
    /// event (id, merchant, name, time and payload object) or rejection (message, reason and
    /// text) already there is skipped. It costs a join against the table, so flush uses it only
    /// for staged chunks delivered more than once, whose rows a dead run may have loaded.
    pub fn insert_skipping_loaded(self, json_array: String) -> Statement {
        Statement::new(self.insert_sql_skipping_loaded()).bind(json_array)
    }
}

/// Elements carry the raw event text in `r` (parsed once server-side into `p`, from which the
/// plain fields are read, so no field is sent twice) and the normalized values the validator
/// computed: `t` UTC time, `n` trimmed name, `v` decimal text, `c` upper-case currency.
///
/// `p` is parsed with `PARSE_JSON(..., 'd')`: Snowflake's default refuses an object that repeats
/// a key (100069), and the validator lets repeated keys through inside `properties` and unknown
/// fields; with `'d'` the last value of a repeated key wins. `p` itself is `RAW_PAYLOAD`, a
/// VARIANT object, so `raw_payload:context.page.url` reads into it.
macro_rules! insert_raw_events {
    () => {
        "INSERT INTO RAW_EVENTS (EVENT_ID, EVENT_TIME, MERCHANT_ID, EVENT_NAME, USER_ID, ANONYMOUS_ID, ORDER_ID, PLATFORM, SOURCE, VALUE, CURRENCY, CONSENT_STATUS, PROPERTIES, RAW_PAYLOAD) \
SELECT e.p:event_id::STRING, e.value:t::TIMESTAMP_NTZ, e.p:merchant_id::STRING, e.value:n::STRING, e.p:user_id::STRING, e.p:anonymous_id::STRING, e.p:order_id::STRING, e.p:platform::STRING, e.p:source::STRING, e.value:v::NUMBER(18, 4), e.value:c::STRING, e.p:consent_status::STRING, e.p:properties, e.p \
FROM (SELECT f.value AS value, PARSE_JSON(f.value:r::STRING, 'd') AS p FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) f) e"
    };
}

macro_rules! insert_rejected {
    () => {
        "INSERT INTO RAW_EVENTS_REJECTED (SOURCE_MESSAGE_ID, EVENT_ID, MERCHANT_ID, REASON, DETAIL, RAW_TEXT) \
SELECT f.value:m::STRING, f.value:e::STRING, f.value:mi::STRING, f.value:re::STRING, f.value:d::STRING, f.value:r::STRING \
FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) f"
    };
}

const INSERT_RAW_EVENTS: &str = insert_raw_events!();
const INSERT_REJECTED: &str = insert_rejected!();

/// The same INSERT, but a row whose event is already in the table (same id, merchant, time
/// and payload object) is skipped: for staged rows that may have landed before, in a run
/// that died between its INSERT and deleting the staged message. The `EVENT_NAME` match lets
/// Snowflake prune by the table's clustering key.
const INSERT_RAW_EVENTS_SKIPPING_LOADED: &str = concat!(
    insert_raw_events!(),
    " WHERE NOT EXISTS (SELECT 1 FROM RAW_EVENTS l WHERE l.MERCHANT_ID = e.p:merchant_id::STRING \
AND l.EVENT_NAME = e.value:n::STRING AND l.EVENT_ID = e.p:event_id::STRING \
AND l.EVENT_TIME = e.value:t::TIMESTAMP_NTZ AND l.RAW_PAYLOAD = e.p)"
);

/// The quarantine's counterpart: a rejection already recorded for the same message, reason and
/// text is skipped.
const INSERT_REJECTED_SKIPPING_LOADED: &str = concat!(
    insert_rejected!(),
    " WHERE NOT EXISTS (SELECT 1 FROM RAW_EVENTS_REJECTED l WHERE l.SOURCE_MESSAGE_ID = f.value:m::STRING \
AND l.REASON = f.value:re::STRING AND l.RAW_TEXT = f.value:r::STRING)"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The four statements, pinned whole: a change to any column, cast or join shows up as a
    /// snapshot diff (`cargo insta review`, or `INSTA_UPDATE=always` then `git diff`).
    #[test]
    fn the_insert_statements_are_pinned() {
        let mut text = String::new();
        for table in [Table::RawEvents, Table::Rejected] {
            for skip_loaded in [false, true] {
                text.push_str(&format!(
                    "-- {} skip_loaded={skip_loaded}\n{}\n",
                    table.name(),
                    table.insert_sql_for(skip_loaded)
                ));
            }
        }
        insta::assert_snapshot!("insert_statements", text);
    }

    #[test]
    fn raw_events_insert_parses_each_event_once_with_last_value_wins() {
        for sql in [INSERT_RAW_EVENTS, INSERT_RAW_EVENTS_SKIPPING_LOADED] {
            // the event text is parsed once, allowing repeated keys; the bound array strictly
            assert_eq!(sql.matches("PARSE_JSON(f.value:r::STRING, 'd')").count(), 1);
            assert_eq!(sql.matches("PARSE_JSON(").count(), 2);
            assert!(
                !sql.contains("TO_VARIANT"),
                "RAW_PAYLOAD is the object, not a string"
            );
        }
    }

    #[test]
    fn skipping_inserts_extend_the_plain_ones() {
        assert!(INSERT_RAW_EVENTS_SKIPPING_LOADED.starts_with(INSERT_RAW_EVENTS));
        assert!(INSERT_REJECTED_SKIPPING_LOADED.starts_with(INSERT_REJECTED));
        assert!(INSERT_RAW_EVENTS_SKIPPING_LOADED.ends_with("AND l.RAW_PAYLOAD = e.p)"));
    }

    #[test]
    fn rejected_rows_keep_the_exact_text() {
        assert!(INSERT_REJECTED.contains("f.value:r::STRING FROM"));
        assert!(!INSERT_REJECTED.contains("PARSE_JSON(f.value:r"));
    }

    #[test]
    fn insert_binds_one_json_array() {
        let s = Table::Rejected.insert("[]".into());
        assert_eq!(s.bindings, vec!["[]".to_string()]);
        assert_eq!(s.sql.matches('?').count(), 1);
        assert_eq!(Table::RawEvents.insert_sql().matches('?').count(), 1);
    }
}
