//! The worker against a broker over TLS, and over SASL on TLS: what managed Kafka services
//! (MSK, Confluent Cloud, Strimzi) ask of a client. The real `questline run` binary with
//! `security.protocol = "SSL"` / `"SASL_SSL"`, an independent client on the other side.
//!
//! tansu 0.6.0 takes `--cert` and `--key` but does not serve TLS with them (its broker builds
//! the TLS acceptor and drops it; the options are even in one exclusive argument group), so
//! each test starts a tansu of its own behind a TLS front: a terminating proxy in this file,
//! with a server certificate from a CA the test makes. tansu advertises the front's address,
//! so every connection of every client — bootstrap, then the broker from the metadata — goes
//! through TLS, and the worker verifies the front's certificate against `ssl.ca.location`.
//! What is tested is questline's side (librdkafka's TLS and SASL, and the configuration that
//! reaches it); the broker's TLS is the front's.

use crate::support::kafka::*;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

/// A certificate authority of the test's own.
struct Ca {
    key: PKey<Private>,
    cert: X509,
}

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut n = BigNum::new().unwrap();
    n.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    n.to_asn1_integer().unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    name.build()
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let key = key();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name(cn)).unwrap();
        b.set_issuer_name(&name(cn)).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        Ca {
            key,
            cert: b.build(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost, signed by this CA.
    fn server(&self) -> (PKey<Private>, X509) {
        let key = key();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name("127.0.0.1")).unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .dns("localhost")
            .build(&b.x509v3_context(Some(&self.cert), None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        (key, b.build())
    }

    /// Writes the CA certificate as PEM: what `ssl.ca.location` names.
    fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.cert.to_pem().unwrap()).unwrap();
        path.to_path_buf()
    }
}

/// A TLS-terminating TCP proxy on a loopback port, forwarding to `upstream`; it runs on a
/// thread of its own until the test process ends.
fn tls_front(listener: TcpListener, key: PKey<Private>, cert: X509, upstream: SocketAddr) {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&key).unwrap();
    acceptor.set_certificate(&cert).unwrap();
    acceptor.check_private_key().unwrap();
    let acceptor = Arc::new(acceptor.build());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = Arc::clone(&acceptor);
                tokio::spawn(async move {
                    let ssl = Ssl::new(acceptor.context()).unwrap();
                    let mut tls = tokio_openssl::SslStream::new(ssl, socket).unwrap();
                    // A client that does not trust the certificate gives up here.
                    if Pin::new(&mut tls).accept().await.is_err() {
                        return;
                    }
                    let Ok(mut broker) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        });
    });
}

/// A tansu of the test's own behind a TLS front, and the CA that signed the front's
/// certificate. Stops tansu when dropped.
struct TlsBroker {
    tansu: Child,
    python: String,
    dir: tempfile::TempDir,
    /// The front's address: the only one clients are given, and the one tansu advertises.
    bootstrap: String,
    ca: PathBuf,
}

impl TlsBroker {
    /// `authentication`: tansu requires SASL (it offers SCRAM, and refuses every user: its
    /// in-memory storage keeps no credentials).
    fn start(authentication: bool) -> Option<TlsBroker> {
        let binary = tansu_binary()?;
        let python = broker()?.python;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("questline test CA");
        let (key, cert) = ca.server();
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let bootstrap = front.local_addr().unwrap().to_string();
        let upstream: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.path().join("tansu.log");
        let mut cmd = tansu_command(
            &binary,
            &dir.path().join("tansu"),
            upstream,
            &bootstrap,
            "tls",
            &log,
        );
        cmd.args(authentication.then_some("--authentication"));
        let tansu = cmd.spawn().unwrap();
        let broker = TlsBroker {
            tansu,
            python,
            ca: ca.write(&dir.path().join("ca.pem")),
            dir,
            bootstrap,
        };
        wait_listening(upstream, &log);
        tls_front(front, key, cert, upstream);
        Some(broker)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// The independent client, over TLS trusting the test CA, with `more` properties.
    fn client(&self, more: &[(&str, &str)]) -> Broker {
        let mut config = vec![
            ("security.protocol".to_string(), "SSL".to_string()),
            ("ssl.ca.location".to_string(), self.ca.display().to_string()),
        ];
        config.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Broker {
            bootstrap: self.bootstrap.clone(),
            python: self.python.clone(),
            client_config: config,
        }
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.tansu.kill();
        let _ = self.tansu.wait();
    }
}

fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_worker_over_tls_verifies_the_brokers_certificate_and_its_rewards_come_out() {
    let Some(tls) = TlsBroker::start(false) else {
        eprintln!("skipped: no tansu or no client (run scripts/test)");
        return;
    };
    let client = tls.client(&[]);
    let ca = tls.ca.display().to_string();
    let setup = Setup::with_options(
        &client,
        "tls",
        1,
        Options {
            // zstd on the way out too: the other codec this build adds.
            properties: props(&[
                ("security.protocol", "SSL"),
                ("ssl.ca.location", &ca),
                ("compression.type", "zstd"),
            ]),
            ..Options::default()
        },
    );
    setup.create_all_topics(&client, 1);
    let worker = setup.spawn_worker(None);
    walk_through_rewards(&client, &setup, &worker);
    assert_eq!(worker.terminate(Duration::from_secs(20)), Some(0));
}

/// A certificate the worker does not trust stops it at start, within the 15 s it gives the
/// brokers to answer, with librdkafka's reason — not after a minute of silence with a bare
/// timeout, which is what the topic creation alone gave.
#[test]
fn a_worker_that_does_not_trust_the_brokers_certificate_stops_and_says_why() {
    let Some(tls) = TlsBroker::start(false) else {
        eprintln!("skipped: no tansu or no client (run scripts/test)");
        return;
    };
    let client = tls.client(&[]);
    // Signed by another CA than the one the worker is told to trust.
    let stranger = Ca::new("another CA").write(&tls.dir.path().join("stranger.pem"));
    let setup = Setup::with_options(
        &client,
        "untrusted",
        1,
        Options {
            properties: props(&[
                ("security.protocol", "SSL"),
                ("ssl.ca.location", &stranger.display().to_string()),
            ]),
            ..Options::default()
        },
    );
    let mut worker = setup.spawn_worker(None);
    let exit = worker.wait_status(Duration::from_secs(40));
    let log = worker.log_text();
    assert_eq!(
        exit.and_then(|status| status.code()),
        Some(1),
        "{exit:?} (None: still running after 40 s)\n{log}"
    );
    assert!(
        log.contains("cannot reach the kafka brokers")
            && log.contains("(last broker error: ")
            && log.contains("certificate verify failed"),
        "{log}"
    );
}

/// SASL over TLS, as MSK (SCRAM-SHA-512) and Strimzi (SCRAM-SHA-512) ask. tansu 0.6.0 offers
/// the SCRAM mechanisms but not PLAIN (its SASL library is built without it), and its
/// in-memory storage keeps no SCRAM credentials, so no login can succeed against it. What
/// this shows is the client's side: the worker accepts the configuration, runs the whole SCRAM
/// exchange inside TLS (client-first, server-first, client-final: the proof is computed with
/// OpenSSL) and reports the broker's answer — an unknown user — in its log.
#[test]
fn the_worker_runs_the_scram_exchange_over_tls_and_reports_the_brokers_refusal() {
    let Some(tls) = TlsBroker::start(true) else {
        eprintln!("skipped: no tansu or no client (run scripts/test)");
        return;
    };
    let ca = tls.ca.display().to_string();
    let client = tls.client(&[]);
    let setup = Setup::with_options(
        &client,
        "scram",
        1,
        Options {
            properties: props(&[
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", &ca),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "questline"),
                ("sasl.password", "secret"),
            ]),
            ..Options::default()
        },
    );
    let mut worker = setup.spawn_worker(None);
    let exit = worker.wait_status(Duration::from_secs(40));
    let log = worker.log_text();
    assert_eq!(
        exit.and_then(|status| status.code()),
        Some(1),
        "{exit:?} (None: still running after 40 s)\n{log}\ntansu log:\n{}",
        tls.log()
    );
    assert!(
        log.contains("cannot reach the kafka brokers")
            && log.contains("SASL SCRAM authentication failed: broker responded with unknown-user"),
        "{log}\ntansu log:\n{}",
        tls.log()
    );
}
