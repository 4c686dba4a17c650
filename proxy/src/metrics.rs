//! Metrics: the Prometheus registry and the pre-resolved handles the data path uses.
//!
//! Labelled series are resolved once per listener at start-up, so recording a connection is a
//! handful of relaxed atomic adds: no map lookup, no lock (prometheus-client's `Family` and
//! `Histogram` take locks, so the sniff histogram here is our own atomic one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::reason::Reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    listener: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    listener: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Sniff-duration bucket bounds in seconds: a ClientHello normally lands in one segment within
/// microseconds; the tail shows slow or hostile clients up to the sniff timeout.
const SNIFF_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// A fixed-bucket histogram updated with relaxed atomics only. Clones share the buckets (like
/// prometheus-client's `Counter`), so a resolved handle is observed without the family's lock.
#[derive(Debug, Default, Clone)]
pub struct AtomicHistogram(Arc<HistogramInner>);

#[derive(Debug, Default)]
struct HistogramInner {
    buckets: [AtomicU64; SNIFF_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = SNIFF_BUCKETS.iter().position(|b| secs <= *b) {
            self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.0.count.fetch_add(1, Ordering::Relaxed);
        self.0
            .sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut cumulative = 0;
        let mut buckets: Vec<(f64, u64)> = SNIFF_BUCKETS
            .iter()
            .zip(&self.0.buckets)
            .map(|(bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let count = self.0.count.load(Ordering::Relaxed);
        buckets.push((f64::INFINITY, count));
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The process's metrics. Create one, then [`Metrics::listener`] once per listener.
pub struct Metrics {
    registry: Registry,
    accepted: Family<ListenerLabel, Counter>,
    active: Family<ListenerLabel, Gauge>,
    closed: Family<ReasonLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    bytes: Family<DirectionLabels, Counter>,
    connect_failures: Family<ListenerLabel, Counter>,
    ejections: Family<ListenerLabel, Counter>,
    sniff: Family<ListenerLabel, AtomicHistogram>,
    pub route_table_version: Gauge,
    pub route_table_routes: Gauge,
    pub route_table_endpoints: Gauge,
    pub draining: Gauge,
    reloads: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("eastwest"),
            accepted: Family::default(),
            active: Family::default(),
            closed: Family::default(),
            refused: Family::default(),
            bytes: Family::default(),
            connect_failures: Family::default(),
            ejections: Family::default(),
            sniff: Family::default(),
            route_table_version: Gauge::default(),
            route_table_routes: Gauge::default(),
            route_table_endpoints: Gauge::default(),
            draining: Gauge::default(),
            reloads: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "connections_accepted",
            "Connections accepted",
            m.accepted.clone(),
        );
        r.register(
            "connections_active",
            "Connections open now",
            m.active.clone(),
        );
        r.register(
            "connections_closed",
            "Connections ended, by reason (refusals included)",
            m.closed.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused before forwarding, by reason",
            m.refused.clone(),
        );
        r.register(
            "bytes",
            "Bytes forwarded; direction=upstream is client to endpoint, downstream is endpoint to client",
            m.bytes.clone(),
        );
        r.register(
            "upstream_connect_failures",
            "Upstream connect attempts that failed (refused, timed out, unreachable)",
            m.connect_failures.clone(),
        );
        r.register(
            "endpoint_ejections",
            "Endpoints ejected after consecutive connect failures",
            m.ejections.clone(),
        );
        r.register(
            "sniff_duration_seconds",
            "Time from accept to a decision on the ClientHello",
            m.sniff.clone(),
        );
        r.register(
            "route_table_version",
            "Version of the route-table snapshot in use",
            m.route_table_version.clone(),
        );
        r.register(
            "route_table_routes",
            "Routes (service host, port, subset) in the snapshot in use",
            m.route_table_routes.clone(),
        );
        r.register(
            "route_table_endpoints",
            "Endpoints in the snapshot in use",
            m.route_table_endpoints.clone(),
        );
        r.register(
            "draining",
            "1 while the gateway drains after SIGTERM",
            m.draining.clone(),
        );
        r.register(
            "config_reloads",
            "Route source reloads, by result (ok, rejected)",
            m.reloads.clone(),
        );
        m
    }

    /// Resolves every labelled series of one listener (start-up only: this takes locks).
    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        let l = ListenerLabel {
            listener: name.to_string(),
        };
        // Every reason has a slot so recording is an index; only the series that can move
        // are created (a refusal counter for `closed` would be noise on every scrape).
        let per_reason = |fam: &Family<ReasonLabels, Counter>, refusals_only: bool| {
            Reason::ALL.map(|r| {
                let labels = ReasonLabels {
                    listener: name.to_string(),
                    reason: r.as_str(),
                };
                if refusals_only && !r.is_refusal() {
                    Counter::default()
                } else {
                    fam.get_or_create(&labels).clone()
                }
            })
        };
        let dir = |d| {
            self.bytes
                .get_or_create(&DirectionLabels {
                    listener: name.to_string(),
                    direction: d,
                })
                .clone()
        };
        Arc::new(ListenerMetrics {
            accepted: self.accepted.get_or_create(&l).clone(),
            active: self.active.get_or_create(&l).clone(),
            closed: per_reason(&self.closed, false),
            refused: per_reason(&self.refused, true),
            bytes_upstream: dir("upstream"),
            bytes_downstream: dir("downstream"),
            connect_failures: self.connect_failures.get_or_create(&l).clone(),
            ejections: self.ejections.get_or_create(&l).clone(),
            sniff: self.sniff.get_or_create(&l).clone(),
        })
    }

    /// Counts one reload of a route source.
    pub fn record_reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "rejected" },
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One listener's series, resolved. Cloned counters share their atomics with the registry.
pub struct ListenerMetrics {
    pub accepted: Counter,
    pub active: Gauge,
    closed: [Counter; Reason::ALL.len()],
    refused: [Counter; Reason::ALL.len()],
    pub bytes_upstream: Counter,
    pub bytes_downstream: Counter,
    pub connect_failures: Counter,
    pub ejections: Counter,
    pub sniff: AtomicHistogram,
}

impl ListenerMetrics {
    /// Counts a connection's end under its reason (and as a refusal if it was one).
    pub fn record_end(&self, reason: Reason) {
        self.closed[reason.index()].inc();
        if reason.is_refusal() {
            self.refused[reason.index()].inc();
        }
    }

    pub fn observe_sniff(&self, d: Duration) {
        self.sniff.observe(d);
    }
}
