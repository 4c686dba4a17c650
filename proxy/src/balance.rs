//! Balancing: which ready endpoint of a route takes the next connection, and passive outlier
//! ejection of endpoints whose connects keep failing. All state is atomics on the shared
//! [`Endpoint`]s, so workers coordinate without locks.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::{Balance, Limits};
use crate::routes::{Endpoint, Route};

/// Picks an endpoint of `route` not in `tried` (indices into `route.endpoints`), preferring
/// endpoints that are not ejected. When every untried endpoint is ejected, one is used anyway
/// (Envoy's panic mode): refusing all traffic because all endpoints failed recently would turn
/// a blip into an outage. Returns the index.
pub fn pick(route: &Route, policy: Balance, tried: u64, now_ms: u64) -> Option<usize> {
    let n = route.endpoints.len();
    if n == 0 {
        return None;
    }
    let usable = |i: usize| i >= 64 || tried & (1 << i) == 0;
    let healthy = |i: usize| usable(i) && !route.endpoints[i].is_ejected(now_ms);
    match policy {
        Balance::RoundRobin => {
            let start = route.cursor.fetch_add(1, Ordering::Relaxed);
            let scan =
                |ok: &dyn Fn(usize) -> bool| (0..n).map(|k| (start + k) % n).find(|&i| ok(i));
            scan(&healthy).or_else(|| scan(&usable))
        }
        Balance::P2c => {
            let a = random_below(n);
            let b = random_below(n);
            let load = |i: usize| route.endpoints[i].active.load(Ordering::Relaxed);
            match (healthy(a), healthy(b)) {
                (true, true) => Some(if load(b) < load(a) { b } else { a }),
                (true, false) => Some(a),
                (false, true) => Some(b),
                // Both draws unusable: fall back to a deterministic scan from a random point.
                (false, false) => {
                    let scan =
                        |ok: &dyn Fn(usize) -> bool| (0..n).map(|k| (a + k) % n).find(|&i| ok(i));
                    scan(&healthy).or_else(|| scan(&usable))
                }
            }
        }
    }
}

/// Records a successful connect: clears the failure streak.
pub fn record_success(ep: &Endpoint) {
    if ep.consecutive_failures.load(Ordering::Relaxed) != 0 {
        ep.consecutive_failures.store(0, Ordering::Relaxed);
    }
}

/// Records a failed connect; returns true if this failure ejected the endpoint.
pub fn record_failure(ep: &Endpoint, limits: &Limits, now_ms: u64) -> bool {
    let failures = ep.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
    if failures >= limits.eject_after_failures && !ep.is_ejected(now_ms) {
        let until = now_ms + limits.ejection_time.as_millis() as u64;
        ep.ejected_until_ms.store(until, Ordering::Relaxed);
        return true;
    }
    false
}

/// Counts a connection as active on an endpoint for as long as the guard lives (P2C's signal).
pub struct ActiveGuard(Arc<Endpoint>);

impl ActiveGuard {
    pub fn new(ep: Arc<Endpoint>) -> Self {
        ep.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(ep)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A per-thread xorshift generator: P2C needs cheap, not cryptographic, randomness.
fn random_below(n: usize) -> usize {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % n as u64) as usize
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id()) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteTableBuilder;
    use std::time::Duration;

    fn table(n: u16) -> crate::routes::RouteTable {
        let mut b = RouteTableBuilder::new();
        b.add(
            "a.local",
            1,
            "",
            (0..n).map(|i| ([127, 0, 0, 1], 1000 + i).into()),
        );
        b.build(None)
    }

    #[test]
    fn round_robin_visits_every_endpoint() {
        let t = table(3);
        let r = t.lookup("a.local", 1, "").unwrap();
        let picks: Vec<_> = (0..6)
            .map(|_| pick(r, Balance::RoundRobin, 0, 1).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn tried_endpoints_are_skipped_and_ejected_ones_avoided() {
        let t = table(3);
        let r = t.lookup("a.local", 1, "").unwrap();
        let limits = Limits {
            eject_after_failures: 2,
            ejection_time: Duration::from_secs(10),
            ..Limits::default()
        };
        assert!(!record_failure(&r.endpoints[1], &limits, 100));
        assert!(record_failure(&r.endpoints[1], &limits, 100));
        for policy in [Balance::RoundRobin, Balance::P2c] {
            for _ in 0..50 {
                let i = pick(r, policy, 0b001, 200).unwrap();
                assert_eq!(i, 2, "{policy:?}");
            }
        }
        // After the ejection time it is back.
        assert!(!r.endpoints[1].is_ejected(100 + 10_000));
        // All tried: nothing left.
        assert_eq!(pick(r, Balance::RoundRobin, 0b111, 200), None);
        // Only an ejected one left: used anyway (panic mode).
        assert_eq!(pick(r, Balance::P2c, 0b101, 200), Some(1));
        record_success(&r.endpoints[1]);
        assert_eq!(
            r.endpoints[1].consecutive_failures.load(Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn p2c_prefers_the_less_loaded() {
        let t = table(2);
        let r = t.lookup("a.local", 1, "").unwrap();
        let _busy: Vec<_> = (0..5)
            .map(|_| ActiveGuard::new(r.endpoints[0].clone()))
            .collect();
        let ones = (0..200)
            .filter(|_| pick(r, Balance::P2c, 0, 1) == Some(1))
            .count();
        // When both draws hit endpoint 0 (1 in 4), 0 is chosen; otherwise 1 wins.
        assert!(ones > 100, "endpoint 1 picked {ones}/200");
        assert_eq!(r.endpoints[0].active(), 5);
    }
}
