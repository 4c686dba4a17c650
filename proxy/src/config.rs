//! The data path's settings, as plain data: what the binary hands the proxy after merging the
//! command line, the environment and the YAML config file (parsed by `eastwest-control`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::hosts::HostPatterns;

/// How an endpoint is chosen among the ready endpoints of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each new connection goes to the next endpoint in turn.
    #[default]
    RoundRobin,
    /// Power of two choices: two endpoints at random, the one with fewer active connections.
    P2c,
}

/// How bytes are moved once the upstream is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardMode {
    /// splice(2) where the kernel has it (Linux), the buffered copy otherwise.
    #[default]
    Auto,
    /// Always the portable buffered copy (for comparison and for kernels that misbehave).
    Copy,
}

/// One listening socket and what it exposes.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// A name for logs and metric labels.
    pub name: String,
    pub listen: SocketAddr,
    /// Which service hosts may be reached through this listener (an Istio Gateway's `hosts`).
    pub hosts: HostPatterns,
    /// The service port a plain DNS-name SNI (not `outbound_.…`) is routed to.
    pub target_port: u16,
    /// A fixed passthrough listener (Istio's `expose-istiod` on 15012 and 15017): every TLS
    /// connection, whatever its SNI or none, goes to this service host and port; `hosts` and
    /// the Istio-ALPN check do not apply.
    pub forward_to: Option<(String, u16)>,
    /// Federation-style exports: when set, only these names are routed through this listener,
    /// each to the local service host it stands for (`ratings.bookinfo.svc.mesh2-exports.local`
    /// → `ratings.bookinfo.svc.cluster.local`, same port and subset). Keys and values are
    /// lower-case, without a trailing dot.
    pub aliases: Option<std::sync::Arc<std::collections::HashMap<Box<str>, Box<str>>>>,
}

/// Timeouts. Defaults follow Envoy/Istio where a gateway has an established value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed for a complete ClientHello to arrive (Envoy's listener filter timeout: 15s).
    pub sniff: Duration,
    /// The sniff timeout of a connection accepted while more than `max_sniffing` others are
    /// still sniffing (Envoy's overload manager scales timeouts down the same way): a real
    /// client sends its whole ClientHello at once, a trickling one is cut early. No effect
    /// unless shorter than `sniff`.
    pub sniff_pressured: Duration,
    /// Time allowed for one upstream TCP connect (Istio's default connectTimeout: 10s).
    pub connect: Duration,
    /// A connection with no bytes in either direction for this long is closed (Istio's TCP
    /// idle timeout default: 1h).
    pub idle: Duration,
    /// On SIGTERM, how long in-flight connections may continue before the process exits.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            sniff: Duration::from_secs(15),
            sniff_pressured: Duration::from_secs(1),
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(3600),
            drain: Duration::from_secs(20),
        }
    }
}

/// Limits that bound what one client or one bad upstream can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest ClientHello (all its TLS records, headers included) we wait for. rustls caps
    /// handshake reassembly at 64 KiB; so do we by default. The peek buffer is per worker, not
    /// per connection, so the cap costs no memory per connection.
    pub max_client_hello: usize,
    /// Connections open at once across all listeners; more are refused at accept.
    pub max_connections: usize,
    /// Connections still sending their ClientHello, across listeners, past which a new
    /// connection gets only `sniff_pressured` to send its own.
    pub max_sniffing: usize,
    /// Upstream connect attempts per connection, each to a different endpoint.
    pub connect_attempts: u32,
    /// Consecutive connect failures after which an endpoint is ejected.
    pub eject_after_failures: u32,
    /// How long an ejected endpoint stays out of rotation (Envoy's base ejection time: 30s).
    pub ejection_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_client_hello: 64 * 1024,
            max_connections: 100_000,
            max_sniffing: 4096,
            connect_attempts: 3,
            eject_after_failures: 3,
            ejection_time: Duration::from_secs(30),
        }
    }
}

/// Everything the data path needs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listeners: Vec<ListenerConfig>,
    pub admin: Option<SocketAddr>,
    /// Data-path worker threads, each with its own runtime and `SO_REUSEPORT` socket.
    pub workers: usize,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub balance: Balance,
    pub forward: ForwardMode,
    /// Accept only Istio mTLS: a ClientHello must offer one of Istio's ALPNs (`istio`,
    /// `istio-peer-exchange`, `istio-http/1.0`, `istio-http/1.1`, `istio-h2`), as the
    /// `AUTO_PASSTHROUGH` filter chain of Istio's east-west gateway matches them.
    pub istio_mtls_only: bool,
}

impl ProxyConfig {
    /// These listeners with every other setting at its default: one worker, no admin
    /// listener, default timeouts and limits, automatic forwarding, any ALPN accepted.
    /// For embedding the data path (the demo, tests); the binary builds its config from flags.
    pub fn new(listeners: Vec<ListenerConfig>) -> Self {
        ProxyConfig {
            listeners,
            admin: None,
            workers: 1,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            balance: Balance::default(),
            forward: ForwardMode::default(),
            istio_mtls_only: false,
        }
    }
}
