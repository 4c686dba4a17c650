//! Server-set metadata values: RFC 3339 timestamps and UUID-shaped uids.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::hash_map::RandomState;

/// Now, as the API server writes `creationTimestamp`: `2025-01-31T12:00:00Z` (whole seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// Random-looking version-4 UUIDs, different in every process and every server.
///
/// std's `RandomState` is seeded from the OS once per process and varied per instance, which is
/// all the randomness a test double's uids need; no RNG crate required.
pub(crate) struct Uids {
    seed: RandomState,
    counter: AtomicU64,
}

impl Uids {
    pub(crate) fn new() -> Self {
        Uids {
            seed: RandomState::new(),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let half = |salt: u64| {
            let mut h = self.seed.build_hasher();
            h.write_u64(n);
            h.write_u64(salt);
            h.finish()
        };
        uuid_from(half(1), half(2))
    }
}

/// Formats 128 bits as a version-4, variant-1 UUID.
pub(crate) fn uuid_from(hi: u64, lo: u64) -> String {
    let hi = (hi & !0xF000) | 0x4000;
    let lo = (lo & !(0xC000 << 48)) | (0x8000 << 48);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_uuid_shaped_and_distinct() {
        let uids = Uids::new();
        let a = uids.next();
        let b = uids.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4", "{a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn timestamps_look_like_the_api_servers() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 20, "{ts}");
        assert!(ts.ends_with('Z') && &ts[10..11] == "T", "{ts}");
    }
}
