//! `questline replay`: the engine offline, deterministic byte for byte.
//!
//! Reads JSON lines, maps each with the given mapping (the native action format without
//! one), evaluates them in order with the same engine code as the worker, and writes the
//! output events as JSON lines. A bad line becomes a `dead_letter` event and the run goes on.
//! With `--now` the clock is never read: actions without `occurredAt` take that time.
//!
//! With `--records` each line is one consumed Kafka record ([`DumpedRecord`], a topic dump):
//! its topic picks the mapping as in the worker, and its real topic, partition, offset and
//! timestamp are the source and the record time, so the events and their ids are the ones the
//! worker emits for the same records.

use crate::core::catalog::Catalog;
use crate::core::decode::{self, Rejection};
use crate::core::engine::{Engine, Internal};
use crate::core::events::Event;
use crate::core::mapping::{CompiledMapping, Mapping};
use crate::core::model::{SourceRef, DEFAULT_TENANT};
use crate::core::reject::RejectKind;
use crate::failure::Failure;
use crate::files;
use crate::pipeline::catalog_feed::CatalogSource;
use crate::pipeline::input::{Input, Inputs};
use crate::pipeline::log::{InRecord, RecordKey};
use anyhow::Context as _;
use chrono::{DateTime, TimeZone, Utc};
use clap::Args;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The `source.topic` of replayed records; `source.offset` is the 1-based line number.
pub const REPLAY_TOPIC: &str = "replay";

#[derive(Debug, Args)]
#[command(
    override_usage = "questline replay --catalog PATH [--mapping FILE] [--input FILE] [--now RFC3339]\n       \
                      questline replay --records [--catalog PATH] [--mappings DIR | --mapping FILE] \
                      [--config FILE]... [--input FILE] [--now RFC3339]",
    after_help = RECORDS_HELP
)]
pub struct ReplayArgs {
    /// The catalog directory (or a single catalog file); with --config, defaults to its
    /// catalog.path.
    #[arg(long, required_unless_present = "config")]
    pub catalog: Option<PathBuf>,
    /// A mapping file; without one, lines are native actions. With --records it applies to
    /// the topics it names.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// JSON lines to read; standard input without one.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The time of every record (RFC 3339); the clock is never read when given. With
    /// --records, only records without a timestamp take it.
    #[arg(long, value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,
    /// Each line is one consumed Kafka record (a topic dump, see below): the events carry the
    /// worker's event ids.
    #[arg(long)]
    pub records: bool,
    /// With --records: the mapping files, each applied to the topics it names (the worker's
    /// mappings.dir).
    #[arg(long, requires = "records", conflicts_with = "mapping")]
    pub mappings: Option<PathBuf>,
    /// With --records: the worker's configuration file, for its topic names (topics.*) and,
    /// unless given here, its catalog.path and mappings.dir. Repeat it to layer files as the
    /// worker does; the environment applies as it does to the worker.
    #[arg(long, value_name = "FILE", requires = "records")]
    pub config: Vec<PathBuf>,
    /// With --records: where the inventory and amount stages' traffic comes from. `recorded`
    /// (default): from the dump's request and response topics, as the worker consumed them,
    /// which reproduces the worker's winners of limited rewards exactly and pays programmatic
    /// events the amounts the worker recorded, calling no endpoint. `in-process`: answered at
    /// once in-process (programmatic events pay their fallback), for dumps of the input topics
    /// alone.
    #[arg(long, requires = "records", value_enum, default_value_t = InventoryTraffic::Recorded)]
    pub inventory: InventoryTraffic,
}

/// Where `replay --records` takes the inventory stage's requests and answers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InventoryTraffic {
    Recorded,
    InProcess,
}

impl InventoryTraffic {
    fn internal(self) -> Internal {
        match self {
            InventoryTraffic::Recorded => Internal::Recorded,
            InventoryTraffic::InProcess => Internal::Loopback,
        }
    }
}

const RECORDS_HELP: &str = "\
With --records, each input line is one consumed Kafka record:
  {\"topic\": \"questline.actions\", \"partition\": 0, \"offset\": 42, \"timestamp\": 1764064800000,
   \"key\": \"151631\", \"value\": \"{\\\"userId\\\": \\\"151631\\\", \\\"triggerId\\\": 1}\"}
`timestamp` is in milliseconds since the epoch (null or absent: --now, else the clock); `key` is
optional; `value` is the record value as text, or `valueBase64` its bytes (schemas/kafka-record.v1.json).
Records are routed as the worker routes them: the mapping that names the topic, the commands
topic as commands, the inventory stage's request and response topics to that stage, the amount
responses to the users they pay: a dump of every topic a worker read reproduces its winners of
limited rewards exactly and pays programmatic events the recorded amounts without calling their
endpoints (with a dump of the input topics alone, pass --inventory in-process); any other topic
and any malformed line become dead letters. An amount response pays only after the record that
asked for it: dump the input topics before the amount-responses topic. Keep each partition's records in offset
order; a record at or below an offset already replayed for its partition is skipped, as the
worker's watermark skips redeliveries. The worker coalesces progress.updated per batch, so it
publishes a subset of replay's progress events; every other event is the same, id included.";

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time: {e}"))
}

fn config_error(e: impl std::fmt::Display) -> Failure {
    Failure::Config(e.to_string())
}

pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let settings = if args.config.is_empty() {
        None
    } else {
        Some(crate::settings::Settings::load(&args.config).map_err(config_error)?)
    };
    let catalog_path = match (&args.catalog, &settings) {
        (Some(path), _) => path.clone(),
        (None, Some(s)) => s.catalog.path.clone(),
        (None, None) => return Err(config_error("--catalog is required")),
    };
    let history = files::load_catalog_history(&catalog_path).map_err(config_error)?;
    let catalog = Arc::clone(history.latest());
    // Plain lines take one mapping (native without --mapping); records, the worker's routing.
    let mode = if args.records {
        let mappings = records_mappings(&args, settings.as_ref())?;
        let topics = settings.map(|s| s.topics).unwrap_or_default();
        Mode::Records(Inputs::with_catalog(
            CatalogSource::Fixed(Arc::new(history)),
            &mappings,
            &topics,
        ))
    } else {
        Mode::Lines(Box::new(
            match &args.mapping {
                Some(path) => files::load_mapping(path).map_err(config_error)?,
                None => Mapping::native(),
            }
            .into(),
        ))
    };
    let input: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| Failure::Config(format!("{}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let stdout = std::io::stdout().lock();
    match mode {
        Mode::Lines(mapping) => {
            replay(catalog, &mapping, input, stdout, args.now).map_err(Failure::Runtime)
        }
        Mode::Records(inputs) => {
            let skipped = replay_records(&inputs, args.inventory, input, stdout, args.now)
                .map_err(Failure::Runtime)?;
            if skipped > 0 {
                eprintln!(
                    "questline replay: skipped {skipped} records at or below an offset already \
                     replayed for their partition"
                );
            }
            Ok(())
        }
    }
}

/// What the input lines are.
enum Mode {
    /// Records' values, all through one mapping, compiled once.
    Lines(Box<CompiledMapping>),
    /// Topic dump lines, routed by topic as in the worker.
    Records(Inputs),
}

/// The mappings of `--records`, as the worker's: `--mapping` (for the topics it names),
/// `--mappings`, or the configuration's `mappings.dir`.
fn records_mappings(
    args: &ReplayArgs,
    settings: Option<&crate::settings::Settings>,
) -> Result<Vec<Mapping>, Failure> {
    if let Some(path) = &args.mapping {
        let mapping = files::load_mapping(path).map_err(config_error)?;
        if mapping.topics.is_empty() {
            return Err(Failure::Config(format!(
                "{}: names no topics; with --records a mapping applies to the topics it names",
                path.display()
            )));
        }
        return Ok(vec![mapping]);
    }
    let dir = match (&args.mappings, settings) {
        (Some(dir), _) => dir,
        (None, Some(s)) if !s.mappings.dir.as_os_str().is_empty() => &s.mappings.dir,
        _ => return Ok(Vec::new()),
    };
    files::load_mappings(dir).map_err(config_error)
}

/// The replay loop, over any reader and writer (tests call it directly).
pub fn replay(
    catalog: Arc<Catalog>,
    mapping: &CompiledMapping,
    input: impl BufRead,
    output: impl Write,
    now: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let mut engine = Engine::new(catalog);
    let mut out = BufWriter::new(output);
    let clock = now.unwrap_or_else(Utc::now);
    for_each_line(input, |number, line| {
        let source = line_source(number);
        let processed = engine.process_record(mapping, line, &source, clock);
        write_events(&mut out, &processed.events)
    })?;
    out.flush().context("writing output")?;
    Ok(())
}

/// The replay loop of a topic dump (`--records`): each line a [`DumpedRecord`], routed and
/// evaluated as the worker does. Returns how many records were skipped as redeliveries.
pub fn replay_records(
    inputs: &Inputs,
    inventory: InventoryTraffic,
    input: impl BufRead,
    output: impl Write,
    now: Option<DateTime<Utc>>,
) -> anyhow::Result<u64> {
    let mut engine = Engine::with_history(inputs.history(), inventory.internal());
    let mut out = BufWriter::new(output);
    let clock = now.unwrap_or_else(Utc::now);
    // Per topic-partition, the last offset replayed: the worker's watermark.
    let mut applied: FxHashMap<(String, i32), i64> = FxHashMap::default();
    let mut skipped = 0;
    let topics = inputs.topics();
    let read: FxHashSet<&str> = topics.iter().map(String::as_str).collect();
    for_each_line(input, |number, line| {
        let record = match DumpedRecord::parse(line, clock) {
            Ok(record) => record,
            Err(reason) => {
                let rejection = Rejection::new(
                    RejectKind::NotJson,
                    format!("record: {reason}"),
                    None,
                    None,
                    DEFAULT_TENANT,
                );
                let event = decode::dead_letter(&rejection, line, &line_source(number), clock);
                return write_events(&mut out, &[event]);
            }
        };
        let last = applied
            .entry((record.topic.to_string(), record.partition))
            .or_insert(-1);
        if record.offset <= *last {
            skipped += 1;
            return Ok(());
        }
        *last = record.offset;
        if record.topic == inputs.catalog_topic() {
            // A catalog version: applied (or refused) as every worker does. It must come
            // before the records it governs: dump the catalog topic first.
            match serde_json::from_slice(&record.payload) {
                Ok(version) => {
                    if let Err(refusal) = engine.apply_catalog(version) {
                        eprintln!(
                            "replay: catalog record {} refused: {refusal}",
                            record.offset
                        );
                    }
                }
                Err(e) => eprintln!("replay: catalog record {} skipped: {e}", record.offset),
            }
            return Ok(());
        }
        let source = SourceRef::new(record.topic, record.partition, record.offset);
        let at = record.timestamp;
        let input = if read.contains(record.topic.as_str()) {
            inputs.decode(&record, engine.catalog_at(at))
        } else {
            Input::DeadLetter(Rejection::new(
                RejectKind::Internal,
                format!(
                    "record: no mapping for topic '{}' (give --mappings, --mapping or --config)",
                    record.topic
                ),
                None,
                None,
                DEFAULT_TENANT,
            ))
        };
        let events = engine.process(&input, &record.payload, &source, at).events;
        write_events(&mut out, &events)
    })?;
    out.flush().context("writing output")?;
    Ok(skipped)
}

/// Where a line of plain input (or a malformed dump line) comes from: `replay:0:<line>`.
fn line_source(number: usize) -> SourceRef {
    SourceRef::new(REPLAY_TOPIC, 0, number as i64)
}

/// Calls `each` with the 1-based number and bytes of every non-blank line (`\r\n` too).
fn for_each_line(
    input: impl BufRead,
    mut each: impl FnMut(usize, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for (index, line) in input.split(b'\n').enumerate() {
        let mut line = line.context("reading input")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        each(index + 1, &line)?;
    }
    Ok(())
}

fn write_events(out: &mut impl Write, events: &[Event]) -> anyhow::Result<()> {
    for event in events {
        serde_json::to_writer(&mut *out, event).context("writing output")?;
        out.write_all(b"\n").context("writing output")?;
    }
    Ok(())
}

/// The latest record timestamp a dump line may carry: 9999-12-31T23:59:59.999Z.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// One consumed Kafka record as a line of a topic dump, the input of `replay --records`
/// (`schemas/kafka-record.v1.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DumpedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch (create or log-append time); `None` when the broker
    /// reported none (the worker then takes the current time).
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// The record key as text (informational: the engine reads the user from the value).
    #[serde(default)]
    pub key: Option<String>,
    /// The value, when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value's bytes in standard base64, when it is not UTF-8 (never null).
    #[serde(
        default,
        rename = "valueBase64",
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value_base64: Option<String>,
}

/// An optional field that, when present, may not be null.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

impl DumpedRecord {
    /// The dump line of a consumed record: the value as text when it is UTF-8, else base64.
    pub fn of(record: &InRecord) -> DumpedRecord {
        use base64::Engine as _;
        let (value, value_base64) = match std::str::from_utf8(&record.payload) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&record.payload)),
            ),
        };
        DumpedRecord {
            topic: record.topic.to_string(),
            partition: record.partition,
            offset: record.offset,
            timestamp: Some(record.timestamp.timestamp_millis()),
            key: record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value,
            value_base64,
        }
    }

    /// The consumed record a dump line describes; `now` is the time of one without a
    /// timestamp. The error says what is wrong with the line.
    pub fn parse(line: &[u8], now: DateTime<Utc>) -> Result<InRecord, String> {
        let dumped: DumpedRecord = serde_json::from_slice(line)
            .map_err(|e| format!("not a valid record dump line: {e}"))?;
        dumped.into_record(now)
    }

    /// The consumed record this line describes; `now` is the time of one without a timestamp.
    pub fn into_record(self, now: DateTime<Utc>) -> Result<InRecord, String> {
        use base64::Engine as _;
        let invalid = |what: &str| Err(format!("not a valid record dump line: {what}"));
        if self.topic.is_empty() {
            return invalid("empty topic");
        }
        if self.partition < 0 || self.offset < 0 {
            return invalid("negative partition or offset");
        }
        let timestamp = match self.timestamp {
            None => now,
            Some(ms) => match Utc.timestamp_millis_opt(ms).single() {
                Some(at) if (0..=MAX_TIMESTAMP_MS).contains(&ms) => at,
                _ => return invalid(&format!("timestamp {ms} out of range")),
            },
        };
        let payload = match (self.value, self.value_base64) {
            (Some(_), Some(_)) => return invalid("both value and valueBase64"),
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => {
                match base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes()) {
                    Ok(bytes) => bytes,
                    Err(e) => return invalid(&format!("valueBase64: {e}")),
                }
            }
            (None, None) => Vec::new(),
        };
        Ok(InRecord {
            topic: self.topic.into(),
            partition: self.partition,
            offset: self.offset,
            key: self.key.map(|key| RecordKey::from_slice(key.as_bytes())),
            payload,
            timestamp,
            // A dump line has no headers (schemas/kafka-record.v1.json).
            headers: Vec::new(),
        })
    }
}
