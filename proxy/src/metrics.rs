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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceResourceLabels {
    source: String,
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceErrorLabels {
    source: String,
    resource: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceInfoLabels {
    source: String,
    network: String,
    cluster_domain: String,
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
    sniffing: Family<ListenerLabel, Gauge>,
    accept_errors: Family<ListenerLabel, Counter>,
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
    source_info: Family<SourceInfoLabels, Gauge>,
    source_synced: Family<SourceLabel, Gauge>,
    source_up: Family<SourceLabel, Gauge>,
    source_last_sync: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    source_restarts: Family<SourceResourceLabels, Counter>,
    source_relists: Family<SourceResourceLabels, Counter>,
    source_errors: Family<SourceErrorLabels, Counter>,
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
            sniffing: Family::default(),
            accept_errors: Family::default(),
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
            source_info: Family::default(),
            source_synced: Family::default(),
            source_up: Family::default(),
            source_last_sync: Family::default(),
            source_restarts: Family::default(),
            source_relists: Family::default(),
            source_errors: Family::default(),
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
            "connections_sniffing",
            "Connections still sending their ClientHello",
            m.sniffing.clone(),
        );
        r.register(
            "accept_errors",
            "accept(2) failures (out of file descriptors or memory); the listener backs off",
            m.accept_errors.clone(),
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
        r.register(
            "source_info",
            "1 for each Kubernetes route source, labelled with its network and cluster domain",
            m.source_info.clone(),
        );
        r.register(
            "source_synced",
            "1 once a Kubernetes route source has listed everything and published its first snapshot",
            m.source_synced.clone(),
        );
        r.register(
            "source_up",
            "1 while a Kubernetes route source's last request to the API server succeeded, 0 after an error",
            m.source_up.clone(),
        );
        r.register(
            "source_last_sync_timestamp_seconds",
            "Unix time of the last successful list or watch event from the API server",
            m.source_last_sync.clone(),
        );
        r.register(
            "source_watch_restarts",
            "Watches re-established after they failed (the watcher retries with backoff)",
            m.source_restarts.clone(),
        );
        r.register(
            "source_relists",
            "Full relists after the first list (410 Gone, or a restart that lost its place)",
            m.source_relists.clone(),
        );
        r.register(
            "source_errors",
            "Errors talking to the API server, by resource and kind",
            m.source_errors.clone(),
        );
        m
    }

    /// The series of one Kubernetes route source (start-up only: this takes locks).
    pub fn source(&self, name: &str, network: &str, cluster_domain: &str) -> SourceMetrics {
        self.source_info
            .get_or_create(&SourceInfoLabels {
                source: name.to_string(),
                network: network.to_string(),
                cluster_domain: cluster_domain.to_string(),
            })
            .set(1);
        let label = SourceLabel {
            source: name.to_string(),
        };
        SourceMetrics {
            name: name.to_string(),
            synced: self.source_synced.get_or_create(&label).clone(),
            up: self.source_up.get_or_create(&label).clone(),
            last_sync: self.source_last_sync.get_or_create(&label).clone(),
            restarts: self.source_restarts.clone(),
            relists: self.source_relists.clone(),
            errors: self.source_errors.clone(),
        }
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
            sniffing: self.sniffing.get_or_create(&l).clone(),
            accept_errors: self.accept_errors.get_or_create(&l).clone(),
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

/// A Kubernetes route source's series. Recorded on the control runtime, never on the data path.
#[derive(Clone)]
pub struct SourceMetrics {
    name: String,
    synced: Gauge,
    up: Gauge,
    last_sync: Gauge<f64, AtomicU64>,
    restarts: Family<SourceResourceLabels, Counter>,
    relists: Family<SourceResourceLabels, Counter>,
    errors: Family<SourceErrorLabels, Counter>,
}

impl SourceMetrics {
    fn labels(&self, resource: &'static str) -> SourceResourceLabels {
        SourceResourceLabels {
            source: self.name.clone(),
            resource,
        }
    }

    /// The first snapshot was published.
    pub fn set_synced(&self) {
        self.synced.set(1);
    }

    /// A list page or watch event arrived: the API server is reachable and we are current.
    pub fn record_success(&self) {
        self.up.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_sync.set(now);
    }

    /// A request to the API server failed; the watcher will restart it after a backoff.
    pub fn record_error(&self, resource: &'static str, kind: &'static str) {
        self.up.set(0);
        self.errors
            .get_or_create(&SourceErrorLabels {
                source: self.name.clone(),
                resource,
                kind,
            })
            .inc();
        self.restarts.get_or_create(&self.labels(resource)).inc();
    }

    /// A relist began (not the first list).
    pub fn record_relist(&self, resource: &'static str) {
        self.relists.get_or_create(&self.labels(resource)).inc();
    }
}

/// One listener's series, resolved. Cloned counters share their atomics with the registry.
pub struct ListenerMetrics {
    pub accepted: Counter,
    pub active: Gauge,
    pub sniffing: Gauge,
    pub accept_errors: Counter,
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
