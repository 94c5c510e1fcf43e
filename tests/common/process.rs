//! The real binary as a child process: its stdout and stderr lines on
//! channels, waiting for a line, signals, a clean stop, and the address its
//! HTTP API reports.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ok;

/// Sends SIGTERM and requires a clean exit that says so; returns stdout and
/// stderr.
pub fn stop_cleanly(run: Running) -> (Vec<String>, Vec<String>) {
    run.signal("TERM");
    let (status, out, err) = run.finish_all(Duration::from_secs(60));
    assert!(
        status.success(),
        "exit {status} after SIGTERM; stderr:\n{}",
        err.join("\n")
    );
    assert!(
        err.iter().any(|l| l.contains("stopped cleanly")),
        "no `stopped cleanly` on stderr:\n{}",
        err.join("\n")
    );
    (out, err)
}

/// A running child whose stdout and stderr lines arrive on channels.
pub struct Running {
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
    pub seen_err: Vec<String>,
    pub seen_out: Vec<String>,
}

fn pump(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line from `lines` that satisfies `pred` within `timeout`; every
/// line read is kept in `seen`.
fn first_line(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).ok()?;
        seen.push(line.clone());
        if pred(&line) {
            return Some(line);
        }
    }
}

pub fn spawn(cmd: &mut Command) -> Running {
    spawn_with_stdout(cmd, Stdio::piped())
}

/// [`spawn`] with the child's stdout going to `stdout`; the returned
/// `Running::stdout` then has lines only when it is `Stdio::piped()`.
pub fn spawn_with_stdout(cmd: &mut Command, stdout: Stdio) -> Running {
    let mut child = cmd
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stdout = match child.stdout.take() {
        Some(out) => pump(out),
        None => mpsc::channel().1,
    };
    let stderr = pump(child.stderr.take().unwrap());
    Running {
        child,
        stdout,
        stderr,
        seen_err: Vec::new(),
        seen_out: Vec::new(),
    }
}

impl Running {
    /// Waits until a stderr line satisfies `pred`, or panics at the deadline.
    pub fn wait_stderr(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        match first_line(&self.stderr, &mut self.seen_err, timeout, pred) {
            Some(line) => line,
            None => panic!(
                "timed out after {timeout:?} waiting for {what}; stderr so far:\n{}",
                self.seen_err.join("\n")
            ),
        }
    }

    /// Like [`Running::wait_stderr`], but a line already seen (by an
    /// earlier wait) counts too: for a line that may come before the one
    /// waited for first.
    pub fn wait_stderr_ever(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        match self.seen_err.iter().find(|l| pred(l)) {
            Some(line) => line.clone(),
            None => self.wait_stderr(what, timeout, pred),
        }
    }

    /// Waits until a stdout line satisfies `pred`, or panics at the deadline.
    pub fn wait_stdout(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        match first_line(&self.stdout, &mut self.seen_out, timeout, pred) {
            Some(line) => line,
            None => {
                let err: Vec<String> = self.stderr.try_iter().collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; stdout so far:\n{}\nstderr:\n{}",
                    self.seen_out.join("\n"),
                    err.join("\n")
                )
            }
        }
    }

    /// Sends a signal by name (e.g. "TERM") with the system `kill`.
    pub fn signal(&self, sig: &str) {
        ok(Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string()));
    }

    /// Waits for exit (with a deadline) and returns the status and the rest
    /// of stderr.
    pub fn finish(self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let (status, _, err) = self.finish_all(timeout);
        (status, err)
    }

    /// Waits for exit (with a deadline) and returns the status, every stdout
    /// line and every stderr line.
    pub fn finish_all(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>, Vec<String>) {
        let exited = super::poll_until(timeout, || {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            // Drain output so the child never blocks on a full pipe.
            while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                self.seen_err.push(l);
            }
            while let Ok(l) = self.stdout.try_recv() {
                self.seen_out.push(l);
            }
            None
        });
        let Some(status) = exited else {
            let _ = self.child.kill();
            panic!(
                "process did not exit within {timeout:?}; stderr:\n{}",
                self.seen_err.join("\n")
            );
        };
        let (mut out, mut err) = (std::mem::take(&mut self.seen_out), std::mem::take(&mut self.seen_err));
        // The pump threads end at EOF; collect what is left.
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            err.push(l);
        }
        while let Ok(l) = self.stdout.recv_timeout(Duration::from_secs(5)) {
            out.push(l);
        }
        (status, out, err)
    }
}

/// A test that fails must not leave its process running (it could hold a
/// port or an MQTT client id that the next test uses).
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of field `name` in a log line, human (`name=value`) or JSON
/// (`"name":"value"`).
pub fn log_field(line: &str, name: &str) -> Option<String> {
    let human = format!("{name}=");
    if let Some(v) = line.split_whitespace().find_map(|w| w.strip_prefix(human.as_str())) {
        return Some(v.trim_matches('"').to_string());
    }
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    json[name].as_str().map(str::to_string)
}

impl Running {
    /// The base URL (`http://ADDR`) of the HTTP API, from the address the
    /// node reports once it listens: start nodes with `--http 127.0.0.1:0`
    /// (`twinstream()` sets it), so no port is picked and released before
    /// the node binds it.
    pub fn http_base(&mut self) -> String {
        let listening = |l: &str| l.contains("HTTP API listening");
        let line = match self.seen_err.iter().find(|l| listening(l)) {
            Some(l) => l.clone(),
            None => self.wait_stderr("the HTTP API's address", Duration::from_secs(60), listening),
        };
        let addr = log_field(&line, "addr").unwrap_or_else(|| panic!("no addr= in {line:?}"));
        format!("http://{addr}")
    }
}

/// Runs `twinstream run TOPO --state-dir STATE` until a durable checkpoint
/// covers `lines` lines of its file source, then stops it cleanly.
pub fn run_until_line(topo: &std::path::Path, state: &std::path::Path, lines: u64) {
    let mut run = spawn(&mut super::run_cmd(topo, state));
    let want = lines.to_string();
    run.wait_stderr(
        &format!("a durable checkpoint at line {lines}"),
        Duration::from_secs(60),
        |l| l.contains("checkpoint durable") && log_field(l, "line").as_deref() == Some(want.as_str()),
    );
    stop_cleanly(run);
}
