//! How a running node stops when its outputs go wrong, through the real
//! binary in a real pseudo-terminal: Ctrl-C typed on a terminal whose `tee`
//! died with it, a second Ctrl-C while the drain is stuck on a full pipe, and
//! a drain that outlasts `--stop-timeout`.

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::*;

/// A pseudo-terminal: the test types on `master`, the node's terminal is
/// `slave`.
struct Pty {
    master: std::fs::File,
    slave: OwnedFd,
}

fn pty() -> Pty {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the two ints; the
    // name, termios and window size arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe {
        Pty {
            master: std::fs::File::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

impl Pty {
    /// Types Ctrl-C: the terminal sends SIGINT to its foreground process
    /// group, as it does to a shell pipeline's processes.
    fn ctrl_c(&mut self) {
        self.master.write_all(&[0x03]).unwrap();
    }
}

/// Runs `cmd` as a job of the terminal `pty`: the leader of a new session
/// whose controlling terminal (and stdin) is the pty, so the node is in the
/// terminal's foreground process group.
fn in_terminal(cmd: &mut Command, pty: &Pty) {
    cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A simulated fleet whose twin updates stream to stdout (the console), a
/// line for every reading: the node writes to its stdout all the time.
fn chatty_topology(dir: &Path) -> PathBuf {
    Topo::new("chatty")
        .snapshot_every("200ms")
        .model(
            r#"asset_types:
  pump:
    sensors:
      vibration:   { unit: mm/s, range: [0, 20] }
      temperature: { unit: degC, range: [0, 120] }
assets: [{ id: "pump-*", type: pump }]
"#,
        )
        .source("{ name: sim, type: simulator, asset_type: pump, prefix: pump-, count: 50, digits: 2, every: 20ms }")
        .sink("{ name: console, type: stdout, outputs: [twin_updates] }")
        .write(&dir.join("chatty.yaml"))
}

/// `twinstream run TOPO` in a fresh state dir as a job of `pty`.
fn node(topo: &Path, state: &Path, pty: &Pty, extra: &[&str]) -> Command {
    let mut cmd = run_cmd(topo, state);
    cmd.args(extra);
    in_terminal(&mut cmd, pty);
    cmd
}

/// Waits for `child` to exit within `timeout`; kills it and fails if not.
fn exit_of(child: &mut Child, timeout: Duration, why: &str) -> ExitStatus {
    match poll_until(timeout, || child.try_wait().unwrap()) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the node did not exit within {timeout:?} {why}");
        }
    }
}

/// Reads `pipe` until it has shown `needle`, failing at the deadline;
/// hands the pipe back.
fn read_until(mut pipe: std::io::PipeReader, needle: &str, timeout: Duration) -> std::io::PipeReader {
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = needle.to_string();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(&wanted) {
                let _ = tx.send(pipe);
                return;
            }
        }
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no `{needle}` from the node within {timeout:?}"))
}

/// `make demo 2>&1 | tee demo.log`, then Ctrl-C: the terminal signals `tee`
/// and the node at the same moment, so the node's stdout and stderr close
/// as it starts to stop. It must still stop, with a clear exit status (0,
/// or 1 when the console sink could not write its last lines), never hang
/// or panic; and what it made durable opens again.
#[test]
fn ctrl_c_on_a_terminal_whose_tee_died_with_it_still_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut pty = pty();
    let (reader, writer) = std::io::pipe().unwrap();
    let mut cmd = node(&chatty_topology(dir.path()), &state, &pty, &[]);
    cmd.stdout(writer.try_clone().unwrap()).stderr(writer);
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // the parent's copies of the pipe's write end
    let reader = read_until(reader, "checkpoint durable", Duration::from_secs(60));

    // `tee` dies and the node gets SIGINT: the reader goes first, so the
    // node's next write (its "stopping" log line) meets a closed pipe.
    drop(reader);
    pty.ctrl_c();

    let status = exit_of(&mut child, Duration::from_secs(60), "after Ctrl-C with its pipe closed");
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "expected exit 0 or 1 (a clear error), got {status} (101 is a panic)"
    );
    let store = twinstream::store::Store::open(&state, 1).unwrap();
    let mut twins = 0;
    store
        .for_each_twin(0, |_, _| {
            twins += 1;
            Ok(())
        })
        .unwrap();
    assert!(twins > 0, "no twin was durable");
}

/// The node's stdout is a pipe nobody reads (a stuck pager, a full
/// consumer): its console sink blocks, so a stop cannot drain.
fn node_with_a_stuck_stdout(dir: &Path, pty: &Pty, extra: &[&str]) -> (Running, std::io::PipeReader) {
    let state = dir.join("state");
    let (stuck, writer) = std::io::pipe().unwrap();
    let mut cmd = node(&chatty_topology(dir), &state, pty, extra);
    let run = spawn_with_stdout(&mut cmd, writer.into());
    drop(cmd);
    // Stdout filled: a thread of the node (its console sink) sleeps in the
    // kernel's pipe write.
    let pid = run.child.id();
    poll_until(Duration::from_secs(60), || blocked_on_a_pipe(pid).then_some(()))
        .unwrap_or_else(|| panic!("the node never blocked writing its stdout"));
    (run, stuck)
}

/// Whether a thread of process `pid` waits in the kernel to write a pipe.
fn blocked_on_a_pipe(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(Result::ok)
        .any(|task| std::fs::read_to_string(task.path().join("wchan")).is_ok_and(|w| w.contains("pipe_write")))
}

/// Ctrl-C, Ctrl-C: the first asks for a drain that cannot finish, the
/// second exits at once (130), as the README promises.
#[test]
fn a_second_ctrl_c_exits_at_once_while_the_drain_is_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let mut pty = pty();
    let (mut run, _stuck) = node_with_a_stuck_stdout(dir.path(), &pty, &["--stop-timeout", "10m"]);
    pty.ctrl_c();
    run.wait_stderr("the first signal", Duration::from_secs(30), |l| {
        l.contains("stopping: draining")
    });
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the node stopped although its sink cannot write; this test needs a stuck drain"
    );
    pty.ctrl_c();
    let (status, err) = run.finish(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(130),
        "expected exit 130 after a second Ctrl-C, got {status}; stderr:\n{}",
        err.join("\n")
    );
    assert!(
        err.iter()
            .any(|l| l.contains("second signal: exiting without draining")),
        "stderr:\n{}",
        err.join("\n")
    );
}

/// One SIGTERM and a drain that cannot finish: the node gives up after
/// `--stop-timeout`, saying so, with exit 1, rather than wait forever.
#[test]
fn a_drain_that_outlasts_the_stop_timeout_ends_the_process_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pty = pty();
    let (run, _stuck) = node_with_a_stuck_stdout(dir.path(), &pty, &["--stop-timeout", "2s"]);
    run.signal("TERM");
    let (status, err) = run.finish(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "got {status}; stderr:\n{}", err.join("\n"));
    assert!(status.signal().is_none());
    assert!(
        err.iter().any(|l| l.contains("did not stop within 2s of the signal")),
        "no stop-timeout message; stderr:\n{}",
        err.join("\n")
    );
}
