//! Prints realistic TrackLayer events for a seed and a size, for the Python benchmarks, the
//! chaos test and the dbt test (infra/local's `harness.sample_events` runs it).
//!
//! ```text
//! sample-events --events N [--seed S] [--bad-every N] [--defects a,b,...] [--id-prefix P]
//!     [--format events|messages] [--per-message N] [--array-share F] [--array-sizes LO-HI]
//! ```
//!
//! `--format events` (the default) prints one event per line: NDJSON that is itself one valid
//! message body. `--format messages` prints one JSON object per SQS message body:
//! `{"body": "...", "events": 3, "array": false, "defects": [{"kind": "broken_json",
//! "reason": "invalid_json"}]}`, bodies shaped by `--per-message` (NDJSON of N events) or
//! `--array-share` (that share of bodies a JSON array of `--array-sizes` events, default
//! 2-12). Defect kinds: missing_merchant_id, comma_decimal_value, four_letter_currency,
//! properties_array, broken_json.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use serde_json::json;
use testkit::messages::{Shape, messages};
use testkit::sample::{Defect, SampleStream};

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    events: usize,
    seed: u64,
    bad_every: u32,
    defects: Vec<Defect>,
    id_prefix: Option<String>,
    messages: bool,
    shape: Shape,
}

const USAGE: &str = "usage: sample-events --events N [--seed S] [--bad-every N] [--defects a,b] \
[--id-prefix P] [--format events|messages] [--per-message N] [--array-share F] [--array-sizes LO-HI]";

fn number<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{option}: {value:?} is not a number of the expected kind"))
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        events: 0,
        seed: 20_261_102,
        bad_every: 0,
        defects: Defect::ALL.to_vec(),
        id_prefix: None,
        messages: false,
        shape: Shape::default(),
    };
    let mut events = None;
    let mut args = args.peekable();
    while let Some(option) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{option} needs a value\n{USAGE}"))?;
        match option.as_str() {
            "--events" => events = Some(number(&option, &value)?),
            "--seed" => options.seed = number(&option, &value)?,
            "--bad-every" => options.bad_every = number(&option, &value)?,
            "--defects" => {
                options.defects = value
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(|name| {
                        Defect::from_name(name).ok_or_else(|| {
                            let known: Vec<_> = Defect::ALL.iter().map(|d| d.name()).collect();
                            format!(
                                "--defects: unknown kind {name:?}; known: {}",
                                known.join(", ")
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--id-prefix" => options.id_prefix = Some(value),
            "--format" => {
                options.messages = match value.as_str() {
                    "events" => false,
                    "messages" => true,
                    _ => {
                        return Err(format!(
                            "--format: {value:?} is neither events nor messages"
                        ));
                    }
                }
            }
            "--per-message" => options.shape.per_message = number(&option, &value)?,
            "--array-share" => options.shape.array_share = number(&option, &value)?,
            "--array-sizes" => {
                let (low, high) = value
                    .split_once('-')
                    .ok_or_else(|| format!("--array-sizes: {value:?} is not LO-HI"))?;
                options.shape.array_sizes = (number(&option, low)?, number(&option, high)?);
            }
            _ => return Err(format!("unknown option {option}\n{USAGE}")),
        }
    }
    options.events = events.ok_or_else(|| format!("--events is required\n{USAGE}"))?;
    let shape = &options.shape;
    if shape.per_message == 0 {
        return Err("--per-message: at least 1".into());
    }
    if !(0.0..=1.0).contains(&shape.array_share) {
        return Err("--array-share: a share from 0 to 1".into());
    }
    if shape.array_share > 0.0 && shape.per_message > 1 {
        return Err("--array-share and --per-message: choose one body shape".into());
    }
    let (low, high) = shape.array_sizes;
    if low < 2 || high < low {
        return Err("--array-sizes: LO at least 2 and HI at least LO".into());
    }
    let shaped = shape.per_message > 1 || shape.array_share > 0.0;
    if shaped && !options.messages {
        return Err("--per-message and --array-share need --format messages".into());
    }
    Ok(options)
}

fn run(options: Options, out: &mut impl Write) -> std::io::Result<()> {
    let mut stream = SampleStream::new(options.seed)
        .bad_every(options.bad_every)
        .defects(&options.defects);
    if let Some(prefix) = options.id_prefix {
        stream = stream.id_prefix(prefix);
    }
    if !options.messages {
        for json in stream.take(options.events) {
            writeln!(out, "{json}")?;
        }
        return Ok(());
    }
    for message in messages(stream, options.events, options.shape, options.seed) {
        let defects: Vec<_> = message
            .defects
            .iter()
            .map(|defect| json!({"kind": defect.name(), "reason": defect.reason().code()}))
            .collect();
        let line = json!({
            "body": message.body,
            "events": message.events,
            "array": message.array,
            "defects": defects,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("sample-events: {message}");
            return ExitCode::from(2);
        }
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    match run(options, &mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sample-events: writing the events failed: {error}");
            ExitCode::FAILURE
        }
    }
}
