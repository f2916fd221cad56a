//! `questline replay`: the engine offline, deterministic byte for byte.
//!
//! Reads JSON lines, maps each with the given mapping (the native action format without
//! one), evaluates them in order with the same engine code as the worker, and writes the
//! output events as JSON lines. A bad line becomes a `dead_letter` event and the run goes on.
//! With `--now` the clock is never read: actions without `occurredAt` take that time.

use super::Failure;
use crate::core::engine::Engine;
use crate::core::mapping::Mapping;
use crate::core::model::SourceRef;
use crate::files;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The `source.topic` of replayed records; `source.offset` is the 1-based line number.
pub const REPLAY_TOPIC: &str = "replay";

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The catalog directory (or a single catalog file).
    #[arg(long)]
    pub catalog: PathBuf,
    /// A mapping file; without one, lines are native actions.
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// JSON lines to read; standard input without one.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The time of every record (RFC 3339); the clock is never read when given.
    #[arg(long, value_parser = parse_time)]
    pub now: Option<DateTime<Utc>>,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time: {e}"))
}

pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let catalog = files::load_catalog(&args.catalog).map_err(|e| Failure::Config(e.to_string()))?;
    let mapping = match &args.mapping {
        Some(path) => files::load_mapping(path).map_err(|e| Failure::Config(e.to_string()))?,
        None => Mapping::native(),
    };
    let input: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| Failure::Config(format!("{}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let stdout = std::io::stdout().lock();
    replay(Arc::new(catalog), &mapping, input, stdout, args.now).map_err(Failure::Runtime)
}

/// The replay loop, over any reader and writer (tests call it directly).
pub fn replay(
    catalog: Arc<crate::core::catalog::Catalog>,
    mapping: &Mapping,
    input: impl BufRead,
    output: impl Write,
    now: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let mut engine = Engine::new(catalog);
    let mut out = BufWriter::new(output);
    let clock = now.unwrap_or_else(Utc::now);
    for (index, line) in input.split(b'\n').enumerate() {
        let mut line = line.context("reading input")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let source = SourceRef::new(REPLAY_TOPIC, 0, index as i64 + 1);
        let processed = engine.process_record(mapping, &line, &source, clock);
        for event in &processed.events {
            serde_json::to_writer(&mut out, event).context("writing output")?;
            out.write_all(b"\n").context("writing output")?;
        }
    }
    out.flush().context("writing output")?;
    Ok(())
}
