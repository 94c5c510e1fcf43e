//! The node's processing-time clock.
//!
//! It is the machine's clock plus an offset, 0 unless a fault drill steps
//! it (`TWINSTREAM_CLOCK_OFFSET_FILE`, read by `main` at start and on
//! SIGUSR2): the way to see what a node does when its clock jumps, without
//! stepping the clock of every other process on the machine.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Processing time now, in epoch milliseconds: what the twin model is given
/// as `now` (staleness, idle timeouts, sync lag), never read by the model
/// itself.
pub fn now_ms() -> i64 {
    now_us() / 1000
}

/// Processing time now, in epoch microseconds.
pub fn now_us() -> i64 {
    let machine = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    machine.saturating_add(OFFSET_MS.load(Ordering::Relaxed).saturating_mul(1000))
}

/// Steps the clock to the machine's plus `ms` (a fault drill).
pub fn set_offset_ms(ms: i64) {
    OFFSET_MS.store(ms, Ordering::Relaxed);
}
