//! CPU priorities of the node's threads, for when they compete for cores.
//!
//! Ingestion runs at the default priority. Two kinds of thread differ:
//!
//! * the store writer [yields](yield_to_ingestion): a checkpoint that runs
//!   later only makes checkpoints less frequent (one epoch is in flight at
//!   a time), so ingestion goes first;
//! * the HTTP API's threads [answer first](answer_first): a query does
//!   about a millisecond of work, and on a node whose cores are busy with
//!   ingestion and a checkpoint it would otherwise wait for a core, up to
//!   a scheduler tick (4 ms at 250 Hz) at every wakeup. The API's share of
//!   the CPU stays what its requests cost. How far ahead is
//!   `node.http.priority` ([`ApiPriority`]).
//!
//! RocksDB's flush and compaction threads keep the default: lowered, they
//! starve on a saturated node (BENCHMARKS.md "Latency while checkpointing").
//! Every change is best effort: where the kernel refuses one (a real-time
//! or raised priority needs `CAP_SYS_NICE`, or an `RLIMIT_RTPRIO` /
//! `RLIMIT_NICE`; a requested time slice needs Linux 6.12's EEVDF), the
//! thread takes the next best or keeps what it had.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::topology::ApiPriority;

/// The API threads' real-time priority: the lowest (1 of 1-99), above
/// every normal thread and below any real-time thread of the host's.
pub const API_RT_PRIORITY: i32 = 1;

/// What [`answer_first`] applies, set by [`set_api_priority`].
static API_PRIORITY: AtomicU8 = AtomicU8::new(ApiPriority::Realtime as u8);

/// Sets what [`answer_first`] applies to the API threads from now on
/// (before the server starts its threads).
pub fn set_api_priority(p: ApiPriority) {
    API_PRIORITY.store(p as u8, Ordering::Relaxed);
}

fn api_priority() -> ApiPriority {
    ApiPriority::ALL[API_PRIORITY.load(Ordering::Relaxed) as usize]
}

/// The store writer's nice value (0 is the default, 19 the lowest).
pub const WRITER_NICE: i32 = 10;

/// The API threads' nice value: a weight about three times the default's.
pub const API_NICE: i32 = -5;

/// The time slice the API threads ask for: the kernel's shortest, 0.1 ms.
/// EEVDF gives a waking thread with a short slice an early deadline, so it
/// preempts a thread in the middle of a long one.
pub const API_SLICE_NS: u64 = 100_000;

/// Lowers the calling thread's priority to nice [`WRITER_NICE`] (or leaves
/// a lower one).
pub fn yield_to_ingestion() {
    #[cfg(target_os = "linux")]
    if nice() < WRITER_NICE {
        set_nice(WRITER_NICE);
    }
}

/// Gives the calling thread the API's [priority](ApiPriority), once per
/// thread (later calls return at once, so a request path may call it every
/// time). A refused real-time policy falls back to [`ApiPriority::High`],
/// said once in the log.
pub fn answer_first() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if DONE.with(|d| d.replace(true)) {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let wanted = api_priority();
        let refused = match wanted {
            ApiPriority::Realtime => match set_realtime(API_RT_PRIORITY) {
                Ok(()) => return,
                Err(e) => Some(e),
            },
            ApiPriority::High => None,
            ApiPriority::Normal => return,
        };
        if nice() > API_NICE {
            set_nice(API_NICE);
        }
        set_slice(API_SLICE_NS);
        if let Some(e) = refused {
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    error = %e,
                    "node.http.priority: the kernel refuses the real-time policy (it needs CAP_SYS_NICE or an RLIMIT_RTPRIO, and a real-time budget in the cgroup); the API threads run at nice {} with short time slices instead",
                    nice()
                );
            }
        }
    }
}

/// Moves the calling thread to the real-time round-robin policy at
/// `priority`. Threads it starts begin in the normal policy (an API thread
/// that starts one calls [`answer_first`] there if it serves requests).
/// Also what the HTTP bench's load threads and the tests use to find out
/// whether the policy is permitted here.
#[cfg(target_os = "linux")]
pub fn set_realtime(priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    let policy = libc::SCHED_RR | libc::SCHED_RESET_ON_FORK;
    // SAFETY: sched_setscheduler reads `param`, which lives across the
    // call; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(target_os = "linux")]
fn nice() -> i32 {
    // SAFETY: getpriority reads this thread's nice value.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(target_os = "linux")]
fn set_nice(nice: i32) {
    // SAFETY: setpriority changes this thread's nice value and touches no
    // memory.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice);
    }
}

/// Asks for `ns` long time slices, keeping the policy (normal) and nice.
#[cfg(target_os = "linux")]
fn set_slice(ns: u64) {
    /// `struct sched_attr` (include/uapi/linux/sched/types.h), version 1;
    /// libc does not declare it.
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        nice: nice(),
        priority: 0,
        // For the normal policy the kernel reads `runtime` as the slice.
        runtime: ns,
        deadline: 0,
        period: 0,
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr reads `attr`, which lives across the call and
    // states its own size; tid 0 is the calling thread.
    unsafe {
        libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's requested slice, where the kernel shows one.
    fn slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Whether this process may raise a thread's priority to `to`.
    fn may_raise_to(to: i32) -> bool {
        std::thread::spawn(move || {
            set_nice(to);
            nice() == to
        })
        .join()
        .unwrap()
    }

    #[test]
    fn the_writer_yields_on_its_own_thread_only() {
        let before = nice();
        let writer = std::thread::spawn(|| {
            yield_to_ingestion();
            nice()
        });
        assert_eq!(writer.join().unwrap(), WRITER_NICE.max(before));
        assert_eq!(nice(), before, "the calling thread keeps its priority");
    }

    /// Whether this process may move a thread to the real-time policy.
    fn may_run_realtime() -> bool {
        std::thread::spawn(|| set_realtime(API_RT_PRIORITY).is_ok())
            .join()
            .unwrap()
    }

    fn policy() -> i32 {
        // SAFETY: sched_getscheduler reads the calling thread's policy.
        unsafe { libc::sched_getscheduler(0) }
    }

    /// One test, as the setting is process-wide.
    #[test]
    fn api_threads_run_realtime_or_high_or_normal_as_set() {
        assert_eq!(api_priority(), ApiPriority::Realtime, "the default");
        let before = (policy(), nice(), slice());
        let (realtime, child) = std::thread::spawn(|| {
            answer_first();
            answer_first();
            let child = std::thread::spawn(policy).join().unwrap();
            ((policy(), nice()), child)
        })
        .join()
        .unwrap();
        if may_run_realtime() {
            assert_eq!(realtime.0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK);
            assert_eq!(child, libc::SCHED_OTHER, "a thread it starts begins normal");
        } else {
            assert_eq!(realtime.0, libc::SCHED_OTHER, "refused: falls back to high");
            if may_raise_to(API_NICE) {
                assert_eq!(realtime.1, API_NICE);
            }
        }

        set_api_priority(ApiPriority::High);
        let api = std::thread::spawn(|| {
            answer_first();
            (policy(), nice(), slice())
        });
        let (high_policy, after, sliced) = api.join().unwrap();
        assert_eq!(high_policy, libc::SCHED_OTHER);
        if may_raise_to(API_NICE) {
            assert_eq!(after, API_NICE);
        } else {
            assert_eq!(after, before.1, "a refused raise leaves the priority");
        }
        // Linux 6.12+ accepts a requested slice and shows it.
        if kernel() >= (6, 12) {
            assert_eq!(sliced, Some(API_SLICE_NS));
        }

        set_api_priority(ApiPriority::Normal);
        let normal = std::thread::spawn(|| {
            answer_first();
            (policy(), nice())
        })
        .join()
        .unwrap();
        assert_eq!(normal, (libc::SCHED_OTHER, before.1));
        set_api_priority(ApiPriority::Realtime);
        assert_eq!((policy(), nice(), slice()), before, "the calling thread keeps its own");
    }

    #[test]
    fn priorities_by_name() {
        for name in ApiPriority::NAMES {
            assert_eq!(ApiPriority::from_name(name).map(ApiPriority::name), Some(name));
        }
        assert_eq!(ApiPriority::from_name("urgent"), None);
    }
}
