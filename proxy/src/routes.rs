//! The route table: an immutable snapshot (service host + port + subset → ready endpoints) that
//! the data path reads with one atomic load, and the per-endpoint health that outlives snapshots.
//!
//! The control side builds a new [`RouteTable`] off the data path with [`RouteTableBuilder`] and
//! swaps it in with [`Routes::publish`]; workers never take a lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arc_swap::{ArcSwapOption, Guard};

/// One upstream address and its passive health. The same `Arc<Endpoint>` is carried from one
/// snapshot to the next while the address stays, so ejection and load survive a config change.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Connections currently forwarded to this endpoint (the P2C load signal).
    pub(crate) active: AtomicU32,
    /// Connect failures since the last success.
    pub(crate) consecutive_failures: AtomicU32,
    /// Milliseconds on the process clock (see [`crate::clock`]) until which the endpoint is
    /// ejected; 0 when it is not.
    pub(crate) ejected_until_ms: AtomicU64,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            active: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
        }
    }

    /// Connections currently forwarded to this endpoint.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether passive outlier detection has this endpoint out of rotation at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }
}

/// The endpoints of one service port (and subset).
#[derive(Debug)]
pub struct Route {
    pub port: u16,
    /// Istio subset name; empty for the whole service.
    pub subset: Box<str>,
    pub endpoints: Box<[Arc<Endpoint>]>,
    /// Round-robin cursor; shared by all workers, a relaxed atomic add per connection.
    pub(crate) cursor: AtomicUsize,
    /// Istio's standard TCP metrics of this route, carried from one snapshot to the next while
    /// the route stays.
    pub stats: Arc<RouteStats>,
}

/// Per-route counters, as Istio's `istio_tcp_*` metrics count them (relaxed atomics).
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Connections forwarded (an upstream connection was made).
    pub opened: AtomicU64,
    /// Of those, ended.
    pub closed: AtomicU64,
    /// Bytes from the client to the endpoint (Istio's `received` at the reporting proxy).
    pub received: AtomicU64,
    /// Bytes from the endpoint to the client (Istio's `sent`).
    pub sent: AtomicU64,
}

/// An immutable routing snapshot.
#[derive(Debug, Default)]
pub struct RouteTable {
    version: u64,
    /// Lower-case host → its ports and subsets (few per host, so a linear scan beats a map).
    services: HashMap<Box<str>, Box<[Route]>>,
    endpoint_count: usize,
}

impl RouteTable {
    /// The route for `host` (already lower-case, as the SNI parser delivers it), `port`, `subset`.
    pub fn lookup(&self, host: &str, port: u16, subset: &str) -> Option<&Route> {
        self.services
            .get(host)?
            .iter()
            .find(|r| r.port == port && &*r.subset == subset)
    }

    /// Monotonic version assigned by [`Routes::publish`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of (host, port, subset) routes.
    pub fn route_count(&self) -> usize {
        self.services.values().map(|r| r.len()).sum()
    }

    /// Number of endpoints across all routes.
    pub fn endpoint_count(&self) -> usize {
        self.endpoint_count
    }

    /// All routes, for debug output: `(host, route)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Route)> {
        self.services
            .iter()
            .flat_map(|(h, rs)| rs.iter().map(move |r| (&**h, r)))
    }
}

/// Builds a [`RouteTable`]. Adding the same (host, port, subset) twice merges the endpoint lists;
/// duplicate addresses within a route are kept once.
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    services: HashMap<Box<str>, Vec<PendingRoute>>,
}

/// A route being built: port, subset, endpoint addresses.
type PendingRoute = (u16, Box<str>, Vec<SocketAddr>);

impl RouteTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds endpoints for `host:port` (and `subset`, empty for none). `host` is lower-cased.
    pub fn add(
        &mut self,
        host: &str,
        port: u16,
        subset: &str,
        endpoints: impl IntoIterator<Item = SocketAddr>,
    ) -> &mut Self {
        let host = host
            .trim_end_matches('.')
            .to_ascii_lowercase()
            .into_boxed_str();
        let routes = self.services.entry(host).or_default();
        let idx = match routes
            .iter()
            .position(|(p, s, _)| *p == port && &**s == subset)
        {
            Some(i) => i,
            None => {
                routes.push((port, subset.into(), Vec::new()));
                routes.len() - 1
            }
        };
        let list = &mut routes[idx].2;
        for ep in endpoints {
            if !list.contains(&ep) {
                list.push(ep);
            }
        }
        self
    }

    /// Finishes the table. Endpoints whose address also appears in `previous` reuse its
    /// [`Endpoint`] so passive health and active counts carry over.
    pub fn build(self, previous: Option<&RouteTable>) -> RouteTable {
        let mut known: HashMap<SocketAddr, Arc<Endpoint>> = HashMap::new();
        if let Some(prev) = previous {
            for (_, route) in prev.iter() {
                for ep in route.endpoints.iter() {
                    known.entry(ep.addr).or_insert_with(|| ep.clone());
                }
            }
        }
        let mut endpoint_count = 0;
        let services = self
            .services
            .into_iter()
            .map(|(host, routes)| {
                let routes: Box<[Route]> = routes
                    .into_iter()
                    .map(|(port, subset, addrs)| {
                        let stats = previous
                            .and_then(|p| p.lookup(&host, port, &subset))
                            .map_or_else(Arc::default, |r| r.stats.clone());
                        endpoint_count += addrs.len();
                        let endpoints = addrs
                            .into_iter()
                            .map(|a| {
                                known
                                    .entry(a)
                                    .or_insert_with(|| Arc::new(Endpoint::new(a)))
                                    .clone()
                            })
                            .collect();
                        Route {
                            port,
                            subset,
                            endpoints,
                            cursor: AtomicUsize::new(0),
                            stats,
                        }
                    })
                    .collect();
                (host, routes)
            })
            .collect();
        RouteTable {
            version: 0,
            services,
            endpoint_count,
        }
    }
}

/// The published snapshot: one atomic pointer. Cloning the handle shares it.
#[derive(Debug, Default)]
pub struct Routes {
    current: ArcSwapOption<RouteTable>,
    next_version: AtomicU64,
}

impl Routes {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The current snapshot, `None` until the first publish. Lock-free (one atomic load).
    pub fn load(&self) -> Guard<Option<Arc<RouteTable>>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc` (for builders that carry health forward).
    pub fn load_full(&self) -> Option<Arc<RouteTable>> {
        self.current.load_full()
    }

    /// Swaps in `table` with the next version number and returns that version.
    pub fn publish(&self, mut table: RouteTable) -> u64 {
        let version = self.next_version.fetch_add(1, Ordering::Relaxed) + 1;
        table.version = version;
        self.current.store(Some(Arc::new(table)));
        version
    }

    /// Whether a snapshot has been published.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookup_by_host_port_subset() {
        let mut b = RouteTableBuilder::new();
        b.add(
            "West.West.svc.cluster.local.",
            8080,
            "",
            [addr("127.0.0.1:1")],
        );
        b.add(
            "west.west.svc.cluster.local",
            8080,
            "v1",
            [addr("127.0.0.1:2")],
        );
        b.add(
            "west.west.svc.cluster.local",
            8080,
            "",
            [addr("127.0.0.1:1"), addr("127.0.0.1:3")],
        );
        let t = b.build(None);
        let r = t.lookup("west.west.svc.cluster.local", 8080, "").unwrap();
        let eps: Vec<_> = r.endpoints.iter().map(|e| e.addr).collect();
        assert_eq!(eps, vec![addr("127.0.0.1:1"), addr("127.0.0.1:3")]);
        assert_eq!(
            t.lookup("west.west.svc.cluster.local", 8080, "v1")
                .unwrap()
                .endpoints[0]
                .addr,
            addr("127.0.0.1:2")
        );
        assert!(t.lookup("west.west.svc.cluster.local", 9090, "").is_none());
        assert_eq!(t.route_count(), 2);
        assert_eq!(t.endpoint_count(), 3);
    }

    #[test]
    fn health_carries_over_between_snapshots() {
        let routes = Routes::new();
        assert!(!routes.is_loaded());
        let mut b = RouteTableBuilder::new();
        b.add("a.local", 1, "", [addr("127.0.0.1:1")]);
        assert_eq!(routes.publish(b.build(None)), 1);
        let old = routes.load_full().unwrap();
        old.lookup("a.local", 1, "").unwrap().endpoints[0]
            .ejected_until_ms
            .store(99, Ordering::Relaxed);
        let mut b = RouteTableBuilder::new();
        b.add("a.local", 1, "", [addr("127.0.0.1:1"), addr("127.0.0.1:2")]);
        assert_eq!(routes.publish(b.build(Some(&old))), 2);
        let new = routes.load_full().unwrap();
        let r = new.lookup("a.local", 1, "").unwrap();
        assert!(r.endpoints[0].is_ejected(50));
        assert!(!r.endpoints[1].is_ejected(50));
        assert_eq!(new.version(), 2);
    }
}
