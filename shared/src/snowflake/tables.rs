//! The two destination tables: their DDL and the one-statement bulk INSERTs that fill them.
//!
//! A chunk of rows travels as ONE bound JSON-array string and is unpacked server-side with
//! `TABLE(FLATTEN(INPUT => PARSE_JSON(?)))` (the SQL API has no array bindings, and
//! `PARSE_JSON` is not allowed in a `VALUES` list). The element format is written by
//! [`crate::event::encode`].

use super::client::Statement;

/// Which table a chunk goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `RAW_EVENTS`: validated events.
    RawEvents,
    /// `RAW_EVENTS_REJECTED`: the quarantine, with reason and original text.
    #[serde(rename = "raw_events_rejected")]
    Rejected,
}

impl Table {
    /// The table's name, unqualified (statements run in the secret's database and schema).
    pub fn name(self) -> &'static str {
        match self {
            Table::RawEvents => "RAW_EVENTS",
            Table::Rejected => "RAW_EVENTS_REJECTED",
        }
    }

    /// The guide's DDL, qualified by the session's database and schema instead of
    /// `TRACKLAYER.EVENTS`.
    pub fn ddl(self) -> String {
        let text = match self {
            Table::RawEvents => RAW_EVENTS_DDL,
            Table::Rejected => RAW_EVENTS_REJECTED_DDL,
        };
        text.replace("TRACKLAYER.EVENTS.", "")
            .trim_end()
            .trim_end_matches(';')
            .to_string()
    }

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

    /// A statement inserting the rows of `json_array` (built by [`crate::event::encode`]).
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

    /// The columns the loader writes and their types as `INFORMATION_SCHEMA.COLUMNS.DATA_TYPE`
    /// shows them; connection-test compares an existing table against this.
    pub fn expected_columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Table::RawEvents => &[
                ("EVENT_ID", "TEXT"),
                ("EVENT_TIME", "TIMESTAMP_NTZ"),
                ("LOADED_AT", "TIMESTAMP_NTZ"),
                ("MERCHANT_ID", "TEXT"),
                ("EVENT_NAME", "TEXT"),
                ("USER_ID", "TEXT"),
                ("ANONYMOUS_ID", "TEXT"),
                ("ORDER_ID", "TEXT"),
                ("PLATFORM", "TEXT"),
                ("SOURCE", "TEXT"),
                ("VALUE", "NUMBER"),
                ("CURRENCY", "TEXT"),
                ("CONSENT_STATUS", "TEXT"),
                ("PROPERTIES", "VARIANT"),
                ("RAW_PAYLOAD", "VARIANT"),
            ],
            Table::Rejected => &[
                ("REJECTED_AT", "TIMESTAMP_NTZ"),
                ("SOURCE_MESSAGE_ID", "TEXT"),
                ("EVENT_ID", "TEXT"),
                ("MERCHANT_ID", "TEXT"),
                ("REASON", "TEXT"),
                ("DETAIL", "TEXT"),
                ("RAW_TEXT", "TEXT"),
            ],
        }
    }
}

/// The product guide's `RAW_EVENTS` DDL, byte for byte (`infra/sql/raw_events.sql`).
pub const RAW_EVENTS_DDL: &str = include_str!("../../../infra/sql/raw_events.sql");
/// The quarantine table's DDL (`infra/sql/raw_events_rejected.sql`).
pub const RAW_EVENTS_REJECTED_DDL: &str =
    include_str!("../../../infra/sql/raw_events_rejected.sql");

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

    #[test]
    fn raw_events_ddl_is_the_guides_text() {
        let guide = "CREATE TABLE IF NOT EXISTS TRACKLAYER.EVENTS.RAW_EVENTS (\nEVENT_ID STRING NOT NULL,\nEVENT_TIME TIMESTAMP_NTZ NOT NULL,\nLOADED_AT TIMESTAMP_NTZ DEFAULT CURRENT_TIMESTAMP(),\nMERCHANT_ID STRING NOT NULL,\nEVENT_NAME STRING NOT NULL,\nUSER_ID STRING,\nANONYMOUS_ID STRING,\nORDER_ID STRING,\nPLATFORM STRING,\nSOURCE STRING,\nVALUE NUMBER(18, 4),\nCURRENCY STRING,\nCONSENT_STATUS STRING,\nPROPERTIES VARIANT,\nRAW_PAYLOAD VARIANT\n)\nCLUSTER BY (MERCHANT_ID, EVENT_NAME);\n";
        assert_eq!(RAW_EVENTS_DDL, guide);
    }

    #[test]
    fn bootstrap_ddl_is_unqualified_and_keeps_cluster_by() {
        let ddl = Table::RawEvents.ddl();
        assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS RAW_EVENTS ("));
        assert!(ddl.ends_with("CLUSTER BY (MERCHANT_ID, EVENT_NAME)"));
        assert!(
            Table::Rejected
                .ddl()
                .starts_with("CREATE TABLE IF NOT EXISTS RAW_EVENTS_REJECTED (")
        );
    }

    #[test]
    fn raw_events_insert_parses_each_event_once_with_last_value_wins() {
        assert_eq!(
            INSERT_RAW_EVENTS,
            "INSERT INTO RAW_EVENTS (EVENT_ID, EVENT_TIME, MERCHANT_ID, EVENT_NAME, USER_ID, ANONYMOUS_ID, ORDER_ID, PLATFORM, SOURCE, VALUE, CURRENCY, CONSENT_STATUS, PROPERTIES, RAW_PAYLOAD) \
SELECT e.p:event_id::STRING, e.value:t::TIMESTAMP_NTZ, e.p:merchant_id::STRING, e.value:n::STRING, e.p:user_id::STRING, e.p:anonymous_id::STRING, e.p:order_id::STRING, e.p:platform::STRING, e.p:source::STRING, e.value:v::NUMBER(18, 4), e.value:c::STRING, e.p:consent_status::STRING, e.p:properties, e.p \
FROM (SELECT f.value AS value, PARSE_JSON(f.value:r::STRING, 'd') AS p FROM TABLE(FLATTEN(INPUT => PARSE_JSON(?))) f) e"
        );
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
    fn skipping_insert_compares_the_payload_object() {
        assert!(INSERT_RAW_EVENTS_SKIPPING_LOADED.starts_with(INSERT_RAW_EVENTS));
        assert_eq!(
            &INSERT_RAW_EVENTS_SKIPPING_LOADED[INSERT_RAW_EVENTS.len()..],
            " WHERE NOT EXISTS (SELECT 1 FROM RAW_EVENTS l WHERE l.MERCHANT_ID = e.p:merchant_id::STRING \
AND l.EVENT_NAME = e.value:n::STRING AND l.EVENT_ID = e.p:event_id::STRING \
AND l.EVENT_TIME = e.value:t::TIMESTAMP_NTZ AND l.RAW_PAYLOAD = e.p)"
        );
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
