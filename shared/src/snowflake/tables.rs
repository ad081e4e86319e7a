//! The two destination tables: their names, DDL and columns. The INSERTs that fill them are
//! the row format's (`crate::rows`).

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
}
