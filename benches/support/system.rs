//! The machine a benchmark runs on: what it is and how loaded, the CPU
//! that some processes and the rest of the machine use over a phase, and
//! the wall clock. (`cpu.rs` has the one-process reading other benchmarks
//! use.)
#![allow(dead_code)] // each benchmark uses what it needs

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// CPU time of some processes, and of the rest of the machine, over a phase.
pub struct CpuMeter {
    started: Instant,
    procs: Vec<(&'static str, u32, f64)>,
    machine: f64,
}

impl CpuMeter {
    pub fn start(procs: &[(&'static str, u32)]) -> CpuMeter {
        CpuMeter {
            started: Instant::now(),
            procs: procs.iter().map(|&(name, pid)| (name, pid, cpu_secs(pid))).collect(),
            machine: machine_busy_secs(),
        }
    }

    /// "CPU busy (cores, of N): broker 0.97, ..., other processes 0.02"
    /// since [`start`](Self::start).
    pub fn stop(self) -> String {
        let wall = self.started.elapsed().as_secs_f64();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let mut ours = 0.0;
        let mut busy: Vec<String> = self
            .procs
            .iter()
            .map(|&(name, pid, before)| {
                let used = cpu_secs(pid) - before;
                ours += used;
                format!("{name} {:.2}", used / wall)
            })
            .collect();
        let others = ((machine_busy_secs() - self.machine - ours) / wall).max(0.0);
        busy.push(format!("other processes {others:.2}"));
        format!("CPU busy over the phase (cores, of {cpus}): {}", busy.join(", "))
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// User + system CPU seconds of process `pid` (all its threads) so far.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces): state is field
    // 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// CPU seconds the whole machine has been busy (not idle, not waiting for
/// I/O) so far, from /proc/stat.
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return f64::NAN;
    };
    let ticks: Vec<f64> = cpu.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    busy / clock_ticks()
}

pub fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

pub fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as f64
        / 1000.0
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cpus (nproc), {model}; load average {} at start", load_average())
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
