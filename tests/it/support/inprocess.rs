//! The sidecar and the worker in one process, on the in-process log and an embedded store:
//! what a request submits is evaluated by the real worker loop, so a test sees the records a
//! request causes, headers included.

use questline::pipeline::catalog_feed::CatalogSource;
use questline::pipeline::input::Inputs;
use questline::pipeline::log::InRecord;
use questline::pipeline::memory::{MemoryCommandSink, MemoryLog};
use questline::pipeline::worker::Worker;
use questline::readiness::Readiness;
use questline::settings::Settings;
use questline::store::embedded::EmbeddedStore;
use questline::store::StateStore;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub struct Engine {
    pub log: Arc<MemoryLog>,
    pub addr: SocketAddr,
    pub settings: Settings,
    stop: watch::Sender<bool>,
    _data: tempfile::TempDir,
}

impl Engine {
    /// The example catalog, no mappings (only the commands topic is read), default settings.
    pub async fn start() -> Engine {
        Engine::start_with(Settings::default()).await
    }

    /// [`Engine::start`] with `settings` (the sidecar's, the pipeline's).
    pub async fn start_with(settings: Settings) -> Engine {
        let history = questline::files::load_catalog_history(&super::example_catalog_dir())
            .expect("example catalog");
        Engine::start_with_catalogs(settings, CatalogSource::Fixed(Arc::new(history))).await
    }

    /// [`Engine::start_with`] on the catalog versions of `catalogs` (a live feed follows
    /// versions published while it runs, in the worker and the sidecar alike).
    pub async fn start_with_catalogs(settings: Settings, catalogs: CatalogSource) -> Engine {
        let inputs = Inputs::with_catalog(catalogs.clone(), &[], &settings.topics);
        let log = MemoryLog::new(2);
        log.subscribe(&inputs.topics());
        let data = tempfile::tempdir().unwrap();
        let store: Arc<dyn StateStore> = Arc::new(EmbeddedStore::open(data.path()).unwrap());
        let (stop, stopped) = watch::channel(false);
        let worker = Worker::new(
            Arc::clone(&log),
            Arc::clone(&store),
            inputs,
            settings.topics.clone(),
            settings.pipeline.clone(),
            "in-process".into(),
            stopped.clone(),
        );
        tokio::spawn(worker.run());
        let sink = MemoryCommandSink {
            log: Arc::clone(&log),
            topic: settings.topics.commands.clone(),
        };
        let state = questline::app::app_state(
            catalogs,
            store,
            Arc::new(sink),
            &settings,
            Readiness::default(),
        )
        .expect("sidecar state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut until = stopped;
        tokio::spawn(questline::http::serve(listener, state, async move {
            let _ = until.wait_for(|s| *s).await;
        }));
        Engine {
            log,
            addr,
            settings,
            stop,
            _data: data,
        }
    }

    /// Posts an action for `user` (trigger 1, 200 points), with `headers`; asserts the 200.
    pub async fn add_action(&self, user: &str, headers: &[(&str, &str)]) {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/api/v1/Integration/AddAction", self.addr))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"userId": "{user}", "triggerId": 1, "value": 200}}"#
            ));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    /// The records of `topic` keyed by `user`, once there are some (at most 10 s).
    pub async fn records_of(&self, topic: &str, user: &str) -> Vec<InRecord> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records: Vec<InRecord> = self
                .log
                .records(topic)
                .into_iter()
                .filter(|r| r.key.as_deref() == Some(user.as_bytes()))
                .collect();
            if !records.is_empty() || Instant::now() > deadline {
                return records;
            }
            self.log.wait_for_change(Duration::from_millis(100)).await;
        }
    }

    /// The sidecar's base URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the worker and the sidecar.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// The value of header `name` of a record, as text.
pub fn header<'a>(record: &'a InRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// The offsets committed on the in-process log for `topic`, summed over its partitions: how
/// many of its records the worker has finished with.
pub fn committed_of(log: &MemoryLog, topic: &str) -> i64 {
    log.committed()
        .iter()
        .filter(|((t, _), _)| t == topic)
        .map(|(_, o)| *o)
        .sum()
}
