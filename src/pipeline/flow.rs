//! Flow control: a bounded number of input chunks in flight.
//!
//! A source takes a [`Permit`] before it reads a chunk. The permit travels
//! with the chunk (decoder -> router -> worker -> every twin batch -> every
//! output batch, as clones of one `Arc`) and is returned when the last clone
//! drops, i.e. when the chunk is applied **and** its outputs are written by
//! the sinks. So memory between sources and sinks is bounded by
//! `max_inflight_chunks` chunks, and a slow sink or twin slows the sources
//! instead of growing queues.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Debug)]
struct State {
    inflight: usize,
    high_water: usize,
    closed: bool,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    state: Mutex<State>,
    changed: Condvar,
}

/// The gate all sources of one engine share.
#[derive(Debug, Clone)]
pub struct Flow {
    inner: Arc<Inner>,
}

/// Proof that a chunk is in flight; cheap to clone, released on last drop.
#[derive(Debug, Clone)]
pub struct Permit {
    _guard: Arc<Guard>,
}

#[derive(Debug)]
struct Guard {
    inner: Arc<Inner>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.inflight -= 1;
        drop(s);
        self.inner.changed.notify_all();
    }
}

impl Flow {
    pub fn new(max_inflight: usize) -> Flow {
        Flow {
            inner: Arc::new(Inner {
                max: max_inflight.max(1),
                state: Mutex::new(State {
                    inflight: 0,
                    high_water: 0,
                    closed: false,
                }),
                changed: Condvar::new(),
            }),
        }
    }

    /// Blocks until a chunk may enter. `None` once the flow is closed
    /// (shutdown): the source should stop.
    pub fn acquire(&self) -> Option<Permit> {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.closed {
                return None;
            }
            if s.inflight < self.inner.max {
                s.inflight += 1;
                s.high_water = s.high_water.max(s.inflight);
                return Some(Permit {
                    _guard: Arc::new(Guard {
                        inner: self.inner.clone(),
                    }),
                });
            }
            s = self.inner.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Like [`acquire`](Self::acquire) but gives up after `timeout`, so a
    /// caller can check other conditions while waiting.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit, AcquireError> {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if s.closed {
                return Err(AcquireError::Closed);
            }
            if s.inflight < self.inner.max {
                s.inflight += 1;
                s.high_water = s.high_water.max(s.inflight);
                return Ok(Permit {
                    _guard: Arc::new(Guard {
                        inner: self.inner.clone(),
                    }),
                });
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(AcquireError::Timeout);
            }
            s = self
                .inner
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for a permit until `stop` is set or the flow is closed (`None`
    /// then), checking `stop` every 100 ms.
    pub fn acquire_until(&self, stop: &std::sync::atomic::AtomicBool) -> Option<Permit> {
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            match self.acquire_timeout(Duration::from_millis(100)) {
                Ok(p) => return Some(p),
                Err(AcquireError::Timeout) => continue,
                Err(AcquireError::Closed) => return None,
            }
        }
    }

    /// A permit that does not count against the bound: for work the engine
    /// itself injects (end-of-input, shutdown) that must never wait on sources.
    pub fn extra(&self) -> Permit {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.inflight += 1;
        drop(s);
        Permit {
            _guard: Arc::new(Guard {
                inner: self.inner.clone(),
            }),
        }
    }

    /// Stops handing out permits; waiting sources get `None`.
    pub fn close(&self) {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.inner.changed.notify_all();
    }

    /// Waits until no permit is outstanding (everything applied and written).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let (s, _) = self
            .inner
            .changed
            .wait_timeout_while(s, timeout, |s| s.inflight > 0)
            .unwrap_or_else(|e| e.into_inner());
        s.inflight == 0
    }

    pub fn inflight(&self) -> usize {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner()).inflight
    }

    /// The most chunks that were ever in flight at once.
    pub fn high_water(&self) -> usize {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner()).high_water
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    Timeout,
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_released_on_last_clone() {
        let flow = Flow::new(2);
        let a = flow.acquire().unwrap();
        let b = flow.acquire().unwrap();
        assert_eq!(
            flow.acquire_timeout(Duration::from_millis(1)).err(),
            Some(AcquireError::Timeout)
        );
        let a2 = a.clone();
        drop(a);
        assert_eq!(flow.inflight(), 2, "a clone still holds the chunk");
        drop(a2);
        let c = flow.acquire_timeout(Duration::from_millis(1)).expect("released");
        drop((b, c));
        assert!(flow.wait_idle(Duration::from_millis(1)));
        assert_eq!(flow.high_water(), 2);
    }

    #[test]
    fn a_blocked_source_wakes_when_a_chunk_completes() {
        let flow = Flow::new(1);
        let held = flow.acquire().unwrap();
        let f2 = flow.clone();
        let waiter = std::thread::spawn(move || f2.acquire().is_some());
        drop(held);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn close_releases_waiting_sources() {
        let flow = Flow::new(1);
        let _held = flow.acquire().unwrap();
        let f2 = flow.clone();
        let waiter = std::thread::spawn(move || f2.acquire().is_none());
        flow.close();
        assert!(waiter.join().unwrap());
    }
}
