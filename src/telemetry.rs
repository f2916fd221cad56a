//! Logs and traces: the tracing subscriber (`RUST_LOG`, JSON lines), and the OTLP export of
//! spans when configured ([`crate::otlp`]). The Prometheus metrics are [`crate::metrics`].

/// Installs the tracing subscriber: `RUST_LOG` filter (default `info`), JSON lines when
/// `QUESTLINE_LOG_FORMAT=json`, and the scylla driver's noisy metadata refreshes filtered out.
pub fn init_tracing() {
    init_tracing_at("info")
}

/// As [`init_tracing`], with another default level (the demo keeps its output for events).
pub fn init_tracing_at(level: &str) {
    install(level, None);
}

/// As [`init_tracing`], and exports the spans as `settings` ask ([`crate::otlp`]); the
/// exporter returned must be shut down when the process stops, to send the last spans. Call
/// it inside the tokio runtime. `None` when export is off or a subscriber was installed
/// before (tests): the first one is kept.
pub fn init_tracing_exporting(
    settings: &crate::settings::TelemetrySettings,
) -> Result<Option<crate::otlp::Exporter>, String> {
    let exporter = crate::otlp::Exporter::new(settings)?;
    if install("info", exporter.as_ref()) {
        if let Some(exporter) = &exporter {
            exporter.activate();
            tracing::info!("exporting spans over OTLP");
        }
        Ok(exporter)
    } else {
        // Not installed: nothing would reach the exporter.
        Ok(None)
    }
}

/// Installs the subscriber, with the exporter's layer if there is one; false if one was
/// installed before.
fn install(level: &str, exporter: Option<&crate::otlp::Exporter>) -> bool {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},scylla::cluster=off,scylla::network=warn,rdkafka=warn"
        ))
    });
    let json = std::env::var("QUESTLINE_LOG_FORMAT").as_deref() == Ok("json");
    tracing_subscriber::registry()
        .with(filter)
        .with(json.then(|| fmt::layer().json().with_writer(std::io::stderr)))
        .with((!json).then(|| fmt::layer().with_writer(std::io::stderr)))
        .with(exporter.map(|e| e.layer()))
        .try_init()
        .is_ok()
}
