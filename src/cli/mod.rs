//! The command line (docs/cli.md): one module per command.
//!
//! Exit codes: 0 success, 2 bad usage or configuration, 1 runtime failure.

pub mod catalog;
pub mod check;
pub mod config;
pub mod replay;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A gamification and rewards engine that runs as a Kafka stream-processing worker.
#[derive(Debug, Parser)]
#[command(name = "questline", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate JSON lines offline and deterministically; write output events as JSON lines.
    Replay(replay::ReplayArgs),
    /// Validate the catalog and mappings; report every error with file and line.
    Check(check::CheckArgs),
    /// The Kafka worker (consumer group member).
    Run(RunArgs),
    /// The HTTP sidecar alone, against the configured store.
    Serve(ConfigArgs),
    /// The catalog log: publish a directory as new versions, write the versions in force
    /// back as files, list them.
    Catalog(catalog::CatalogArgs),
    /// Create or upgrade the ScyllaDB schema (idempotent).
    Migrate(ConfigArgs),
    /// Print the effective configuration (defaults, files, environment) as TOML, secrets
    /// redacted; refuse it, as `run` would, if it is invalid.
    Config(ConfigArgs),
    /// The whole engine on the embedded defaults, no services: feeds the example actions,
    /// prints the events, then serves the sidecar until Ctrl-C.
    Demo(crate::demo::DemoArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// A TOML configuration file. Repeat it to layer files: a later file wins, key by key.
    /// The environment wins over every file: QUESTLINE__SECTION__KEY for any key,
    /// QUESTLINE_KAFKA_PROPERTY_<NAME> for librdkafka properties,
    /// QUESTLINE_HTTP_AUTH_CLIENT_<id> for client secrets, each also as <VARIABLE>_FILE.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Also serve the HTTP sidecar in this process.
    #[arg(long)]
    pub serve: bool,
}

pub use crate::failure::Failure;

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Check(args) => check::run(args),
        Command::Run(args) => {
            let settings = crate::app::settings_from(&args.config.config)?;
            let telemetry = settings.telemetry.clone();
            traced(&telemetry, crate::app::run_worker(settings, args.serve))
        }
        Command::Serve(args) => {
            let settings = crate::app::settings_from(&args.config)?;
            let telemetry = settings.telemetry.clone();
            traced(&telemetry, crate::app::serve_sidecar(settings))
        }
        Command::Demo(args) => {
            crate::telemetry::init_tracing_at("warn");
            runtime()?.block_on(crate::app::run_demo(args))
        }
        Command::Migrate(args) => {
            let settings = crate::app::settings_from(&args.config)?;
            runtime()?.block_on(crate::app::migrate(settings))
        }
        Command::Config(args) => config::run(args),
        Command::Catalog(args) => catalog::run(args),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    crate::telemetry::init_tracing();
    new_runtime()
}

fn new_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))
}

/// How long a long-lived command's process waits, once the command has returned, for
/// blocking calls still in flight (a metadata request of the broker watch, a read of the
/// catalog log): by then every batch is committed and nothing they do is needed. Dropping the
/// runtime would wait for them without a bound, and a SIGTERM'd worker must exit promptly.
const BLOCKING_WAIT_AT_EXIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs a long-lived command (`run`, `serve`) with its spans exported as `telemetry` asks;
/// once it has returned (SIGTERM included), the spans still buffered are sent before the
/// process exits, by the runtime's workers, which are still running then.
fn traced(
    telemetry: &crate::settings::TelemetrySettings,
    command: impl std::future::Future<Output = Result<(), Failure>>,
) -> Result<(), Failure> {
    let runtime = new_runtime()?;
    let exporter = {
        let _inside = runtime.enter();
        crate::telemetry::init_tracing_exporting(telemetry).map_err(Failure::Config)?
    };
    let result = runtime.block_on(command);
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    runtime.shutdown_timeout(BLOCKING_WAIT_AT_EXIT);
    result
}
