//! The flush function: loads the chunks ingest staged, in as little warehouse time as
//! possible. An empty queue costs nothing in Snowflake: no authentication, no statement.
//!
//! Staged chunks are not loaded one INSERT each: their rows are packed into statements filled
//! near `max_statement_bytes` (`pack.rs`), so small ingest batches and their tiny reject chunks
//! do not multiply statements. A staged message is deleted only after every statement holding
//! its rows succeeded. Exactly once holds without tying a chunk to one statement:
//!
//! - within a run, a statement resubmitted after a timeout, 5xx, 429 or dropped connection
//!   reuses its requestId with `retry=true`, and a second delivery of a chunk taken this run
//!   is not packed again;
//! - a chunk SQS delivered before (a run died between INSERT and delete, or a statement failed)
//!   goes into statements that skip rows already in the table (same event id, merchant,
//!   name, time and raw payload; for rejections, same message, reason and text);
//! - so does a chunk staged more than two flush periods ago: a dead-letter redrive makes a new
//!   message (new id, receive count 1), but the envelope's `staged_at` stays, and no first
//!   delivery waits that long in normal operation (the staging backlog alarm's bound).
//!
//! This file is the run, in the order it happens: probe, drain (receivers feed one packer),
//! load, settle, suspend, report. Beside it: `config` (settings and input), `pack` (rows into
//! statements), `ledger` (when a staged message is deleted or released), `suspend` (the
//! warehouse after a run) and `report` (the answer and its metrics).

mod config;
mod ledger;
mod pack;
mod report;
mod suspend;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::Message;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use crate::load::streaming::Writer;
use crate::load::{ChunkLoad, Delivery, LoadMethod, Loader};
use crate::report::{age_ms, now_ms};
use crate::secrets::SecretSource;
use crate::snowflake::{RetryPolicy, SnowflakeError, Table};
use crate::staging::{StagedChunk, StagingQueue, receive_count, received_before, sent_timestamp};
pub use config::{FlushConfig, FlushRequest};
use ledger::{Ledger, Settled, Taken};
use pack::{Packed, Packer};
pub use report::{FlushReport, FlushStatus};
use report::{count_rows, final_status};

/// The flush handler, built once per process.
pub struct Flush {
    queue: StagingQueue,
    delivery: Delivery,
    config: FlushConfig,
}

impl std::fmt::Debug for Flush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flush")
            .field("queue_url", &self.queue.url())
            .finish_non_exhaustive()
    }
}

/// What the receivers and the packer share during one run.
struct Run {
    deadline: Instant,
    stop: AtomicBool,
    report: Mutex<FlushReport>,
    /// Staged chunks taken this run: SQS may deliver a message twice, and a message is
    /// deleted only when every statement holding its rows landed.
    ledger: Ledger,
    /// `SentTimestamp` of each message taken this run, by receipt handle, for `loaded_age_ms`.
    sent: std::sync::Mutex<HashMap<String, String>>,
}

/// SQS's longest visibility timeout, 12 hours
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html>).
const MAX_VISIBILITY_S: u64 = 43_200;

/// The four kinds of statement: per table, and whether rows already loaded are skipped.
const KINDS: [(Table, bool); 4] = [
    (Table::RawEvents, false),
    (Table::Rejected, false),
    (Table::RawEvents, true),
    (Table::Rejected, true),
];

impl Flush {
    /// Builds the handler from validated settings and the AWS configuration.
    pub fn new(config: FlushConfig, aws: &aws_config::SdkConfig) -> Self {
        let source = SecretSource::new(
            aws_sdk_secretsmanager::Client::new(aws),
            config.secret_id.clone(),
            config.secret_ttl,
            RetryPolicy::default(),
        );
        let load = config.load;
        Flush::with_loader(
            config,
            aws_sdk_sqs::Client::new(aws),
            Loader::new(source, load),
        )
    }

    /// A handler over an existing loader and SQS client (tests, benchmarks); with
    /// `load_method` streaming the loader serves the redeliveries.
    pub fn with_loader(config: FlushConfig, sqs: aws_sdk_sqs::Client, loader: Loader) -> Self {
        Flush {
            queue: StagingQueue::new(sqs, config.staging_queue_url.clone()),
            delivery: match config.load_method {
                LoadMethod::SqlApi => Delivery::SqlApi(loader),
                LoadMethod::Streaming => {
                    Delivery::Streaming(Writer::new(loader, config.streaming_channel.clone()))
                }
            },
            config,
        }
    }

    /// One run: probe, drain until the queue is empty or the deadline nears, optionally
    /// suspend the warehouse, report.
    pub async fn run(&self, request: FlushRequest, lambda_deadline: Instant) -> FlushReport {
        let started = Instant::now();
        let deadline = run_deadline(
            lambda_deadline,
            self.config.margin,
            request.max_seconds,
            started,
        );
        let run = Arc::new(Run {
            deadline,
            stop: AtomicBool::new(false),
            report: Mutex::new(FlushReport::default()),
            ledger: Ledger::default(),
            sent: std::sync::Mutex::default(),
        });

        // The probe is a plain receive: if nothing waits, Snowflake is never contacted.
        let first = match self.queue.receive(1, self.config.visibility).await {
            Ok(batch) => batch,
            Err(error) => {
                let mut report = run.report.lock().await.clone();
                report.status = FlushStatus::Failed;
                report.error = Some(error);
                report.fix = Some("check TRACKLAYER_STAGING_QUEUE_URL and that the function may receive and delete messages on it".into());
                report.duration_ms = started.elapsed().as_millis() as u64;
                return report;
            }
        };
        if first.is_empty() {
            let mut report = run.report.lock().await.clone();
            report.leftover_estimate = self.queue.depth().await;
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }

        run.report.lock().await.snowflake_contacted = true;
        run.ledger.received(receipts(&first));
        let work = async {
            match self
                .delivery
                .prepare(run.deadline + self.config.margin)
                .await
            {
                Ok(()) => self.drain(&run, first).await,
                Err(error) => {
                    self.fail(&run, &error).await;
                    // The probed chunk goes back at once, for a run by hand once it is fixed.
                    self.queue.release(&run.ledger.unsettled()).await;
                }
            }
        };
        self.keep_hidden(&run, work).await;

        let mut report = run.report.lock().await.clone();
        if let Some(streamed) = self.delivery.streamed().await {
            report.appends = streamed.appends;
            report.append_bytes = streamed.bytes;
        }
        if self.config.suspend_after_flush {
            self.suspend(&mut report, lambda_deadline).await;
        }
        report.leftover_estimate = self.queue.depth().await;
        report.status = final_status(&report);
        report.duration_ms = started.elapsed().as_millis() as u64;
        report
    }

    /// Drains the queue: receivers feed received messages to one packer, which fills
    /// statements near the size bound and keeps `max_concurrent_statements` of them in flight.
    async fn drain(&self, run: &Run, first: Vec<Message>) {
        let (sender, receiver) = mpsc::channel(1);
        // Cannot fail: the receiving end is alive and the channel has room for one batch.
        let _ = sender.send(first).await;
        let receivers = futures_util::future::join_all(
            (0..self.config.receivers).map(|_| self.receive_into(run, sender.clone())),
        );
        drop(sender);
        tokio::join!(receivers, self.pack_and_load(run, receiver));
    }

    /// One receiver: receives until the queue is empty, the run stops or time runs out.
    async fn receive_into(&self, run: &Run, sender: mpsc::Sender<Vec<Message>>) {
        while !run.stop.load(Ordering::SeqCst) && Instant::now() < run.deadline {
            match self.queue.receive(1, self.config.visibility).await {
                Ok(batch) if batch.is_empty() => return,
                Ok(batch) => {
                    run.ledger.received(receipts(&batch));
                    if sender.send(batch).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(error, "receiving staged chunks failed");
                    let mut report = run.report.lock().await;
                    report.error.get_or_insert(error);
                    report.chunks_failed += 1;
                    return;
                }
            }
        }
    }

    /// Packs received chunks into statements and loads them, at most
    /// `max_concurrent_statements` at once. A message is unpacked only when no full statement
    /// waits for a slot, so memory stays bounded however much is staged.
    async fn pack_and_load(&self, run: &Run, mut received: mpsc::Receiver<Vec<Message>>) {
        let settings = self.delivery.settings();
        let mut packers: Vec<Packer> = KINDS
            .iter()
            .map(|&(table, skip)| Packer::new(table, skip, settings.max_statement_bytes))
            .collect();
        let mut backlog: VecDeque<Message> = VecDeque::new();
        let mut ready: VecDeque<Packed> = VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        let mut open = true;
        loop {
            if run.stop.load(Ordering::SeqCst) {
                for packed in ready.drain(..) {
                    self.settle(run, &packed, false).await;
                }
            }
            while in_flight.len() < settings.max_concurrent_statements {
                let Some(packed) = ready.pop_front() else {
                    break;
                };
                in_flight.push(self.load_packed(run, packed));
            }
            if !ready.is_empty() {
                in_flight.next().await;
            } else if let Some(message) = backlog.pop_front() {
                self.take(run, message, &mut packers, &mut ready).await;
            } else if !open {
                if in_flight.next().await.is_none() {
                    break;
                }
            } else {
                tokio::select! {
                    batch = received.recv() => match batch {
                        Some(batch) => backlog.extend(batch),
                        None => {
                            open = false;
                            ready.extend(packers.iter_mut().filter_map(Packer::finish));
                        }
                    },
                    Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                }
            }
        }
        // Chunks never packed because the run stopped go back for the next run.
        let unsettled = run.ledger.unsettled();
        if !unsettled.is_empty() {
            run.report.lock().await.chunks_failed += unsettled.len() as u64;
            self.queue.release(&unsettled).await;
        }
    }

    /// Takes one received message: an unreadable one is left for the dead-letter queue, a copy
    /// of a chunk taken this run is not packed again, and the rest go to the packers. Once time
    /// is up, nothing more is packed: the message is released for the next run.
    async fn take(
        &self,
        run: &Run,
        message: Message,
        packers: &mut [Packer],
        ready: &mut VecDeque<Packed>,
    ) {
        let receipt = message.receipt_handle.clone().unwrap_or_default();
        run.ledger.picked(&receipt);
        if run.stop.load(Ordering::SeqCst) || Instant::now() >= run.deadline {
            self.queue.release(&[receipt]).await;
            return;
        }
        let chunk = match StagedChunk::from_message(message.body.as_deref().unwrap_or_default()) {
            Ok(chunk) => chunk,
            Err(error) => {
                // Left on the queue: after maxReceiveCount it moves to the DLQ for a person.
                tracing::error!(%error, message_id = ?message.message_id, "unreadable staging message; leaving it for the dead-letter queue");
                let mut report = run.report.lock().await;
                report.chunks_failed += 1;
                report.error.get_or_insert(error.to_string());
                return;
            }
        };
        drop(message.body);
        if let Some(sent) = sent_timestamp(&message.attributes) {
            run.sent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(receipt.clone(), sent.to_string());
        }
        match run.ledger.take(chunk.id, receipt.clone()) {
            Taken::New => {}
            Taken::Copy => return,
            Taken::Done { landed: true } => return self.queue.delete(&[receipt]).await,
            // Failed this run: it comes back for the next one, not again in this one.
            Taken::Done { landed: false } => return self.hide_for_the_run(run, &[receipt]).await,
        }
        // A message received before may have been loaded, in part or whole, by a run that
        // died before deleting it, and one staged long ago may be a redriven copy of such a
        // message: their rows go to statements that skip rows already there.
        let skip_loaded = received_before(receive_count(&message.attributes))
            || staged_before(chunk.staged_at, now_ms(), self.config.overdue_after());
        if skip_loaded {
            run.report.lock().await.chunks_redelivered += 1;
        }
        let kind = KINDS
            .iter()
            .position(|&k| k == (chunk.table, skip_loaded))
            .unwrap_or_default();
        let mut full = Vec::new();
        let settled = match packers[kind].add(chunk.id, &chunk.body, chunk.rows, &mut full) {
            Ok(parts) => run.ledger.seal(chunk.id, parts, true),
            Err(error) => {
                tracing::error!(%error, "staged chunk cannot be packed; it stays on the queue");
                run.report.lock().await.error.get_or_insert(error);
                run.ledger.seal(chunk.id, 0, false)
            }
        };
        ready.extend(full);
        self.finish(run, settled.into_iter().collect()).await;
    }

    /// Loads one packed statement (isolating rows Snowflake refuses), then deletes the staged
    /// messages whose rows have all landed and releases those that failed.
    async fn load_packed(&self, run: &Run, packed: Packed) {
        let sources = packed
            .chunks
            .map(|chunk| std::borrow::Cow::Owned(format!("staged:{chunk}")));
        let load = ChunkLoad {
            table: packed.table,
            body: &packed.body,
            key: packed.key(),
            resubmission: false,
            tag: "tracklayer:flush",
            sources: &sources,
            skip_loaded: packed.skip_loaded,
        };
        let outcome = self
            .delivery
            .deliver(
                std::slice::from_ref(&load),
                run.deadline + self.config.margin,
            )
            .await
            .pop()
            .unwrap_or_default();
        let landed = {
            let mut report = run.report.lock().await;
            report.statements += u64::from(outcome.statements);
            report.bytes_sent += packed.body.len() as u64;
            count_rows(&mut report, packed.table, &outcome);
            match &outcome.error {
                None => {
                    if packed.skip_loaded {
                        let rows = packed.chunks.rows();
                        report.rows_already_loaded +=
                            (rows as u64).saturating_sub(outcome.loaded + outcome.quarantined);
                    }
                    true
                }
                Some(error) => {
                    if report.error.is_none() {
                        let fix = error.fix();
                        tracing::error!(kind = %error.kind(), %error, fix, "statement failed; its chunks stay on the queue");
                        report.error = Some(error.to_string());
                        report.fix = Some(fix);
                    }
                    if error.kind().stops_the_run() {
                        report.status = FlushStatus::Failed;
                        run.stop.store(true, Ordering::SeqCst);
                    }
                    false
                }
            }
        };
        self.settle(run, &packed, landed).await;
    }

    /// Records that a statement answered (or was dropped), deleting or releasing the staged
    /// messages it was the last part of.
    async fn settle(&self, run: &Run, packed: &Packed, landed: bool) {
        let settled = packed
            .chunks
            .sources()
            .filter_map(|&chunk| run.ledger.part_done(chunk, landed))
            .collect();
        self.finish(run, settled).await;
    }

    /// Counts settled chunks, deletes the messages of those that landed and releases the rest.
    async fn finish(&self, run: &Run, settled: Vec<Settled>) {
        let (mut delete, mut release) = (Vec::new(), Vec::new());
        {
            let mut report = run.report.lock().await;
            for chunk in settled {
                match chunk {
                    Settled::Landed(receipts) => {
                        report.chunks_loaded += 1;
                        let sent = run.sent.lock().unwrap_or_else(|e| e.into_inner());
                        let now = now_ms();
                        let ages = receipts.iter().filter_map(|r| age_ms(sent.get(r)?, now));
                        report.loaded_age_ms = report.loaded_age_ms.max(ages.max());
                        delete.extend(receipts);
                    }
                    Settled::Failed(receipts) => {
                        report.chunks_failed += 1;
                        release.extend(receipts);
                    }
                }
            }
        }
        self.queue.delete(&delete).await;
        self.hide_for_the_run(run, &release).await;
    }

    /// Keeps failed chunks' messages hidden until this run is over, so the next run takes them:
    /// released at once, this run would receive them again and again, and each receive counts
    /// towards the staging queue's maxReceiveCount (a chunk failing a long run would reach the
    /// dead-letter queue within that one run). A stopped run receives nothing more, so its
    /// chunks are released at once, for a run by hand once the cause is fixed.
    async fn hide_for_the_run(&self, run: &Run, receipts: &[String]) {
        if run.stop.load(Ordering::SeqCst) {
            return self.queue.release(receipts).await;
        }
        let left = run.deadline.saturating_duration_since(Instant::now()) + self.config.margin;
        let seconds = (left.as_secs() + 1).min(MAX_VISIBILITY_S);
        self.queue.set_visibility(receipts, seconds as i32).await;
    }

    /// Runs `work`, extending the visibility of every chunk in flight and every message waiting
    /// for the packer every half period.
    async fn keep_hidden<F: std::future::Future<Output = ()>>(&self, run: &Run, work: F) {
        let period = self.config.visibility / 2;
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        tokio::pin!(work);
        loop {
            tokio::select! {
                () = &mut work => return,
                _ = ticker.tick() => {
                    let seconds = self.config.visibility.as_secs() as i32;
                    self.queue.set_visibility(&run.ledger.in_flight_receipts(), seconds).await;
                }
            }
        }
    }

    async fn fail(&self, run: &Run, error: &SnowflakeError) {
        let fix = error.fix();
        tracing::error!(kind = %error.kind(), %error, fix, "flush cannot load; every chunk stays on the queue");
        let mut report = run.report.lock().await;
        report.status = FlushStatus::Failed;
        report.error = Some(error.to_string());
        report.fix = Some(fix);
        run.stop.store(true, Ordering::SeqCst);
    }
}

/// The receipt handles of received messages.
fn receipts(batch: &[Message]) -> impl Iterator<Item = &str> {
    batch.iter().filter_map(|m| m.receipt_handle.as_deref())
}

/// Whether a chunk was staged (`staged_at`, epoch milliseconds) more than `overdue` before
/// `now_ms`. A version 1 envelope has no stamp and is not.
fn staged_before(staged_at: Option<u64>, now_ms: u64, overdue: Duration) -> bool {
    staged_at.is_some_and(|at| now_ms.saturating_sub(at) > overdue.as_millis() as u64)
}

/// When a run stops taking work: the Lambda deadline less the margin for the answer (already
/// past when less than the margin is left), and no later than `max_seconds` after `started`.
fn run_deadline(
    lambda_deadline: Instant,
    margin: Duration,
    max_seconds: Option<u64>,
    started: Instant,
) -> Instant {
    let deadline = lambda_deadline.checked_sub(margin).unwrap_or(started);
    match max_seconds {
        Some(max) => deadline.min(started + Duration::from_secs(max)),
        None => deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_staged_more_than_the_bound_ago_is_overdue() {
        let bound = Duration::from_secs(600);
        let now = 1_767_225_600_000;
        assert!(!staged_before(Some(now - 600_000), now, bound));
        assert!(staged_before(Some(now - 600_001), now, bound));
        assert!(!staged_before(Some(now + 5_000), now, bound));
        assert!(!staged_before(None, now, bound));
    }
}

/// The run's deadline and final status, without a queue.
#[cfg(test)]
mod run_tests {
    use super::*;

    #[test]
    fn the_deadline_keeps_the_margin_and_max_seconds() {
        let started = Instant::now();
        let lambda = started + Duration::from_secs(900);
        let margin = Duration::from_secs(20);
        assert_eq!(run_deadline(lambda, margin, None, started), lambda - margin);
        assert_eq!(
            run_deadline(lambda, margin, Some(60), started),
            started + Duration::from_secs(60)
        );
        assert_eq!(
            run_deadline(lambda, margin, Some(10_000), started),
            lambda - margin,
            "max_seconds never extends the Lambda's deadline"
        );
        let soon = started + Duration::from_secs(5);
        assert!(
            run_deadline(soon, margin, None, started) <= started,
            "less time left than the margin: the run takes no work"
        );
    }

    #[test]
    fn a_run_is_loaded_only_with_no_failed_chunk_and_nothing_left() {
        let report = |status, chunks_failed, leftover_estimate| FlushReport {
            status,
            chunks_failed,
            leftover_estimate,
            ..FlushReport::default()
        };
        let clean = report(FlushStatus::default(), 0, 0);
        assert_eq!(final_status(&clean), FlushStatus::Loaded);
        assert_eq!(
            final_status(&report(FlushStatus::default(), 1, 0)),
            FlushStatus::Partial
        );
        assert_eq!(
            final_status(&report(FlushStatus::default(), 0, 3)),
            FlushStatus::Partial
        );
        assert_eq!(
            final_status(&report(FlushStatus::Failed, 0, 0)),
            FlushStatus::Failed
        );
    }
}
