//! SQS message bodies of [`SampleStream`] events: one event each, NDJSON of several, or now and
//! then a JSON array, with what each body holds so a test can account for every event.

use crate::sample::{Defect, SampleStream, SplitMix64};

/// How events are grouped into message bodies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Events per body, written as NDJSON when more than one (`1`: one event object).
    pub per_message: usize,
    /// Share of bodies, from `0.0` to `1.0`, that are a JSON array instead (only with
    /// `per_message == 1`).
    pub array_share: f64,
    /// Smallest and largest number of events in an array body.
    pub array_sizes: (usize, usize),
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            per_message: 1,
            array_share: 0.0,
            array_sizes: (2, 12),
        }
    }
}

/// One message body and the events in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The body as SQS would deliver it.
    pub body: String,
    /// How many events the body holds.
    pub events: usize,
    /// The defects of its bad events, in body order.
    pub defects: Vec<Defect>,
    /// Whether the body is a JSON array.
    pub array: bool,
}

/// `events` events of `stream` as message bodies of `shape`; the last body may hold fewer.
/// Array sizes and which bodies are arrays come from `seed`, apart from the events' own.
pub fn messages(mut stream: SampleStream, events: usize, shape: Shape, seed: u64) -> Vec<Message> {
    let mut rng = SplitMix64::new(seed ^ 0x6D65_7373_6167_6573);
    let (low, high) = shape.array_sizes;
    let mut out = Vec::new();
    let mut left = events;
    while left > 0 {
        let array = shape.per_message == 1
            && left >= 2
            && shape.array_share > 0.0
            && (rng.below(1_000_000) as f64) < shape.array_share * 1_000_000.0;
        let size = if array {
            (low + rng.below((high - low + 1) as u64) as usize).clamp(2, left)
        } else {
            shape.per_message.min(left)
        };
        let samples: Vec<_> = (0..size)
            .map(|_| {
                if array {
                    stream.next_sample_in_array()
                } else {
                    stream.next_sample()
                }
            })
            .collect();
        let texts: Vec<&str> = samples.iter().map(|sample| sample.json.as_str()).collect();
        let body = if array {
            format!("[{}]", texts.join(","))
        } else {
            texts.join("\n")
        };
        out.push(Message {
            body,
            events: size,
            defects: samples.iter().filter_map(|sample| sample.defect).collect(),
            array,
        });
        left -= size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracklayer::event::parse_body;

    fn parsed_counts(message: &Message) -> (usize, Vec<&'static str>) {
        let parsed = parse_body(&message.body);
        let valid = parsed.iter().filter(|row| row.is_ok()).count();
        let reasons = parsed
            .iter()
            .filter_map(|row| row.as_ref().err().map(|rejection| rejection.reason.code()))
            .collect();
        (valid, reasons)
    }

    #[test]
    fn every_body_parses_to_its_stated_events_and_defects() {
        let shape = Shape {
            array_share: 0.3,
            ..Shape::default()
        };
        let stream = SampleStream::new(11).bad_every(7).id_prefix("t");
        let all = messages(stream, 3_000, shape, 11);
        assert_eq!(all.iter().map(|m| m.events).sum::<usize>(), 3_000);
        assert!(all.iter().any(|m| m.array));
        let mut bad = 0;
        for message in &all {
            let (valid, reasons) = parsed_counts(message);
            let expected: Vec<_> = message.defects.iter().map(|d| d.reason().code()).collect();
            assert_eq!(reasons, expected, "{}", message.body);
            assert_eq!(valid + reasons.len(), message.events, "{}", message.body);
            if message.array {
                assert!(!message.defects.contains(&Defect::BrokenJson));
            }
            bad += message.defects.len();
        }
        assert_eq!(bad, 3_000 / 7);
    }

    #[test]
    fn ndjson_bodies_hold_per_message_events_and_the_last_the_rest() {
        let shape = Shape {
            per_message: 100,
            ..Shape::default()
        };
        let all = messages(SampleStream::new(2).bad_every(50), 1_050, shape, 2);
        let sizes: Vec<usize> = all.iter().map(|m| m.events).collect();
        assert_eq!(sizes, [vec![100; 10], vec![50]].concat());
        for message in &all {
            let (valid, reasons) = parsed_counts(message);
            assert_eq!(valid + reasons.len(), message.events);
            assert_eq!(reasons.len(), message.defects.len());
        }
    }
}
