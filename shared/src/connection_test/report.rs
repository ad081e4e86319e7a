//! The report: each check's outcome, and the collector that skips the rest once one fails.

use serde::Serialize;
use tokio::time::Instant;

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Fine.
    Pass,
    /// Broken; `fix` says what to do.
    Fail,
    /// Works, but costs money or will break; `fix` says what to change.
    Warn,
    /// Not run, because an earlier check failed.
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `secret`, `endpoint`, `authentication`, `role`, `warehouse`, `database`, `schema`,
    /// `table`, `quarantine`, `insert`, `read_back`.
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do (empty when nothing).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
    /// Time the check took.
    pub duration_ms: u64,
}

/// The whole answer, also logged as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The test event's id (test_sync).
    pub test_event_id: Option<String>,
    /// Rows of `RAW_EVENTS_REJECTED` with `REJECTED_AT` in the last 24 hours, by `REASON`
    /// (absent when the table could not be read; the `quarantine` check says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejections_last_24h: Option<std::collections::BTreeMap<String, u64>>,
}

impl Report {
    /// The check called `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// The checks every run reports, in order (the streaming checks follow when the loader streams).
pub const CHECKS: [&str; 11] = [
    "secret",
    "endpoint",
    "authentication",
    "role",
    "warehouse",
    "database",
    "schema",
    "table",
    "quarantine",
    "insert",
    "read_back",
];

/// Collects checks; once one fails, the rest are skipped with the reason.
pub(super) struct Checks {
    pub(super) done: Vec<Check>,
    pub(super) started: Instant,
    pub(super) rejections: Option<std::collections::BTreeMap<String, u64>>,
    /// Whether the streaming checks belong to this run (`TRACKLAYER_LOAD_METHOD=streaming`).
    pub(super) streaming: bool,
}

impl Checks {
    pub(super) fn record(
        &mut self,
        name: &'static str,
        status: Status,
        detail: String,
        fix: String,
    ) {
        let now = Instant::now();
        self.done.push(Check {
            name,
            status,
            detail,
            fix,
            duration_ms: now.duration_since(self.started).as_millis() as u64,
        });
        self.started = now;
    }

    pub(super) fn pass(&mut self, name: &'static str, detail: String) {
        self.record(name, Status::Pass, detail, String::new());
    }

    pub(super) fn fail(&mut self, name: &'static str, detail: String, fix: String) {
        self.record(name, Status::Fail, detail, fix);
    }

    pub(super) fn failed(&self) -> bool {
        self.done.iter().any(|c| c.status == Status::Fail)
    }

    pub(super) fn finish(mut self, test_event_id: Option<String>) -> Report {
        let blocker = self
            .done
            .iter()
            .find(|c| c.status == Status::Fail)
            .map(|c| c.name);
        let streaming = if self.streaming {
            &super::streaming::STREAMING_CHECKS[..]
        } else {
            &[]
        };
        for &name in CHECKS.iter().chain(streaming) {
            if self.done.iter().all(|c| c.name != name) {
                let detail = match blocker {
                    Some(b) => format!("skipped: the {b} check failed"),
                    None => "skipped: check mode writes nothing".into(),
                };
                self.done.push(Check {
                    name,
                    status: Status::Skip,
                    detail,
                    fix: String::new(),
                    duration_ms: 0,
                });
            }
        }
        Report {
            ok: !self.failed(),
            checks: self.done,
            test_event_id,
            rejections_last_24h: self.rejections,
        }
    }
}
