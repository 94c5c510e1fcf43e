//! `twinstream run` as the MQTT benchmark drives it: its stdout lines
//! (time-stamped as read) go to what tracks them, its stderr is kept for
//! errors, and it stops by SIGTERM. (`node.rs` is the node the cluster
//! benchmarks watch by its log.) Needs `system.rs`, included as
//! `mod system`.
#![allow(dead_code)] // each benchmark uses what it needs

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::system::wall_ms;

/// A line of twinstream's stdout and when it was read.
pub struct Line {
    pub text: String,
    pub at: Instant,
    /// Wall clock (epoch ms, fractional) at the same moment.
    pub wall_ms: f64,
}

/// What takes twinstream's output lines while [`Twinstream::pump`] runs.
pub trait Tracks {
    /// How many awaited readings have not shown up yet (0: done).
    fn missing(&self) -> usize;
    /// Takes one output line.
    fn take(&mut self, line: &Line) -> Result<()>;
}

/// `twinstream run`: stdout lines (time-stamped as read) on a channel,
/// stderr lines kept. Killed if dropped while running.
pub struct Twinstream {
    pub child: Child,
    lines: crossbeam_channel::Receiver<Line>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Twinstream {
    pub fn start(bin: &Path, topo: &Path, state: &Path) -> Result<Twinstream> {
        let mut child = Command::new(bin)
            .arg("run")
            .arg(topo)
            .arg("--state-dir")
            .arg(state)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let (tx, lines) = crossbeam_channel::unbounded();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, out);
            loop {
                let mut text = String::new();
                match r.read_line(&mut text) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = Line {
                    at: Instant::now(),
                    wall_ms: wall_ms(),
                    text,
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("piped");
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(l);
            }
        });
        Ok(Twinstream { child, lines, stderr })
    }

    fn stderr_tail(&self) -> String {
        let err = self.stderr.lock().unwrap();
        err[err.len().saturating_sub(30)..].join("\n")
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("twinstream exited ({status}); stderr:\n{}", self.stderr_tail());
        }
        Ok(())
    }

    /// Waits until a stderr line contains `what`.
    pub fn wait_stderr(&mut self, what: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.stderr.lock().unwrap().iter().any(|l| l.contains(what)) {
            self.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for `{what}` from twinstream; stderr:\n{}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Feeds output lines to `tracker` until nothing is missing (true) or
    /// `deadline` (false).
    pub fn pump(&mut self, tracker: &mut impl Tracks, deadline: Instant) -> Result<bool> {
        while tracker.missing() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.pump_for(tracker, left.min(Duration::from_millis(50)))?;
        }
        Ok(true)
    }

    /// Feeds the output lines that arrive within `wait` to `tracker`.
    pub fn pump_for(&mut self, tracker: &mut impl Tracks, wait: Duration) -> Result<()> {
        match self.lines.recv_timeout(wait) {
            Ok(line) => tracker.take(&line)?,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => return self.check_running(),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                let _ = self.child.wait();
                self.check_running()?;
                bail!("twinstream closed its stdout");
            }
        }
        while let Ok(line) = self.lines.try_recv() {
            tracker.take(&line)?;
        }
        Ok(())
    }

    /// SIGTERM and a clean exit; returns the events it applied and the
    /// number of dead letters it wrote.
    pub fn stop(mut self, state: &Path) -> Result<(u64, usize)> {
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) } != 0 {
            bail!("cannot signal twinstream: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("twinstream did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The stderr reader ends at EOF; wait for its last lines.
        let deadline = Instant::now() + Duration::from_secs(5);
        let stopped = loop {
            let err = self.stderr.lock().unwrap();
            if let Some(l) = err.iter().find(|l| l.contains("stopped cleanly")) {
                break Some(l.clone());
            }
            drop(err);
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let Some(stopped) = stopped.filter(|_| status.success()) else {
            bail!(
                "twinstream did not stop cleanly ({status}); stderr:\n{}",
                self.stderr_tail()
            );
        };
        let events = stopped
            .split_whitespace()
            .find_map(|w| w.strip_prefix("events=")?.parse().ok())
            .unwrap_or(0);
        let dead = std::fs::read_to_string(state.join("dead_letters.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        Ok((events, dead))
    }
}

impl Drop for Twinstream {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
