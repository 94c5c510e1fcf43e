//! The node's processing-time clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Processing time now, in epoch milliseconds: what the twin model is given
/// as `now` (staleness, idle timeouts, sync lag), never read by the model
/// itself.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
