//! A tansu of a test's own, for tests that stop the broker or put something in front of it
//! (the shared one of `scripts/test` must stay up for the other tests).

use super::free_port;
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary `scripts/test` installs: `QL_TANSU_BIN`, else its cache. None (the test
/// skips) when it is missing, except under CI, where that is a failure.
pub fn tansu_binary() -> Option<PathBuf> {
    let path = std::env::var_os("QL_TANSU_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/questline/tansu/bin/tansu"))
        })
        .filter(|p| p.is_file());
    if path.is_none() && std::env::var_os("CI").is_some() {
        panic!("no tansu binary under CI: run scripts/test, which installs it");
    }
    path
}

/// `tansu broker` with in-memory storage, listening on `listen` and advertising `advertised`,
/// run in `work` (empty: tansu reads a stray `.env` from its working directory) with its
/// output appended to `log`, as `scripts/lib/servers.sh` starts it.
pub fn tansu_command(
    binary: &Path,
    work: &Path,
    listen: SocketAddr,
    advertised: &str,
    cluster: &str,
    log: &Path,
) -> Command {
    std::fs::create_dir_all(work).unwrap();
    let log = File::options().create(true).append(true).open(log).unwrap();
    let mut cmd = Command::new(binary);
    cmd.current_dir(work)
        .args(["broker", "--listener-url"])
        .arg(format!("tcp://{listen}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://{advertised}"))
        .args([
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            cluster,
        ])
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env_remove("STORAGE_ENGINE")
        .env_remove("CLUSTER_ID")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    cmd
}

/// Waits until `addr` accepts connections; panics after 20 s with `log`'s text.
pub fn wait_listening(addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on {addr}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain tansu on a port of its own that can be killed and started again on the same
/// port (with empty storage: it keeps everything in memory). Killed when dropped.
pub struct PrivateTansu {
    binary: PathBuf,
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl PrivateTansu {
    /// None (skipped) without the tansu binary.
    pub fn start() -> Option<PrivateTansu> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut tansu = PrivateTansu {
            binary: tansu_binary()?,
            dir: tempfile::tempdir().unwrap(),
            addr,
            child: None,
        };
        tansu.restart();
        Some(tansu)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// Its output so far, every run's.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL: the broker goes away without a word to its clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, once it is stopped.
    pub fn restart(&mut self) {
        self.kill();
        let addr = self.addr.to_string();
        let mut cmd = tansu_command(
            &self.binary,
            &self.dir.path().join("work"),
            self.addr,
            &addr,
            "private",
            &self.log_path(),
        );
        self.child = Some(cmd.spawn().unwrap());
        wait_listening(self.addr, &self.log_path());
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        self.kill();
    }
}
