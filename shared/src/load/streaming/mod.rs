//! The Snowpipe Streaming path: rows go in through each table's default pipe, with no warehouse.
//! One channel per table, named by `TRACKLAYER_STREAMING_CHANNEL`; flush is its one writer
//! (reserved concurrency 1), so the number of channels is two whatever the uptime.
//!
//! Exactly once, with the facts of `../shared/notes/snowpipe-streaming.md` (§8):
//!
//! - Every run reopens its channels first ([`Writer::prepare`]). A reopen fences any earlier
//!   writer and discards what it appended but Snowflake had not committed (§3), so after it every
//!   earlier append has either committed or is gone.
//! - Each append carries the next offset token (a counter, one past the committed one after a
//!   reopen) and keeps its requestId on retries. When Snowflake asks for a reopen (§6: stale
//!   continuation token, invalid sequencer, "must be reopened"), the channel is reopened and
//!   every batch after the committed offset token is appended again, in order.
//! - A chunk counts as landed, and its staged messages may be deleted, only once the channel's
//!   committed offset token covers its last batch.
//! - A chunk delivered before (`skip_loaded`: SQS redelivered it, so a dead run may have loaded
//!   it) goes through the SQL API's `INSERT ... WHERE NOT EXISTS` instead, after the reopen.
//!   That costs a warehouse resume; first deliveries never use the warehouse.
//! - A default pipe skips rows it cannot convert (`ON_ERROR = CONTINUE`, §7) and only counts
//!   them. When the channel's error count grows, the chunk is loaded again through the SQL API's
//!   skipping INSERT, whose bisection quarantines the refused rows; rows that streamed in are
//!   skipped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::{ChunkLoad, ChunkOutcome, Loader};
use crate::rows::streaming::ndjson;
use crate::snowflake::streaming::{
    ChannelName, MAX_APPEND_BYTES, StreamingClient, gzip, offset_number, requires_reopen,
};
use crate::snowflake::{SnowflakeError, Table};

/// Default channel name (`TRACKLAYER_STREAMING_CHANNEL`).
pub const DEFAULT_CHANNEL: &str = "TRACKLAYER_FLUSH";

/// Uncompressed bytes of one append's NDJSON: gzip adds at most a few bytes per 64 KiB to
/// incompressible text, so the compressed body stays under [`MAX_APPEND_BYTES`].
const MAX_APPEND_UNCOMPRESSED: usize = MAX_APPEND_BYTES - 100_000;
/// At most this many appends per channel per second (§9: 10 requests a second per channel).
const APPENDS_PER_SECOND: usize = 10;
/// How often a waiting chunk asks for its channel's status (redpanda polls every 250 ms).
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// Reopens in a row before an append gives up.
const MAX_REOPENS: u32 = 3;

/// One append waiting for its commit.
struct Batch {
    gzipped: Arc<Vec<u8>>,
    /// Its NDJSON's length before compression.
    uncompressed: u64,
    request_id: Uuid,
}

/// What a run appended: the requests Snowflake accepted (replays after a reopen included) and
/// their NDJSON bytes before compression, which is what Snowpipe Streaming bills by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streamed {
    /// Appends Snowflake accepted.
    pub appends: u64,
    /// Their uncompressed bytes.
    pub bytes: u64,
}

/// A channel as this writer holds it.
struct Channel {
    name: ChannelName,
    continuation: String,
    /// The offset token the next append takes.
    next_offset: u64,
    /// The committed offset token, as a number (0 before anything committed).
    committed: u64,
    /// `rows_error_count` as last seen.
    rows_errors: u64,
    /// Appended and not yet committed, by offset token.
    pending: BTreeMap<u64, Batch>,
    /// When the last appends went out, for the per-channel rate.
    recent: VecDeque<Instant>,
    /// When the status was last asked for.
    last_status: Option<Instant>,
    /// Offset tokens committed while the pipe's error count grew: their chunks may have rows the
    /// pipe refused.
    suspect: Vec<std::ops::RangeInclusive<u64>>,
    /// Accepted appends on this channel this run.
    streamed: Streamed,
}

/// The channels of one run.
struct Session {
    client: StreamingClient,
    channels: HashMap<Table, Arc<Mutex<Channel>>>,
}

/// Loads chunks through Snowpipe Streaming, with the SQL API for redeliveries.
pub struct Writer {
    loader: Loader,
    channel: String,
    session: Mutex<Option<Arc<Session>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("channel", &self.channel)
            .field("loader", &self.loader)
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer on channel `channel` of each table, with `loader` for what goes through the
    /// SQL API (tables once per process, redeliveries, rows a pipe refused).
    pub fn new(loader: Loader, channel: String) -> Self {
        Writer {
            loader,
            channel,
            session: Mutex::new(None),
        }
    }

    /// The SQL API loader beside the channels.
    pub fn loader(&self) -> &Loader {
        &self.loader
    }

    /// Creates the tables if needed (once per process, DDL only) and (re)opens both channels,
    /// so every earlier append has committed or is discarded before this run loads anything.
    pub async fn prepare(&self, deadline: Instant) -> Result<(), SnowflakeError> {
        self.loader.ensure_tables(deadline).await?;
        let sql = self.loader.source().client().await?;
        let client = StreamingClient::new(sql)?;
        let mut channels = HashMap::new();
        for table in [Table::RawEvents, Table::Rejected] {
            let name = ChannelName {
                table,
                channel: self.channel.clone(),
            };
            let opened = client.open(&name, deadline).await?;
            let committed = offset_number(opened.committed.as_deref());
            tracing::info!(
                table = table.name(),
                channel = %self.channel,
                committed,
                "streaming channel open"
            );
            channels.insert(
                table,
                Arc::new(Mutex::new(Channel {
                    name,
                    continuation: opened.continuation,
                    next_offset: committed + 1,
                    committed,
                    rows_errors: opened.rows_errors,
                    pending: BTreeMap::new(),
                    recent: VecDeque::new(),
                    last_status: None,
                    suspect: Vec::new(),
                    streamed: Streamed::default(),
                })),
            );
        }
        *self.session.lock().await = Some(Arc::new(Session { client, channels }));
        Ok(())
    }

    /// Delivers chunks: first deliveries through the channels, `skip_loaded` ones through the
    /// SQL API. One outcome per chunk, in order.
    pub async fn deliver(&self, chunks: &[ChunkLoad<'_>], deadline: Instant) -> Vec<ChunkOutcome> {
        let mut outcomes: Vec<ChunkOutcome> = vec![ChunkOutcome::default(); chunks.len()];
        let (again, first): (Vec<usize>, Vec<usize>) =
            (0..chunks.len()).partition(|&i| chunks[i].skip_loaded);
        if !again.is_empty() {
            let loads: Vec<ChunkLoad<'_>> = again.iter().map(|&i| chunks[i]).collect();
            for (i, outcome) in again
                .iter()
                .zip(self.loader.load_chunks(&loads, deadline).await)
            {
                outcomes[*i] = outcome;
            }
        }
        if first.is_empty() {
            return outcomes;
        }
        let session = match self.session().await {
            Ok(session) => session,
            Err(error) => {
                for i in first {
                    outcomes[i].error = Some(error.clone());
                }
                return outcomes;
            }
        };
        for i in first {
            outcomes[i] = self.stream(&session, &chunks[i], deadline).await;
        }
        outcomes
    }

    /// What this run's channels appended so far.
    pub async fn streamed(&self) -> Streamed {
        let Some(session) = self.session.lock().await.clone() else {
            return Streamed::default();
        };
        let mut total = Streamed::default();
        for channel in session.channels.values() {
            let streamed = channel.lock().await.streamed;
            total.appends += streamed.appends;
            total.bytes += streamed.bytes;
        }
        total
    }

    /// The channels opened by this run's [`Writer::prepare`]; kept for the whole run, since a
    /// reopen would discard the batches still waiting for their commit (a key rotated mid-run
    /// fails the run with its error, and the next run reads the secret again).
    async fn session(&self) -> Result<Arc<Session>, SnowflakeError> {
        let session = self.session.lock().await.clone();
        match session {
            Some(session) => Ok(session),
            None => {
                self.prepare(Instant::now() + Duration::from_secs(60))
                    .await?;
                self.session
                    .lock()
                    .await
                    .clone()
                    .ok_or_else(|| SnowflakeError::Protocol {
                        http_status: 0,
                        detail: "no streaming session after opening the channels".into(),
                    })
            }
        }
    }

    /// Appends one chunk's rows and waits until they are committed.
    async fn stream(
        &self,
        session: &Session,
        chunk: &ChunkLoad<'_>,
        deadline: Instant,
    ) -> ChunkOutcome {
        let mut now = String::new();
        crate::event::push_ntz(&mut now, time::OffsetDateTime::now_utc());
        let lines = match ndjson(chunk.table, chunk.body, &now) {
            Ok(lines) => lines,
            Err(e) => {
                return ChunkOutcome {
                    error: Some(SnowflakeError::Protocol {
                        http_status: 0,
                        detail: format!("a chunk's rows cannot be written as NDJSON: {e}"),
                    }),
                    ..ChunkOutcome::default()
                };
            }
        };
        let rows = lines.lines().count() as u64;
        let channel = session.channels[&chunk.table].clone();
        let last = {
            let mut channel = channel.lock().await;
            let mut last = None;
            for part in parts(&lines) {
                let offset = channel.next_offset;
                channel.next_offset += 1;
                channel.pending.insert(
                    offset,
                    Batch {
                        gzipped: Arc::new(gzip(part.as_bytes())),
                        uncompressed: part.len() as u64,
                        request_id: Uuid::new_v4(),
                    },
                );
                if let Err(error) = append(&session.client, &mut channel, offset, deadline).await {
                    channel.pending.remove(&offset);
                    return ChunkOutcome {
                        error: Some(error),
                        ..ChunkOutcome::default()
                    };
                }
                last = Some(offset);
            }
            last
        };
        let Some(last) = last else {
            return ChunkOutcome::default();
        };
        match wait_committed(&session.client, &channel, last, deadline).await {
            Ok(false) => ChunkOutcome {
                loaded: rows,
                ..ChunkOutcome::default()
            },
            Ok(true) => {
                // The pipe refused some rows: load the chunk again through the skipping INSERT,
                // which quarantines the refused rows and skips those that streamed in.
                tracing::warn!(
                    table = chunk.table.name(),
                    "the pipe refused rows of a chunk; loading it through the SQL API to quarantine them"
                );
                let again = ChunkLoad {
                    skip_loaded: true,
                    resubmission: true,
                    ..*chunk
                };
                let mut outcome = self
                    .loader
                    .load_chunks(std::slice::from_ref(&again), deadline)
                    .await
                    .pop()
                    .unwrap_or_default();
                if outcome.error.is_none() {
                    outcome.loaded = rows.saturating_sub(outcome.quarantined);
                }
                outcome
            }
            Err(error) => ChunkOutcome {
                error: Some(error),
                ..ChunkOutcome::default()
            },
        }
    }
}

/// `lines` cut at line ends into parts of at most [`MAX_APPEND_UNCOMPRESSED`] bytes (a longer
/// line is a part of its own).
fn parts(lines: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for line in lines.split_inclusive('\n') {
        if end > start && end - start + line.len() > MAX_APPEND_UNCOMPRESSED {
            parts.push(&lines[start..end]);
            start = end;
        }
        end += line.len();
    }
    if end > start {
        parts.push(&lines[start..end]);
    }
    parts
}

/// Appends the pending batch `offset`; when Snowflake asks for a reopen, reopens the channel and
/// appends every batch after its committed offset token again, in order, up to `offset`.
async fn append(
    client: &StreamingClient,
    channel: &mut Channel,
    offset: u64,
    deadline: Instant,
) -> Result<(), SnowflakeError> {
    match send(client, channel, offset, deadline).await {
        Err(error) if requires_reopen(&error) => {
            tracing::warn!(%error, channel = %channel.name.channel, "reopening the streaming channel");
            reopen_and_replay(client, channel, Some(offset), deadline).await
        }
        result => result,
    }
}

/// One append of a pending batch, at most [`APPENDS_PER_SECOND`] a second.
async fn send(
    client: &StreamingClient,
    channel: &mut Channel,
    offset: u64,
    deadline: Instant,
) -> Result<(), SnowflakeError> {
    if channel.recent.len() >= APPENDS_PER_SECOND
        && let Some(&oldest) = channel.recent.front()
    {
        tokio::time::sleep_until(oldest + Duration::from_secs(1)).await;
    }
    let Some(batch) = channel.pending.get(&offset) else {
        return Ok(());
    };
    let (body, request_id, uncompressed) =
        (batch.gzipped.clone(), batch.request_id, batch.uncompressed);
    let next = client
        .append(
            &channel.name,
            &channel.continuation,
            &offset.to_string(),
            request_id,
            &body,
            deadline,
        )
        .await?;
    channel.continuation = next;
    channel.streamed.appends += 1;
    channel.streamed.bytes += uncompressed;
    channel.recent.push_back(Instant::now());
    while channel.recent.len() > APPENDS_PER_SECOND {
        channel.recent.pop_front();
    }
    Ok(())
}

/// Reopens a channel: the continuation token and committed offset token come back new, and what
/// was not committed is gone from Snowflake (§3), so only `pending` batches after the committed
/// offset token remain to be sent.
async fn reopen(
    client: &StreamingClient,
    channel: &mut Channel,
    deadline: Instant,
) -> Result<(), SnowflakeError> {
    let opened = client.open(&channel.name, deadline).await?;
    channel.continuation = opened.continuation;
    channel.committed = offset_number(opened.committed.as_deref());
    let committed = channel.committed;
    channel.pending.retain(|&o, _| o > committed);
    Ok(())
}

/// Waits until the channel's committed offset token reaches `offset`; `Ok(true)` when the pipe
/// counted refused rows meanwhile.
async fn wait_committed(
    client: &StreamingClient,
    channel: &Mutex<Channel>,
    offset: u64,
    deadline: Instant,
) -> Result<bool, SnowflakeError> {
    loop {
        {
            let mut channel = channel.lock().await;
            let due = channel
                .last_status
                .is_none_or(|at| at.elapsed() >= STATUS_EVERY);
            if channel.committed < offset && due {
                channel.last_status = Some(Instant::now());
                let name = channel.name.channel.clone();
                let statuses = client
                    .status(channel.name.table, &[&name], deadline)
                    .await?;
                let Some(status) = statuses.get(&name) else {
                    reopen_and_replay(client, &mut channel, None, deadline).await?;
                    continue;
                };
                if !status.is_healthy() {
                    tracing::warn!(code = %status.channel_status_code, "streaming channel invalidated; reopening");
                    reopen_and_replay(client, &mut channel, None, deadline).await?;
                    continue;
                }
                let before = channel.committed;
                channel.committed =
                    before.max(offset_number(status.last_committed_offset_token.as_deref()));
                let committed = channel.committed;
                channel.pending.retain(|&o, _| o > committed);
                if status.errors() > channel.rows_errors {
                    // The refusals belong to a batch committed since the last look; which one
                    // the count does not say, so every such chunk is checked.
                    channel.rows_errors = status.errors();
                    channel.suspect.push(before + 1..=committed.max(before + 1));
                }
            }
            if channel.committed >= offset {
                return Ok(channel.suspect.iter().any(|r| r.contains(&offset)));
            }
        }
        if Instant::now() + STATUS_EVERY >= deadline {
            return Err(SnowflakeError::Transport {
                url: "streaming commit".into(),
                detail: format!(
                    "offset token {offset} was not committed before the deadline; its messages stay queued and load on the next run"
                ),
            });
        }
        tokio::time::sleep(STATUS_EVERY).await;
    }
}

/// Reopens `channel` and appends its pending batches again, in order (those up to `through`
/// when given): after a reopen Snowflake holds only what was committed (§3). An error during the
/// replay that asks for a reopen (a retried append that had landed meanwhile leaves an invalid
/// row sequencer) reopens again, at most [`MAX_REOPENS`] times in all.
async fn reopen_and_replay(
    client: &StreamingClient,
    channel: &mut Channel,
    through: Option<u64>,
    deadline: Instant,
) -> Result<(), SnowflakeError> {
    let mut reopens = 0;
    loop {
        reopens += 1;
        reopen(client, channel, deadline).await?;
        let offsets: Vec<u64> = match through {
            Some(last) => channel.pending.range(..=last).map(|(o, _)| *o).collect(),
            None => channel.pending.keys().copied().collect(),
        };
        let mut failed = None;
        for offset in offsets {
            if let Err(error) = send(client, channel, offset, deadline).await {
                failed = Some(error);
                break;
            }
        }
        match failed {
            None => return Ok(()),
            Some(error) if requires_reopen(&error) && reopens < MAX_REOPENS => {
                tracing::warn!(%error, channel = %channel.name.channel, "reopening the streaming channel again");
            }
            Some(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cut_at_line_ends_under_the_bound() {
        let line = format!("{}\n", "x".repeat(1_000_000));
        let lines = line.repeat(9);
        let cut = parts(&lines);
        assert_eq!(cut.len(), 3);
        assert!(
            cut.iter()
                .all(|p| p.len() <= MAX_APPEND_UNCOMPRESSED && p.ends_with('\n'))
        );
        assert_eq!(cut.concat(), lines);
        assert!(parts("").is_empty());
        let huge = format!("{}\n", "y".repeat(MAX_APPEND_UNCOMPRESSED + 1));
        assert_eq!(parts(&huge), [huge.as_str()]);
    }
}
