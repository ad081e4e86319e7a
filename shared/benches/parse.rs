//! Parse + validate + encode throughput on realistic events (the ingest hot path).
//!
//! Run: `cargo bench -p tracklayer --bench parse`. Throughput is reported in events/s
//! ("elem/s"); the contract asks for at least 500,000 events/s on one core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use testkit::sample::SampleStream;
use tracklayer::event::parse_body;
use tracklayer::rows::JsonArray;

const EVENTS: usize = 10_000;

/// Statement-sized chunks, as the loader cuts them (about 1 MB each).
const CHUNK_BYTES: usize = 900_000;

/// Parses every body and encodes events and rejections into chunked JSON arrays, as the
/// ingest function does with one SQS batch; a sent chunk's buffer carries the next one.
/// Returns (events, rejections, chunks).
fn load_batch(
    bodies: &[String],
    message_ids: &[String],
    buffer: &mut String,
) -> (usize, usize, usize) {
    let mut events = JsonArray::reuse(std::mem::take(buffer));
    let mut rejections = JsonArray::new();
    let (mut loaded, mut chunks) = (0, 0);
    for (body, message_id) in bodies.iter().zip(message_ids) {
        for parsed in parse_body(body) {
            match parsed {
                Ok(event) => events.push_event(&event),
                Err(rejection) => rejections.push_rejection(&rejection, message_id),
            }
        }
        if events.len_bytes() > CHUNK_BYTES {
            loaded += events.len();
            chunks += 1;
            let sent = black_box(events.finish());
            events = JsonArray::reuse(sent);
        }
    }
    loaded += events.len();
    let rejected = rejections.len();
    *buffer = black_box(events.finish());
    black_box(rejections.finish());
    (loaded, rejected, chunks + 1)
}

fn bench(c: &mut Criterion) {
    let bodies: Vec<String> = SampleStream::new(2026)
        .bad_every(100)
        .take(EVENTS)
        .collect();
    let message_ids: Vec<String> = (0..EVENTS)
        .map(|i| format!("6f1c2a4e-8b3d-4c5e-9f70-{i:012x}"))
        .collect();
    let average = bodies.iter().map(String::len).sum::<usize>() / bodies.len();
    let mut buffer = String::with_capacity(CHUNK_BYTES + 64 * 1024);
    let (loaded, rejected, _) = load_batch(&bodies, &message_ids, &mut buffer);
    assert_eq!((loaded, rejected), (EVENTS - EVENTS / 100, EVENTS / 100));

    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(
        format!("parse_validate_encode/{EVENTS}_single_event_bodies_{average}B_1pct_bad"),
        |b| b.iter(|| load_batch(black_box(&bodies), &message_ids, &mut buffer)),
    );

    // The same events as NDJSON bodies of 100 lines each.
    let ndjson: Vec<String> = bodies.chunks(100).map(|c| c.join("\n")).collect();
    let batch_ids = &message_ids[..ndjson.len()];
    group.bench_function("parse_validate_encode/ndjson_bodies_of_100", |b| {
        b.iter(|| load_batch(black_box(&ndjson), batch_ids, &mut buffer))
    });

    // Array bodies of 100 events; cut-off JSON would reject a whole array, so it is left out.
    let whole: Vec<&String> = bodies
        .iter()
        .filter(|json| serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok())
        .collect();
    let arrays: Vec<String> = whole
        .chunks(100)
        .map(|chunk| {
            let texts: Vec<&str> = chunk.iter().map(|json| json.as_str()).collect();
            format!("[{}]", texts.join(","))
        })
        .collect();
    group.throughput(Throughput::Elements(whole.len() as u64));
    group.bench_function("parse_validate_encode/array_bodies_of_100", |b| {
        b.iter(|| {
            load_batch(
                black_box(&arrays),
                &message_ids[..arrays.len()],
                &mut buffer,
            )
        })
    });
    group.finish();

    // The floor in the same run: serde_json reading each body once and keeping nothing. On a
    // shared machine whose speed drifts, the ratio to it says more than events/s alone.
    let mut reference = c.benchmark_group("reference");
    reference.throughput(Throughput::Elements(EVENTS as u64));
    reference.bench_function(format!("serde_json_skip_only/{EVENTS}_bodies"), |b| {
        b.iter(|| {
            bodies
                .iter()
                .filter(|body| {
                    serde_json::from_str::<serde::de::IgnoredAny>(black_box(body.as_str())).is_ok()
                })
                .count()
        })
    });
    reference.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
