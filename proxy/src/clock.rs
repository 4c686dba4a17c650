//! A coarse process clock in milliseconds, so endpoint health fits in one atomic.

use std::sync::OnceLock;
use std::time::Instant;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since the process clock started (first use). Starts at 1 so 0 can mean "never".
pub fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64 + 1
}
