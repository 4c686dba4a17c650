//! One connection's record: owns the access-log line and the end-of-connection metrics, and
//! records exactly once, on [`ConnRecord::finish`] or, if the task is dropped first (drain
//! deadline), on drop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::forward::Transferred;
use crate::metrics::ListenerMetrics;
use crate::name;
use crate::reason::Reason;
use crate::sni::HostName;

/// The access log's tracing target: filter it on its own (`RUST_LOG=eastwest::access=off`).
pub const ACCESS_LOG: &str = "eastwest::access";

pub struct ConnRecord<'a> {
    listener: &'a str,
    metrics: &'a Arc<ListenerMetrics>,
    start: Instant,
    pub src: SocketAddr,
    pub sni: Option<HostName>,
    pub target_port: u16,
    pub upstream: Option<SocketAddr>,
    pub transferred: Transferred,
    done: bool,
}

impl<'a> ConnRecord<'a> {
    pub fn new(
        listener: &'a str,
        metrics: &'a Arc<ListenerMetrics>,
        src: SocketAddr,
        target_port: u16,
    ) -> Self {
        metrics.accepted.inc();
        metrics.active.inc();
        ConnRecord {
            listener,
            metrics,
            start: Instant::now(),
            src,
            sni: None,
            target_port,
            upstream: None,
            transferred: Transferred::default(),
            done: false,
        }
    }

    /// Records the connection's end: one access-log line, the reason counter, the active gauge.
    pub fn finish(mut self, reason: Reason) {
        self.record(reason);
    }

    fn record(&mut self, reason: Reason) {
        if self.done {
            return;
        }
        self.done = true;
        self.metrics.active.dec();
        self.metrics.record_end(reason);
        let sni = self.sni.as_ref().map(|s| s.as_str()).unwrap_or("");
        let cluster = ClusterName(sni, self.target_port);
        let up = self
            .transferred
            .upstream
            .load(std::sync::atomic::Ordering::Relaxed);
        let down = self
            .transferred
            .downstream
            .load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            target: ACCESS_LOG,
            listener = self.listener,
            src.addr = %self.src,
            sni,
            dst.service = %cluster,
            dst.addr = self.upstream.map(tracing::field::display),
            forward = self.upstream.map(|_| self.transferred.path()),
            bytes_sent = up,
            bytes_received = down,
            duration_ms = self.start.elapsed().as_millis() as u64,
            reason = reason.as_str(),
        );
    }
}

impl Drop for ConnRecord<'_> {
    fn drop(&mut self) {
        self.record(Reason::Drained);
    }
}

/// Displays the Istio cluster key an SNI names (`outbound|8080|v1|host`), or nothing.
struct ClusterName<'a>(&'a str, u16);

impl std::fmt::Display for ClusterName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        match name::resolve(self.0, self.1) {
            Ok(t) => write!(f, "outbound|{}|{}|{}", t.port, t.subset, t.host),
            Err(_) => Ok(()),
        }
    }
}
