//! connection-test's Snowpipe Streaming checks, when `TRACKLAYER_LOAD_METHOD=streaming`: the
//! ingest host, the scoped-token exchange, then (test_sync only) opening a test channel on
//! `RAW_EVENTS`' default pipe, appending one test event, waiting for its commit and reading it
//! back through the SQL API. The test channel is never flush's, so running this never fences a
//! load.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::checks::{Probe, quote, test_event};
use super::report::Checks;
use super::{Mode, TEST_EVENT_NAME};
use crate::rows::JsonArray;
use crate::rows::streaming::ndjson;
use crate::snowflake::streaming::{ChannelName, StreamingClient, gzip, offset_number};
use crate::snowflake::{Client, SnowflakeError, Table};

/// The checks, in order (after the SQL API's).
pub(super) const STREAMING_CHECKS: [&str; 4] = [
    "streaming_host",
    "streaming_token",
    "streaming_channel",
    "streaming_append",
];

/// The channel connection-test writes on.
const TEST_CHANNEL: &str = "TRACKLAYER_CONNECTION_TEST";
/// How long the test row may take to commit (Snowflake: "typically a few seconds").
const COMMIT_WAIT: Duration = Duration::from_secs(30);

/// Runs the streaming checks; a failure ends them (the rest are reported skipped).
pub(super) async fn check_streaming(
    sql: &Arc<Client>,
    probe: &Probe<'_>,
    mode: Mode,
    checks: &mut Checks,
) -> Option<String> {
    let client = match StreamingClient::new(sql.clone()) {
        Ok(client) => client,
        Err(e) => {
            checks.fail(
                "streaming_host",
                e.to_string(),
                "Add `private_key` to the secret (docs/snowflake-setup.md), or set TRACKLAYER_LOAD_METHOD=sql_api.".into(),
            );
            return None;
        }
    };
    match client.ingest_host(probe.deadline).await {
        Ok(host) => checks.pass(
            "streaming_host",
            format!("Snowpipe Streaming's ingest host is {host}"),
        ),
        Err(e) => {
            call_failed(checks, "streaming_host", "GET /v2/streaming/hostname", &e);
            return None;
        }
    }
    match client.authorize(probe.deadline).await {
        Ok(()) => checks.pass(
            "streaming_token",
            format!(
                "exchanged the key-pair JWT for a scoped token as role {}",
                probe.names.role()
            ),
        ),
        Err(e) => {
            call_failed(checks, "streaming_token", "the token exchange", &e);
            return None;
        }
    }
    if mode == Mode::Check {
        return None;
    }
    let name = ChannelName {
        table: Table::RawEvents,
        channel: TEST_CHANNEL.into(),
    };
    let opened = match client.open(&name, probe.deadline).await {
        Ok(opened) => {
            checks.pass(
                "streaming_channel",
                format!(
                    "opened channel {TEST_CHANNEL} on {}-STREAMING (last committed offset token {})",
                    Table::RawEvents.name(),
                    opened.committed.as_deref().unwrap_or("none")
                ),
            );
            opened
        }
        Err(e) => {
            call_failed(checks, "streaming_channel", "opening the test channel", &e);
            return None;
        }
    };
    let (event_id, raw) = test_event("stream");
    let mut rows = JsonArray::new();
    let Some(Ok(event)) = crate::event::parse_body(&raw).pop() else {
        checks.fail(
            "streaming_append",
            "the test event did not validate".into(),
            "This is a bug; please report it.".into(),
        );
        return None;
    };
    rows.push_event(&event);
    let mut now = String::new();
    crate::event::push_ntz(&mut now, time::OffsetDateTime::now_utc());
    let lines = match ndjson(Table::RawEvents, &rows.finish(), &now) {
        Ok(lines) => lines,
        Err(e) => {
            checks.fail(
                "streaming_append",
                format!("the test row cannot be written: {e}"),
                "This is a bug; please report it.".into(),
            );
            return None;
        }
    };
    let offset = offset_number(opened.committed.as_deref()) + 1;
    let started = Instant::now();
    if let Err(e) = client
        .append(
            &name,
            &opened.continuation,
            &offset.to_string(),
            uuid::Uuid::new_v4(),
            &gzip(lines.as_bytes()),
            probe.deadline,
        )
        .await
    {
        call_failed(checks, "streaming_append", "appending the test event", &e);
        return Some(event_id);
    }
    let wait_until = probe.deadline.min(Instant::now() + COMMIT_WAIT);
    loop {
        match client
            .status(Table::RawEvents, &[TEST_CHANNEL], probe.deadline)
            .await
        {
            Ok(statuses) => {
                let committed = offset_number(
                    statuses
                        .get(TEST_CHANNEL)
                        .and_then(|s| s.last_committed_offset_token.as_deref()),
                );
                if committed >= offset {
                    break;
                }
            }
            Err(e) => {
                call_failed(
                    checks,
                    "streaming_append",
                    "reading the channel's status",
                    &e,
                );
                return Some(event_id);
            }
        }
        if Instant::now() >= wait_until {
            checks.fail(
                "streaming_append",
                format!(
                    "Snowflake took the test event {event_id} but did not commit it within {} s",
                    COMMIT_WAIT.as_secs()
                ),
                format!(
                    "Look the channel up: SELECT * FROM SNOWFLAKE.ACCOUNT_USAGE.SNOWPIPE_STREAMING_CHANNEL_HISTORY WHERE CHANNEL_NAME = '{TEST_CHANNEL}' (or SHOW CHANNELS IN TABLE {}); run connection-test again."
                    ,
                    Table::RawEvents.name()
                ),
            );
            return Some(event_id);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let committed_ms = started.elapsed().as_millis();
    let read = probe
        .query(format!(
            "SELECT EVENT_ID FROM RAW_EVENTS WHERE EVENT_ID = {} AND EVENT_NAME = {}",
            quote(&event_id),
            quote(TEST_EVENT_NAME)
        ))
        .await;
    match read {
        Ok(result) if result.get(0, "EVENT_ID") == Some(event_id.as_str()) => checks.pass(
            "streaming_append",
            format!(
                "appended test event {event_id}; committed and read back after {committed_ms} ms"
            ),
        ),
        Ok(_) => checks.fail(
            "streaming_append",
            format!("the test event {event_id} was committed but is not visible to the role"),
            probe.names.grants(),
        ),
        Err(e) => checks.fail(
            "streaming_append",
            format!("reading the test event back failed: {e}"),
            probe.names.grants(),
        ),
    }
    Some(event_id)
}

/// Fails check `name` after a streaming call: "`what` failed: `error`", with the error's fix.
fn call_failed(checks: &mut Checks, name: &'static str, what: &str, error: &SnowflakeError) {
    checks.fail(name, format!("{what} failed: {error}"), error.fix());
}
