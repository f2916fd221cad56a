//! Readiness that follows the broker: the real `questline run` binary against a tansu of the
//! test's own, which is killed and started again on the same port. `/readyz` turns 503,
//! naming the brokers, once they have been unreachable for `kafka.unreachable_grace_ms`, and
//! 200 again once they answer; `questline_broker_up` follows; the worker keeps running and
//! does not flood its log meanwhile. And `run --serve` and `serve`, which build their sidecar
//! in one place, answer alike.

use crate::support::kafka::*;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const GRACE: Duration = Duration::from_secs(2);
const BOUND: Duration = Duration::from_secs(60);

/// The value of an unlabelled metric in `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (_, text) = get(addr, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

/// Polls `/readyz` until its status is `status`; the body then, and how long it took.
fn wait_readyz(
    addr: SocketAddr,
    status: u16,
    worker: &mut WorkerProcess,
    tansu: &PrivateTansu,
) -> (String, Duration) {
    let start = Instant::now();
    let mut last = (0, String::new());
    while start.elapsed() < BOUND {
        if !worker.is_running() {
            panic!(
                "the worker exited ({:?}) while waiting for /readyz {status}:\n{}",
                worker.child.try_wait(),
                worker.log_text()
            );
        }
        last = get(addr, "/readyz");
        if last.0 == status {
            return (last.1, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "/readyz did not answer {status} within {BOUND:?}; last {} {}\nworker log:\n{}\ntansu log:\n{}",
        last.0,
        last.1,
        worker.log_text(),
        tansu.log()
    );
}

#[test]
fn readiness_turns_503_when_the_broker_has_been_gone_for_the_grace_period_and_200_when_it_is_back()
{
    let Some(client) = broker() else { return };
    let Some(mut tansu) = PrivateTansu::start() else {
        eprintln!("skipped: no tansu binary (run scripts/test, which installs it)");
        return;
    };
    let own = Broker {
        bootstrap: tansu.addr.to_string(),
        ..client
    };
    let setup = Setup::new(&own, "readiness", 1);
    setup.create_all_topics(&own, 1);
    let grace = GRACE.as_millis().to_string();
    let mut worker =
        setup.spawn_worker_with(&[("QUESTLINE__KAFKA__UNREACHABLE_GRACE_MS", OsStr::new(&grace))]);
    let addr = http_addr(&worker);
    wait_readyz(addr, 200, &mut worker, &tansu);
    assert_eq!(metric(addr, "questline_broker_up"), Some(1.0));
    assert!(
        metric(addr, "questline_partitions_assigned").is_some_and(|n| n >= 1.0),
        "a partition of each topic read"
    );

    tansu.kill();
    let gone = Instant::now();
    let (body, _) = wait_readyz(addr, 503, &mut worker, &tansu);
    let after = gone.elapsed();
    assert!(
        after >= GRACE - Duration::from_millis(500),
        "not ready {after:?} after the broker went, before the grace period ({GRACE:?}): {body}"
    );
    let brokers = format!("the Kafka brokers ({}) are unreachable since", tansu.addr);
    assert!(body.contains(&brokers), "{body}");
    assert!(
        body.contains("Connection refused"),
        "librdkafka's reason: {body}"
    );
    assert_eq!(metric(addr, "questline_broker_up"), Some(0.0));
    // Some seconds more of the outage, to see what the log gets while it lasts.
    let outage_log = worker.log_text().lines().count();
    std::thread::sleep(Duration::from_secs(6));
    let (status, _) = get(addr, "/readyz");
    assert_eq!(status, 503, "still not ready while the broker is gone");
    let outage_lines: Vec<String> = worker
        .log_text()
        .lines()
        .skip(outage_log)
        .map(str::to_string)
        .collect();

    tansu.restart();
    let (_, back) = wait_readyz(addr, 200, &mut worker, &tansu);
    assert_eq!(metric(addr, "questline_broker_up"), Some(1.0));
    eprintln!(
        "not ready {after:?} after the broker went; ready {back:?} after it came back; \
         {} log lines in 6 s of outage:\n{}",
        outage_lines.len(),
        outage_lines.join("\n")
    );
    assert!(
        outage_lines.len() <= 12,
        "the log floods while the broker is gone ({} lines in 6 s):\n{}",
        outage_lines.len(),
        outage_lines.join("\n")
    );
    let reported = worker.log_events("not ready: Kafka brokers unreachable");
    assert_eq!(reported.len(), 1, "{}", worker.log_text());
    assert_eq!(
        worker
            .log_events("Kafka brokers reachable again; ready")
            .len(),
        1,
        "{}",
        worker.log_text()
    );
    assert_eq!(worker.terminate(Duration::from_secs(30)), Some(0));
}

/// The challenge images of the seed's progress query, by challenge id.
fn images(addr: SocketAddr) -> Vec<(i64, String)> {
    let (status, body) = get(
        addr,
        "/api/v1/Challenges/GetProgressChallengesInfoForUser?UserId=alike-1",
    );
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut images: Vec<(i64, String)> = page["data"]
        .as_array()
        .expect("a list of challenges")
        .iter()
        .filter_map(|c| Some((c["id"].as_i64()?, c["image"].as_str()?.to_string())))
        .collect();
    images.sort();
    images
}

/// `run --serve` and `serve` build their sidecar in one place: both answer the images of
/// `[http.images]` (not the keys as stored) and the same readiness, and both refuse an image
/// bucket that cannot sign at startup, with exit 2 naming it.
#[test]
fn run_serve_and_serve_answer_the_same_images_and_readiness() {
    let Some(broker) = broker() else { return };
    let setup = Setup::new(&broker, "serve-alike", 1);
    setup.create_all_topics(&broker, 1);
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        format!("{config}[http.images]\nbase_url = \"https://cdn.example/img/\"\n"),
    )
    .unwrap();
    let serve_store = setup.dir.path().join("serve-store");
    let mut worker = setup.spawn_command(&["run", "--serve"], &[]);
    let mut sidecar = setup.spawn_command(
        &["serve"],
        &[("QUESTLINE__STORE__PATH", serve_store.as_os_str())],
    );
    let mut answers = Vec::new();
    for process in [&mut worker, &mut sidecar] {
        let addr = http_addr(process);
        let mut ready = (0, String::new());
        wait_until(
            BOUND,
            "/readyz 200",
            || {
                ready = get(addr, "/readyz");
                ready.0 == 200
            },
            || process.log_text(),
        );
        answers.push((ready, images(addr)));
    }
    let (run_serve, serve) = (&answers[0], &answers[1]);
    assert_eq!(run_serve.0, serve.0, "the same readiness");
    assert!(
        run_serve
            .1
            .iter()
            .any(|(_, image)| image == "https://cdn.example/img/challenges/earn-1000.png"),
        "run --serve resolves the keys with [http.images]: {:?}",
        run_serve.1
    );
    assert_eq!(run_serve.1, serve.1, "the same images");
    for process in [worker, sidecar] {
        let log = process.log_text();
        assert_eq!(process.terminate(BOUND), Some(0), "{log}");
    }

    // A bucket whose endpoint is not a URL: both refuse to start.
    std::fs::write(
        &setup.config,
        format!(
            "{config}[http.images.s3]\nendpoint = \"not a url\"\nbucket = \"images\"\n\
             region = \"eu-west-1\"\naccess_key = \"AKIA\"\nsecret_key = \"secret\"\n"
        ),
    )
    .unwrap();
    for args in [&["run", "--serve"][..], &["serve"][..]] {
        let mut process =
            setup.spawn_command(args, &[("QUESTLINE__STORE__PATH", serve_store.as_os_str())]);
        assert_eq!(
            process.wait(BOUND),
            Some(2),
            "{args:?}: {}",
            process.log_text()
        );
        assert!(
            process.log_text().contains("http.images.s3"),
            "{args:?} names the setting: {}",
            process.log_text()
        );
    }
}
