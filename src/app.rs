//! The composition root: the only place that picks concrete adapters (Kafka or the
//! in-process log, ScyllaDB or the embedded store) and wires them into the pipeline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

use crate::amounts::http::HttpCaller;
use crate::amounts::AmountCaller;
use crate::core::catalog::CatalogHistory;
use crate::core::mapping::Mapping;
use crate::failure::Failure;
use crate::files;
use crate::http::{self, AppState};
use crate::kafka::{self, BrokerWatch, KafkaCatalogLog, KafkaCommandSink, KafkaLog, KafkaProducer};
use crate::pipeline::catalog_feed::{CatalogFeed, CatalogLog, CatalogSource};
use crate::pipeline::exclusive::Exclusive;
use crate::pipeline::input::Inputs;
use crate::pipeline::worker::{Worker, WorkerError, AWAITING_ASSIGNMENT};
use crate::readiness::{Condition, Readiness};
use crate::settings::{Settings, StoreKind};
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::store::scylla::{parse_consistency, ScyllaOptions, ScyllaStore};
use crate::store::StateStore;

mod topics;
use topics::Prepared;

/// The catalog files (every tenant's version 0) and mappings a process runs with; bad ones
/// fail startup with file and line.
pub fn load_configuration(settings: &Settings) -> Result<(CatalogHistory, Vec<Mapping>), Failure> {
    let catalog = files::load_catalog_history(&settings.catalog.path)
        .map_err(|e| Failure::Config(e.to_string()))?;
    let mappings = if settings.mappings.dir.as_os_str().is_empty() {
        Vec::new()
    } else {
        files::load_mappings(&settings.mappings.dir).map_err(|e| Failure::Config(e.to_string()))?
    };
    Ok((catalog, mappings))
}

/// The catalog versions a process evaluates and answers with: the files, then, unless
/// `catalog.follow_log` is off, the versions of the catalog log, read to its end before
/// startup goes on and followed until `stop`.
pub async fn catalog_source(
    settings: &Settings,
    base: CatalogHistory,
    stop: watch::Receiver<bool>,
    producer: &Arc<KafkaProducer>,
) -> Result<CatalogSource, Failure> {
    if !settings.catalog.follow_log {
        return Ok(CatalogSource::Fixed(Arc::new(base)));
    }
    let topic = &settings.topics.catalog;
    if settings.kafka.create_topics {
        kafka::ensure_catalog_topic(&settings.kafka, topic)
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
    }
    let log = KafkaCatalogLog::connect(&settings.kafka, topic, Arc::clone(producer))
        .map_err(|e| Failure::Runtime(e.into()))?;
    follow(settings, base, Arc::new(log), stop).await
}

/// Reads a catalog log to its end, then follows it in the background until `stop`.
async fn follow(
    settings: &Settings,
    base: CatalogHistory,
    log: Arc<dyn CatalogLog>,
    stop: watch::Receiver<bool>,
) -> Result<CatalogSource, Failure> {
    let feed = Arc::new(CatalogFeed::new(
        base,
        log,
        std::time::Duration::from_secs(settings.catalog.activation_delay_seconds),
    ));
    feed.bootstrap(&format!("files of {}", settings.catalog.path.display()))
        .await
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("reading the catalog log: {e}")))?;
    tokio::spawn(Arc::clone(&feed).follow(
        std::time::Duration::from_millis(settings.catalog.refresh_ms),
        wait_for(stop),
    ));
    Ok(CatalogSource::Live(feed))
}

/// Opens the configured store.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn StateStore>, Failure> {
    match settings.store.kind {
        StoreKind::Embedded => {
            let options = EmbeddedOptions {
                cache_bytes: settings.store.cache_mb.saturating_mul(1 << 20),
                checkpoint_bytes: settings.store.journal_mb.saturating_mul(1 << 20),
                direct_journal: settings.store.direct_journal,
                idle_checkpoint: settings.store.idle_checkpoint,
            };
            let store = EmbeddedStore::open_with_options(&settings.store.path, options)
                .map_err(|e| Failure::Runtime(e.into()))?;
            Ok(Arc::new(store))
        }
        StoreKind::Scylla => Ok(Arc::new(connect_scylla(settings).await?)),
    }
}

pub async fn connect_scylla(settings: &Settings) -> Result<ScyllaStore, Failure> {
    let s = &settings.store.scylla;
    let mut options = ScyllaOptions::new(s.nodes.clone(), s.keyspace.clone());
    options.consistency =
        parse_consistency(&s.consistency).map_err(|e| Failure::Config(e.to_string()))?;
    options.replication = format!(
        "{{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
        s.replication_factor
    );
    options.partitions_per_batch = s.partitions_per_batch;
    ScyllaStore::connect_with(options)
        .await
        .map_err(|e| Failure::Runtime(e.into()))
}

/// The amount stage's HTTP caller, as `amounts.*` configures it.
pub fn amount_caller(settings: &Settings) -> Result<Arc<dyn AmountCaller>, Failure> {
    HttpCaller::new(&settings.amounts)
        .map(|caller| Arc::new(caller) as Arc<dyn AmountCaller>)
        .map_err(|e| Failure::Runtime(e.into()))
}

/// A watch that turns true on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing the batch in flight, committing, exiting"),
                _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: finishing the batch in flight, committing, exiting"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        let _ = tx.send(true);
    });
    rx
}

/// The sidecar's state, with image URLs as configured and the process's readiness: the one
/// way every command (`serve`, `run --serve`, `demo`) builds it, so they answer alike.
pub fn app_state(
    catalogs: CatalogSource,
    store: Arc<dyn StateStore>,
    commands: Arc<dyn crate::pipeline::commands::CommandSink>,
    settings: &Settings,
    readiness: Readiness,
) -> Result<AppState, Failure> {
    use crate::http::images::{BucketConfig, ImageUrls, Presigner};
    http::check_settings(&settings.http).map_err(Failure::Config)?;
    let mut state = AppState::new(catalogs.now(), store, commands, settings.http.clone())
        .with_catalogs(catalogs);
    state.ready = readiness;
    state.kwegg =
        http::kwegg::Facade::new(&settings.kwegg, &state.catalog()).map_err(Failure::Config)?;
    state.kickapps = http::kickapps::Sites::new(&settings.kickapps, &state.catalog())
        .map_err(Failure::Config)?;
    http::kickapps::mapping().map_err(Failure::Config)?;
    let images = &settings.http.images;
    state.images = match (&images.s3, &images.base_url) {
        (Some(s3), _) => ImageUrls::Presigned(Box::new(
            Presigner::new(&BucketConfig {
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                region: s3.region.clone(),
                path_style: s3.path_style,
                access_key: s3.access_key.clone(),
                secret_key: s3.secret_key.clone(),
                expires: std::time::Duration::from_secs(s3.expires_seconds),
            })
            .map_err(|e| Failure::Config(format!("http.images.s3: {e}")))?,
        )),
        (None, Some(base)) => ImageUrls::Plain { base: base.clone() },
        (None, None) => ImageUrls::AsIs,
    };
    Ok(state)
}

/// Binds the sidecar's address or fails with a clear message.
pub async fn bind(listen: &str) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Config(format!("http.listen = {listen}: cannot listen: {e}")))
}

/// The worker's own endpoints when it does not serve the API: health, readiness, metrics.
fn ops_router(state: AppState) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(http::ops::healthz))
        .route("/readyz", get(http::ops::readyz))
        .route("/metrics", get(http::ops::metrics))
        .with_state(Arc::new(state))
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Reports the brokers' reachability through `readiness` (not ready after
/// `kafka.unreachable_grace_ms` without an answer) and `questline_broker_up`, until shutdown.
/// The commands topic is the one asked about: both the worker and the sidecar use it.
fn watch_brokers(
    settings: &Settings,
    readiness: &Readiness,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), Failure> {
    let watch = BrokerWatch::new(&settings.kafka, &settings.topics.commands)
        .map_err(|e| Failure::Runtime(e.into()))?;
    tokio::spawn(watch.run(readiness.clone(), wait_for(shutdown.clone())));
    Ok(())
}

/// `questline serve`: the sidecar alone, against the configured store. With the embedded
/// store only one process may open it: use `questline run --serve` there.
pub async fn serve_sidecar(settings: Settings) -> Result<(), Failure> {
    let (base, _) = load_configuration(&settings)?;
    let shutdown = shutdown_signal();
    let producer = kafka::producer(&settings.kafka).map_err(|e| Failure::Runtime(e.into()))?;
    let catalogs = catalog_source(&settings, base, shutdown.clone(), &producer).await?;
    let store = open_store(&settings).await?;
    let sink = KafkaCommandSink::new(producer, &settings.topics.commands);
    let readiness = Readiness::default();
    watch_brokers(&settings, &readiness, &shutdown)?;
    let state = app_state(catalogs, store, Arc::new(sink), &settings, readiness)?;
    let listener = bind(&settings.http.listen).await?;
    http::serve(listener, state, wait_for(shutdown))
        .await
        .map_err(|e| Failure::Runtime(e.into()))
}

/// `questline run`: the Kafka worker. Its HTTP endpoints answer from early in startup (not
/// ready until it has partitions), so that `/readyz` can say what it waits for: the input
/// topics, when one does not exist yet ([`topics`]).
pub async fn run_worker(settings: Settings, serve: bool) -> Result<(), Failure> {
    let (base, mappings) = load_configuration(&settings)?;
    if mappings.is_empty() {
        tracing::warn!(dir = %settings.mappings.dir.display(), "no mappings: only the commands topic is read");
    }
    // A connection that can never work (an untrusted certificate, refused credentials) stops
    // the worker here, with librdkafka's reason.
    kafka::reach(&settings.kafka)
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    let shutdown = shutdown_signal();
    // One producer for the worker's events, the sidecar's commands and the catalog log.
    let producer = kafka::producer(&settings.kafka).map_err(|e| Failure::Runtime(e.into()))?;
    let catalogs = catalog_source(&settings, base, shutdown.clone(), &producer).await?;
    let inputs = Inputs::with_catalog(catalogs.clone(), &mappings, &settings.topics);
    let store = open_store(&settings).await?;
    let sink = KafkaCommandSink::new(Arc::clone(&producer), &settings.topics.commands);
    let readiness = Readiness::default();
    readiness.set(Condition::Assignment, AWAITING_ASSIGNMENT);
    watch_brokers(&settings, &readiness, &shutdown)?;
    let state = app_state(
        catalogs,
        Arc::clone(&store),
        Arc::new(sink),
        &settings,
        readiness.clone(),
    )?;
    let limits = http::server::Limits::new(&settings.http).map_err(Failure::Config)?;
    let listener = bind(&settings.http.listen).await?;
    let app = if serve {
        http::router(state)
    } else {
        ops_router(state)
    };
    // The server stops on SIGTERM, and also when the worker stops on its own (a fatal error):
    // a process whose worker is gone must exit, not keep answering /healthz.
    let (worker_done, worker_stopped) = watch::channel(false);
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let stop = async move {
                tokio::select! {
                    () = wait_for(shutdown) => {}
                    () = wait_for(worker_stopped) => {}
                }
            };
            http::server::serve(listener, app, limits, stop).await
        }
    });
    let result =
        match topics::prepare(&settings, &inputs, &readiness, wait_for(shutdown.clone())).await {
            Ok(Prepared::Ready(partitions)) => {
                consume(
                    &settings, inputs, store, producer, readiness, shutdown, partitions,
                )
                .await
            }
            Ok(Prepared::Stopped) => {
                tracing::info!("stopped while waiting for topics; nothing was read");
                Ok(())
            }
            Err(e) => Err(e),
        };
    let _ = worker_done.send(true);
    tracing::debug!("waiting for the HTTP server");
    let _ = server.await;
    tracing::debug!("HTTP server stopped");
    result
}

/// The worker's consumer group member, from subscribing until it stops (SIGTERM or a fatal
/// error); `partitions`: the topics' common partition count, for the embedded store's guard.
async fn consume(
    settings: &Settings,
    inputs: Inputs,
    store: Arc<dyn StateStore>,
    producer: Arc<KafkaProducer>,
    readiness: Readiness,
    shutdown: watch::Receiver<bool>,
    partitions: Option<i32>,
) -> Result<(), Failure> {
    let log = Arc::new(
        KafkaLog::connect(&settings.kafka, &inputs.topics(), producer)
            .map_err(|e| Failure::Runtime(e.into()))?,
    );
    tracing::info!(topics = ?inputs.topics(), group = %settings.kafka.group_id, "worker starting");
    let worker = Worker::new(
        Arc::clone(&log),
        store,
        inputs,
        settings.topics.clone(),
        settings.pipeline.clone(),
        settings.kafka.group_id.clone(),
        shutdown,
    )
    .with_readiness(readiness)
    .with_amounts(amount_caller(settings)?);
    let worker = match (settings.store.kind, partitions) {
        (StoreKind::Embedded, Some(partitions)) => worker.with_exclusive(Exclusive::new(
            usize::try_from(partitions).unwrap_or(0),
            Duration::from_secs(settings.store.exclusive_grace_seconds),
        )),
        _ => worker,
    };
    let result = worker.run().await;
    tracing::debug!("closing the Kafka clients");
    log.close().await;
    drop(log);
    tracing::debug!("consumer closed");
    result.map(|_| ()).map_err(|e| match e {
        e @ WorkerError::SharedGroup { .. } => Failure::Config(e.to_string()),
        e => Failure::Runtime(e.into()),
    })
}

/// `questline migrate`: creates or upgrades the ScyllaDB schema.
pub async fn migrate(settings: Settings) -> Result<(), Failure> {
    if settings.store.kind != StoreKind::Scylla {
        println!("store.kind is 'embedded': nothing to migrate (the embedded store creates its tables itself)");
        return Ok(());
    }
    let store = connect_scylla(&settings).await?;
    let applied = store
        .migrate()
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    for file in applied {
        println!("applied {file}");
    }
    println!("schema up to date in keyspace '{}'", store.keyspace());
    Ok(())
}

/// Loads settings for a command taking `--config` (any number of files, layered).
pub fn settings_from(files: &[PathBuf]) -> Result<Settings, Failure> {
    Settings::load(files).map_err(|e| Failure::Config(e.to_string()))
}

/// `questline demo`: the worker on the in-process log and an embedded store in a temporary
/// directory, fed the example actions; then the sidecar, built like `serve`'s, until Ctrl-C.
pub async fn run_demo(args: crate::demo::DemoArgs) -> Result<(), Failure> {
    use crate::demo::{self, Examples};
    use crate::pipeline::catalog_feed::MemoryCatalogLog;
    use crate::pipeline::memory::{MemoryCommandSink, MemoryLog};
    let mut settings = Settings {
        kwegg: http::kwegg::demo_settings(),
        kickapps: http::kickapps::demo_settings(),
        ..Settings::default()
    };
    // Changes made through the demo's admin API take effect a second after they are made.
    settings.catalog.activation_delay_seconds = 1;
    settings.http.auth = http::rokwire::demo_auth();
    let examples = Examples::load(&args)?;
    let temp = tempfile::Builder::new()
        .prefix("questline-demo-")
        .tempdir()
        .map_err(|e| Failure::Runtime(e.into()))?;
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let store: Arc<dyn StateStore> =
        Arc::new(EmbeddedStore::open(&data).map_err(|e| Failure::Runtime(e.into()))?);
    let log = MemoryLog::new(4);
    let (stop_catalog, catalog_stopped) = watch::channel(false);
    let catalogs = follow(
        &settings,
        examples.history.clone(),
        Arc::new(MemoryCatalogLog::default()),
        catalog_stopped,
    )
    .await?;
    let inputs = Inputs::with_catalog(catalogs.clone(), &examples.mappings, &settings.topics);
    log.subscribe(&inputs.topics());
    let readiness = Readiness::default();
    let (stop_worker, worker_stopped) = watch::channel(false);
    let worker = Worker::new(
        Arc::clone(&log),
        Arc::clone(&store),
        inputs.clone(),
        settings.topics.clone(),
        settings.pipeline.clone(),
        "demo".into(),
        worker_stopped,
    )
    .with_readiness(readiness.clone())
    .with_amounts(amount_caller(&settings)?);
    let worker = tokio::spawn(worker.run());
    let printer = tokio::spawn(demo::print_events(
        Arc::clone(&log),
        settings.clone(),
        Arc::clone(&examples.catalog),
        args.json,
    ));
    let (fed, seed_topic) = examples.feed(&log);
    eprintln!(
        "questline demo: fed {fed} example actions to '{seed_topic}' (store: {})",
        data.display()
    );
    demo::wait_until_drained(&log, &inputs.topics()).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    if !args.no_serve {
        let listener = bind(&args.listen).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::Runtime(e.into()))?;
        let sink = MemoryCommandSink {
            log: Arc::clone(&log),
            topic: settings.topics.commands.clone(),
        };
        let state = app_state(
            catalogs,
            Arc::clone(&store),
            Arc::new(sink),
            &settings,
            readiness,
        )?;
        demo::print_try_it(addr);
        http::serve(listener, state, wait_for(shutdown_signal()))
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
    }
    let _ = stop_worker.send(true);
    let _ = stop_catalog.send(true);
    let totals = worker
        .await
        .map_err(|e| Failure::Runtime(e.into()))?
        .map_err(|e| Failure::Runtime(e.into()))?;
    printer.abort();
    eprintln!(
        "questline demo: {} records, {} applied, {} dead letters, {} batches",
        totals.records, totals.applied, totals.dead_letters, totals.batches
    );
    Ok(())
}
