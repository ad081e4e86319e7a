//! The ledger of the staged chunks taken in one run: a staged message is deleted only once
//! every statement holding its rows landed, and released if any failed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use uuid::Uuid;

/// What became of a staged chunk once its last statement answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Settled {
    /// Every row landed: delete the message (every receipt of it).
    Landed(Vec<String>),
    /// Some rows may not have landed: release the message for a later run.
    Failed(Vec<String>),
}

/// How a received staging message relates to the chunks taken this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Taken {
    /// First seen this run: pack it.
    New,
    /// Another delivery of a chunk in flight: its receipt joins the chunk's.
    Copy,
    /// A chunk that landed this run, or failed and stays for a later run: delete the copy if
    /// it landed, otherwise leave it alone.
    Done {
        /// Whether it landed.
        landed: bool,
    },
}

#[derive(Debug)]
enum Entry {
    InFlight {
        receipts: Vec<String>,
        parts: usize,
        sealed: bool,
        failed: bool,
    },
    Done {
        landed: bool,
    },
}

/// The staged chunks taken this run: a message is deleted only after every statement holding
/// some of its rows succeeded, and released if any failed.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    chunks: Mutex<HashMap<Uuid, Entry>>,
    /// Receipts of messages received but not taken yet: they wait for the packer, which may
    /// be waiting for statement slots, and must stay hidden meanwhile like the chunks in flight.
    waiting: Mutex<HashSet<String>>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records messages just received, before the packer takes them.
    pub fn received<'a>(&self, receipts: impl IntoIterator<Item = &'a str>) {
        self.waiting()
            .extend(receipts.into_iter().map(str::to_owned));
    }

    /// The packer has the message with `receipt`: it no longer waits.
    pub fn picked(&self, receipt: &str) {
        self.waiting().remove(receipt);
    }

    /// Records a delivery of `chunk`.
    pub fn take(&self, chunk: Uuid, receipt: String) -> Taken {
        let mut chunks = self.lock();
        match chunks.get_mut(&chunk) {
            None => {
                chunks.insert(
                    chunk,
                    Entry::InFlight {
                        receipts: vec![receipt],
                        parts: 0,
                        sealed: false,
                        failed: false,
                    },
                );
                Taken::New
            }
            Some(Entry::InFlight { receipts, .. }) => {
                receipts.push(receipt);
                Taken::Copy
            }
            Some(Entry::Done { landed }) => Taken::Done { landed: *landed },
        }
    }

    /// All of `chunk`'s rows are now in `parts` statements (or it could not be packed).
    pub fn seal(&self, chunk: Uuid, parts: usize, packed: bool) -> Option<Settled> {
        let mut chunks = self.lock();
        if let Some(Entry::InFlight {
            parts: p,
            sealed,
            failed,
            ..
        }) = chunks.get_mut(&chunk)
        {
            *p += parts;
            *sealed = true;
            *failed |= !packed;
        }
        settle(&mut chunks, chunk)
    }

    /// A statement holding some of `chunk`'s rows answered.
    pub fn part_done(&self, chunk: Uuid, landed: bool) -> Option<Settled> {
        let mut chunks = self.lock();
        if let Some(Entry::InFlight { parts, failed, .. }) = chunks.get_mut(&chunk) {
            *parts = parts.saturating_sub(1);
            *failed |= !landed;
        }
        settle(&mut chunks, chunk)
    }

    /// Receipts of the chunks still in flight and of the messages waiting for the packer (to
    /// extend their visibility).
    pub fn in_flight_receipts(&self) -> Vec<String> {
        let mut receipts: Vec<String> = self
            .lock()
            .values()
            .filter_map(|e| match e {
                Entry::InFlight { receipts, .. } => Some(receipts.clone()),
                Entry::Done { .. } => None,
            })
            .flatten()
            .collect();
        receipts.extend(self.waiting().iter().cloned());
        receipts
    }

    /// Receipts of chunks never settled and of messages never taken (the run stopped): they
    /// are released.
    pub fn unsettled(&self) -> Vec<String> {
        let mut receipts: Vec<String> = self.waiting().drain().collect();
        let mut chunks = self.lock();
        for entry in chunks.values_mut() {
            if let Entry::InFlight { receipts: r, .. } = entry {
                receipts.append(r);
                *entry = Entry::Done { landed: false };
            }
        }
        receipts
    }
}

fn settle(chunks: &mut HashMap<Uuid, Entry>, chunk: Uuid) -> Option<Settled> {
    let entry = chunks.get_mut(&chunk)?;
    let Entry::InFlight {
        receipts,
        parts: 0,
        sealed: true,
        failed,
    } = entry
    else {
        return None;
    };
    let (receipts, landed) = (std::mem::take(receipts), !*failed);
    *entry = Entry::Done { landed };
    Some(if landed {
        Settled::Landed(receipts)
    } else {
        Settled::Failed(receipts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_settles_when_its_last_statement_answers() {
        let ledger = Ledger::default();
        let a = Uuid::new_v4();
        assert_eq!(ledger.take(a, "r1".into()), Taken::New);
        assert_eq!(ledger.take(a, "r2".into()), Taken::Copy);
        assert_eq!(ledger.seal(a, 2, true), None);
        assert_eq!(ledger.in_flight_receipts(), ["r1", "r2"]);
        assert_eq!(ledger.part_done(a, true), None);
        assert_eq!(
            ledger.part_done(a, true),
            Some(Settled::Landed(vec!["r1".into(), "r2".into()]))
        );
        assert_eq!(ledger.take(a, "r3".into()), Taken::Done { landed: true });
        assert!(ledger.in_flight_receipts().is_empty());
    }

    #[test]
    fn one_failed_part_fails_the_chunk_and_empty_chunks_land_at_once() {
        let ledger = Ledger::default();
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        ledger.take(a, "a".into());
        ledger.seal(a, 2, true);
        assert_eq!(ledger.part_done(a, false), None);
        assert_eq!(
            ledger.part_done(a, true),
            Some(Settled::Failed(vec!["a".into()]))
        );
        assert_eq!(ledger.take(a, "a2".into()), Taken::Done { landed: false });
        ledger.take(b, "b".into());
        assert_eq!(
            ledger.seal(b, 0, true),
            Some(Settled::Landed(vec!["b".into()]))
        );
        ledger.take(c, "c".into());
        assert_eq!(ledger.unsettled(), ["c"]);
        assert!(ledger.unsettled().is_empty());
    }

    #[test]
    fn a_statement_answering_before_its_chunk_is_sealed_does_not_settle_it() {
        let ledger = Ledger::default();
        let a = Uuid::new_v4();
        ledger.take(a, "a".into());
        // The first part was cut into a full statement and answered while the rest is packed.
        assert_eq!(ledger.part_done(a, true), None);
        assert_eq!(ledger.in_flight_receipts(), ["a"]);
        assert_eq!(ledger.seal(a, 1, true), None);
        assert_eq!(
            ledger.part_done(a, true),
            Some(Settled::Landed(vec!["a".into()]))
        );
    }

    #[test]
    fn a_chunk_that_cannot_be_packed_fails_at_once_and_is_not_packed_again() {
        let ledger = Ledger::default();
        let a = Uuid::new_v4();
        ledger.take(a, "a".into());
        assert_eq!(
            ledger.seal(a, 0, false),
            Some(Settled::Failed(vec!["a".into()]))
        );
        assert_eq!(ledger.take(a, "a2".into()), Taken::Done { landed: false });
        assert!(
            ledger.unsettled().is_empty(),
            "a failed chunk is not released twice"
        );
    }

    #[test]
    fn a_stopped_run_releases_every_receipt_of_open_chunks_and_nothing_settled() {
        let ledger = Ledger::default();
        let (open, landed) = (Uuid::new_v4(), Uuid::new_v4());
        ledger.take(open, "o1".into());
        ledger.take(open, "o2".into());
        ledger.seal(open, 2, true);
        ledger.part_done(open, true);
        ledger.take(landed, "l".into());
        ledger.seal(landed, 1, true);
        ledger.part_done(landed, true);
        let mut released = ledger.unsettled();
        released.sort();
        assert_eq!(released, ["o1", "o2"]);
        assert_eq!(
            ledger.take(open, "o3".into()),
            Taken::Done { landed: false }
        );
        assert_eq!(
            ledger.part_done(open, true),
            None,
            "a late answer settles nothing"
        );
        assert!(ledger.in_flight_receipts().is_empty());
    }

    #[test]
    fn a_received_message_stays_hidden_until_taken_and_goes_back_if_never_taken() {
        let ledger = Ledger::default();
        let a = Uuid::from_u128(1);
        ledger.received(["ra", "rb"]);
        assert_eq!(sorted(ledger.in_flight_receipts()), ["ra", "rb"]);
        ledger.picked("ra");
        assert_eq!(ledger.take(a, "ra".into()), Taken::New);
        assert_eq!(sorted(ledger.in_flight_receipts()), ["ra", "rb"]);
        assert_eq!(
            ledger.seal(a, 0, true),
            Some(Settled::Landed(vec!["ra".into()]))
        );
        assert_eq!(ledger.in_flight_receipts(), ["rb"]);
        // The run stopped before the packer took "rb": it is released with the unsettled.
        assert_eq!(ledger.unsettled(), ["rb"]);
        assert!(ledger.in_flight_receipts().is_empty());
    }

    fn sorted(mut receipts: Vec<String>) -> Vec<String> {
        receipts.sort();
        receipts
    }
}
