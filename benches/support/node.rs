//! A twinstream node a benchmark starts, kills and watches: its stderr
//! lines arrive with the time they were read (`BENCH_LOGS=DIR` keeps each
//! node's log).
#![allow(dead_code)] // each benchmark uses what it needs

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(600);

/// A twinstream node whose stderr lines arrive with the time they were read.
pub struct Node {
    pub child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Node {
    pub fn start(bin: &Path, topo: &Path, state: &Path) -> Node {
        let mut child = Command::new(bin)
            .arg("run")
            .arg(topo)
            .arg("--state-dir")
            .arg(state)
            .env("RUST_LOG", "info")
            .env("TWINSTREAM_HTTP", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start twinstream");
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // BENCH_LOGS=DIR keeps each node's log (to see where time went).
        let mut log = std::env::var("BENCH_LOGS").ok().map(|d| {
            let name = format!("{}-{}.log", state.file_name().unwrap().to_string_lossy(), child.id());
            std::fs::File::create(Path::new(&d).join(name)).unwrap()
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(f) = &mut log {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Node { child, lines }
    }

    /// The first line from now on that satisfies `pred`, and when it came.
    pub fn wait(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> (Instant, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, l)) if pred(&l) => return (t, l),
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// The base URL of its HTTP API (from its log).
    pub fn api(&mut self) -> String {
        let (_, line) = self.wait("the node's HTTP API", |l| l.contains("HTTP API listening addr="));
        let at = line.find("addr=").expect("checked") + 5;
        format!("http://{}", line[at..].split_whitespace().next().unwrap())
    }

    /// Forgets the lines printed so far (a wait then sees only later ones).
    pub fn drain(&mut self) {
        while self.lines.try_recv().is_ok() {}
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A benchmark that fails must not leave its node running (it would hold
/// the broker's session, a cgroup, the CPU).
impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
