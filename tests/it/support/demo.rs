//! `questline demo` as a user runs it: the real binary in the checkout's directory, serving
//! its sidecar on a loopback port. Stopped with Ctrl-C when dropped, so it removes its
//! temporary store.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A running demo; the test reads its output line by line.
pub struct Demo {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its output up to the line announcing that the sidecar serves, that line included.
    pub announced: Vec<String>,
    lines: Receiver<String>,
}

impl Demo {
    /// The demo on a free port, once it announces that it serves.
    pub fn start() -> Demo {
        Demo::start_on(super::free_port())
    }

    /// The demo on `port`, once it announces that it serves (at most 60 s: a first run
    /// after a build may be slow to start).
    pub fn start_on(port: u16) -> Demo {
        let mut child = Command::new(super::questline_bin())
            .current_dir(super::root())
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut demo = Demo {
            child,
            base: format!("http://127.0.0.1:{port}"),
            announced: Vec::new(),
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = demo
                .next_line(deadline.saturating_duration_since(Instant::now()))
                .expect("the demo never announced that it serves");
            let serving = line.contains("The sidecar is serving");
            demo.announced.push(line);
            if serving {
                return demo;
            }
        }
    }

    /// The next line of its output, if one comes within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Ctrl-C (SIGINT), then its exit status once it exits, None if it still runs after
    /// `timeout`.
    pub fn interrupt(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Demo {
    /// Ctrl-C, else a kill after 15 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if self.interrupt(Duration::from_secs(15)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
