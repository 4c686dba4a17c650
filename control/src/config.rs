//! The gateway's YAML config file (`eastwest run --config FILE`). Every setting is optional:
//! the binary takes a command-line flag over an environment variable over this file over the
//! built-in default. Unknown fields are errors, so a misspelt setting is not silently ignored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use eastwest_proxy::config::{Balance, ForwardMode, Limits, ListenerConfig, Timeouts};
use eastwest_proxy::hosts::HostPatterns;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::error::{ConfigError, Position, from_yaml};
use crate::services::{RawService, ServiceSpec, check_services};
use crate::value::{
    Addr, Bounded, CLUSTER_ID, Checked, DNS_NAME, Dur, HOST_PATTERN, NAMESPACE, PortValue,
    WatchDur, opt,
};

/// The config file. See the field docs for each setting; `None` means "not in the file".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `admin: 0.0.0.0:15021` — address of the admin HTTP server (health, metrics, debug).
    pub admin: Option<SocketAddr>,
    /// `stats: 0.0.0.0:15090` — an extra address serving only the metrics, where Envoy serves
    /// them (Prometheus scrape configs and Kiali expect 15090).
    pub stats: Option<SocketAddr>,
    /// `workers: 2` — data-path worker threads, each with its own accept socket (at least 1).
    pub workers: Option<usize>,
    /// `log_format: text` — `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// `balance: round_robin` — `round_robin`, or `p2c` (power of two choices on active
    /// connections).
    pub balance: Option<Balance>,
    /// `forward: auto` — `auto` (splice(2) where available) or `copy` (always the buffered copy).
    pub forward: Option<ForwardMode>,
    /// `istio_mtls_only: true` — accept only ClientHellos offering an Istio ALPN, forward only
    /// to endpoints whose pod has `security.istio.io/tlsMode: istio`.
    pub istio_mtls_only: Option<bool>,
    /// `listeners:` — if given, replaces the single `--listen` listener. A list of
    /// [`ListenerSpec`]s; at least one, each on its own address.
    pub listeners: Option<Vec<ListenerSpec>>,
    /// `timeouts:` — see [`TimeoutsSpec`].
    pub timeouts: TimeoutsSpec,
    /// `limits:` — see [`LimitsSpec`].
    pub limits: LimitsSpec,
    /// `services_file: /etc/eastwest/services.yaml` — the file source of endpoints (see
    /// [`crate::services`]), reloaded when it changes. A relative path is taken from the config
    /// file's directory; this field holds the resolved path.
    pub services_file: Option<PathBuf>,
    /// `services: [...]` — static services, in the services file's format; merged into every
    /// route table of the default source (listeners without `cluster`).
    pub services: Vec<ServiceSpec>,
    /// `clusters:` — Kubernetes clusters whose Services and EndpointSlices are routed, each
    /// through the listeners that name it (`cluster: NAME`). See [`ClusterSpec`].
    pub clusters: Vec<ClusterSpec>,
}

/// One `clusters:` entry: a Kubernetes API to learn routes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// `name: west` — required; the cluster ID in logs, metrics and `/debug/routes`, and what
    /// a listener's `cluster` refers to.
    pub name: String,
    /// `kubeconfig: west.kubeconfig` — relative to the config file's directory; absent: what
    /// kube-rs infers (`$KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// `context: west-admin` — the kubeconfig context; default its `current-context`.
    pub context: Option<String>,
    /// `cluster_domain: cluster.local`.
    pub cluster_domain: String,
    /// `network: network2` — the cluster's Istio network, reported in metrics.
    pub network: String,
    /// `namespaces: [east, west]` — watch only these; default all.
    pub namespaces: Vec<String>,
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// One `listeners:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// `name: tls` — for logs and metric labels; default `listener-<index>` (from 0).
    pub name: String,
    /// `listen: 0.0.0.0:15443` — required.
    pub listen: SocketAddr,
    /// `hosts: ["*.local"]` — the service hosts this listener exposes, as in an Istio Gateway's
    /// `hosts` (exact names, `*.suffix`, `*`); default `["*.local"]`.
    pub hosts: Vec<String>,
    /// `target_port: 443` — the service port that a plain DNS-name SNI (not `outbound_.…`)
    /// is routed to; default 443.
    pub target_port: u16,
    /// `cluster: west` — route with that `clusters:` entry's Services; absent: the default
    /// source (`--kube`, `--services-file`, `--endpoints`, `services:`).
    pub cluster: Option<String>,
    /// `forward_to: istiod.istio-system.svc.cluster.local:15012` — a fixed passthrough
    /// listener: every TLS connection, whatever its SNI (or none), goes to this service host and
    /// port, as Istio's `expose-istiod` does on 15012 and 15017 (→ istiod's 443).
    pub forward_to: Option<(String, u16)>,
    /// `aliases: [{name: ratings.bookinfo.svc.mesh2-exports.local, service:
    /// ratings.bookinfo.svc.cluster.local}]` — federation-style exports: the listener routes
    /// only these names, each to its local service (same port and subset).
    pub aliases: Vec<(String, String)>,
}

/// `timeouts:` — durations written `500ms`, `15s`, `10m`, `1h` (or sums such as `1m30s`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// `sniff: 15s` — time allowed for a complete TLS ClientHello to arrive.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub sniff: Option<Duration>,
    /// `sniff_pressured: 1s` — the sniff timeout of a connection that arrives while more than
    /// `limits.max_sniffing` connections are still sniffing (no effect unless shorter than `sniff`).
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub sniff_pressured: Option<Duration>,
    /// `connect: 10s` — time allowed for one upstream TCP connect.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub connect: Option<Duration>,
    /// `idle: 1h` — a connection with no bytes either way for this long is closed.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub idle: Option<Duration>,
    /// `drain: 20s` — on SIGTERM, how long open connections may go on before the process exits.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub drain: Option<Duration>,
    /// `watch: 60s` — each Kubernetes watch is ended by the API server after this long and
    /// re-opened; one silent for this + 5 s is taken as stalled and re-opened, and a list that
    /// answers nothing for this + 10 s is retried (whole seconds, 1s to 1h).
    #[serde(default, deserialize_with = "opt::<_, WatchDur, _>")]
    pub watch: Option<Duration>,
}

/// `limits:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// `max_client_hello: 65536` — largest ClientHello waited for, in bytes (512 to 1048576).
    #[serde(default, deserialize_with = "opt::<_, Bounded<512, 1_048_576>, _>")]
    pub max_client_hello: Option<usize>,
    /// `max_connections: 100000` — connections open at once; more are refused (at least 1).
    #[serde(default, deserialize_with = "opt::<_, Bounded<1, { u64::MAX }>, _>")]
    pub max_connections: Option<usize>,
    /// `max_sniffing: 4096` — connections still sending their ClientHello past which a new one
    /// gets only `timeouts.sniff_pressured` (at least 1).
    #[serde(default, deserialize_with = "opt::<_, Bounded<1, { u64::MAX }>, _>")]
    pub max_sniffing: Option<usize>,
    /// `connect_attempts: 3` — upstream connect attempts per connection, each to another
    /// endpoint (1 to 16, as `--connect-attempts`). Each attempt may take the whole connect
    /// timeout while the client waits, so 16 already lets one connection hang 16 × 10s by
    /// default; past that, more attempts only hold clients longer.
    #[serde(default, deserialize_with = "opt::<_, Bounded<1, 16>, _>")]
    pub connect_attempts: Option<u32>,
    /// `eject_after_failures: 3` — consecutive connect failures that eject an endpoint
    /// (at least 1).
    #[serde(
        default,
        deserialize_with = "opt::<_, Bounded<1, { u32::MAX as u64 }>, _>"
    )]
    pub eject_after_failures: Option<u32>,
    /// `ejection_time: 30s` — how long an ejected endpoint stays out of rotation.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub ejection_time: Option<Duration>,
}

/// The file as read, before the checks that span entries.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, deserialize_with = "opt::<_, Addr, _>")]
    admin: Option<SocketAddr>,
    #[serde(default, deserialize_with = "opt::<_, Addr, _>")]
    stats: Option<SocketAddr>,
    #[serde(default, deserialize_with = "opt::<_, Bounded<1, { u64::MAX }>, _>")]
    workers: Option<usize>,
    #[serde(default)]
    log_format: Option<LogFormat>,
    #[serde(default)]
    balance: Option<BalanceName>,
    #[serde(default)]
    forward: Option<ForwardName>,
    #[serde(default)]
    istio_mtls_only: Option<bool>,
    #[serde(default)]
    listeners: Option<Spanned<Vec<Spanned<RawListener>>>>,
    #[serde(default)]
    timeouts: TimeoutsSpec,
    #[serde(default)]
    limits: LimitsSpec,
    #[serde(default)]
    services_file: Option<PathBuf>,
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
    #[serde(default)]
    clusters: Option<Spanned<Vec<Spanned<RawCluster>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Checked<CLUSTER_ID>,
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    cluster_domain: Option<Checked<DNS_NAME>>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    namespaces: Vec<Checked<NAMESPACE>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    #[serde(default)]
    name: Option<String>,
    listen: Addr,
    #[serde(default)]
    hosts: Option<Spanned<Vec<Checked<HOST_PATTERN>>>>,
    #[serde(default)]
    target_port: Option<PortValue>,
    #[serde(default)]
    cluster: Option<Spanned<String>>,
    #[serde(default)]
    forward_to: Option<HostPort>,
    #[serde(default)]
    aliases: Option<Spanned<Vec<Spanned<RawAlias>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlias {
    name: Checked<DNS_NAME>,
    service: Checked<DNS_NAME>,
}

/// `host:port`, a service host (checked as a DNS name) and a port.
struct HostPort(String, u16);

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d)?;
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| D::Error::custom(format!("{s:?} needs a port: HOST:PORT")))?;
        crate::value::check_dns_name(host).map_err(D::Error::custom)?;
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(HostPort(host.to_ascii_lowercase(), p)),
            _ => Err(D::Error::custom(format!(
                "{port:?} is not a port (1-65535)"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum BalanceName {
    RoundRobin,
    P2c,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ForwardName {
    Auto,
    Copy,
}

impl Config {
    /// Reads and parses the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `origin` is the file it came from, named in errors and used to
    /// resolve a relative `services_file`.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = from_yaml(text, origin)?;
        let resolve = |file: PathBuf| match origin.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file,
        };
        let (clusters, cluster_lines) = match raw.clusters {
            Some(list) => check_clusters(list, origin, resolve)?,
            None => (Vec::new(), Vec::new()),
        };
        let listeners = match raw.listeners {
            Some(list) => Some(check_listeners(list, origin, &clusters)?),
            None => None,
        };
        check_clusters_used(&clusters, &cluster_lines, listeners.as_deref())?;
        let services_file = raw.services_file.map(resolve);
        Ok(Config {
            admin: raw.admin,
            stats: raw.stats,
            workers: raw.workers,
            log_format: raw.log_format,
            balance: raw.balance.map(|b| match b {
                BalanceName::RoundRobin => Balance::RoundRobin,
                BalanceName::P2c => Balance::P2c,
            }),
            forward: raw.forward.map(|f| match f {
                ForwardName::Auto => ForwardMode::Auto,
                ForwardName::Copy => ForwardMode::Copy,
            }),
            istio_mtls_only: raw.istio_mtls_only,
            listeners,
            timeouts: raw.timeouts,
            limits: raw.limits,
            services_file,
            services: check_services(raw.services, origin, "services")?,
            clusters,
        })
    }

    /// `base` (the proxy's defaults, or what flags already set) with the file's values over it.
    pub fn timeouts(&self, base: Timeouts) -> Timeouts {
        let t = &self.timeouts;
        Timeouts {
            sniff: t.sniff.unwrap_or(base.sniff),
            sniff_pressured: t.sniff_pressured.unwrap_or(base.sniff_pressured),
            connect: t.connect.unwrap_or(base.connect),
            idle: t.idle.unwrap_or(base.idle),
            drain: t.drain.unwrap_or(base.drain),
        }
    }

    /// `base` with the file's values over it.
    pub fn limits(&self, base: Limits) -> Limits {
        let l = &self.limits;
        Limits {
            max_client_hello: l.max_client_hello.unwrap_or(base.max_client_hello),
            max_connections: l.max_connections.unwrap_or(base.max_connections),
            max_sniffing: l.max_sniffing.unwrap_or(base.max_sniffing),
            connect_attempts: l.connect_attempts.unwrap_or(base.connect_attempts),
            eject_after_failures: l.eject_after_failures.unwrap_or(base.eject_after_failures),
            ejection_time: l.ejection_time.unwrap_or(base.ejection_time),
        }
    }

    /// The listeners, if the file lists them (`None`: use `--listen`). A [`Config`] read by
    /// [`Config::parse`] has had its host patterns checked already, so this fails only for one
    /// built in code.
    pub fn listener_configs(&self) -> Result<Option<Vec<ListenerConfig>>, ConfigError> {
        let Some(specs) = &self.listeners else {
            return Ok(None);
        };
        let configs = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let hosts = HostPatterns::parse(&spec.hosts).map_err(|e| {
                    ConfigError::invalid(
                        Position::nowhere(),
                        format!("listeners[{i}].hosts"),
                        e.to_string(),
                    )
                })?;
                Ok(ListenerConfig {
                    name: spec.name.clone(),
                    listen: spec.listen,
                    hosts,
                    target_port: spec.target_port,
                    forward_to: spec.forward_to.clone(),
                    aliases: (!spec.aliases.is_empty()).then(|| {
                        std::sync::Arc::new(
                            spec.aliases
                                .iter()
                                .map(|(n, s)| (n.as_str().into(), s.as_str().into()))
                                .collect(),
                        )
                    }),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(Some(configs))
    }
}

/// Applies defaults and rejects what would only fail later, or silently: no listener, a
/// listener exposing nothing, two listeners on one address (`SO_REUSEPORT` would let both bind
/// and share connections) or with one name (their metrics would merge).
fn check_listeners(
    list: Spanned<Vec<Spanned<RawListener>>>,
    origin: &Path,
    clusters: &[ClusterSpec],
) -> Result<Vec<ListenerSpec>, ConfigError> {
    if list.value.is_empty() {
        return Err(ConfigError::invalid(
            Position::at(origin, list.referenced),
            "listeners",
            "the list is empty; give at least one listener, or leave `listeners` out to use --listen",
        ));
    }
    let mut names: HashMap<String, u64> = HashMap::new();
    let mut addrs: HashMap<SocketAddr, u64> = HashMap::new();
    let mut out = Vec::with_capacity(list.value.len());
    for (i, entry) in list.value.into_iter().enumerate() {
        let at = Position::at(origin, entry.referenced);
        let line = at.line.unwrap_or(0);
        let field = format!("listeners[{i}]");
        let raw = entry.value;
        let name = raw.name.unwrap_or_else(|| format!("listener-{i}"));
        let hosts = match raw.hosts {
            None => vec!["*.local".to_string()],
            Some(hosts) if hosts.value.is_empty() => {
                return Err(ConfigError::invalid(
                    Position::at(origin, hosts.referenced),
                    format!("{field}.hosts"),
                    "the list is empty, so the listener would expose nothing; leave it out for \
                     the default [\"*.local\"]",
                ));
            }
            Some(hosts) => hosts.value.into_iter().map(|h| h.0).collect(),
        };
        if let Some(first) = names.insert(name.clone(), line) {
            return Err(ConfigError::invalid(
                at,
                format!("{field}.name"),
                format!("{name:?} is already the name of the listener at line {first}"),
            ));
        }
        // Port 0 asks the kernel for a free port each time: never a clash.
        let clash = match raw.listen.0.port() {
            0 => None,
            _ => addrs.insert(raw.listen.0, line),
        };
        if let Some(first) = clash {
            return Err(ConfigError::invalid(
                at,
                format!("{field}.listen"),
                format!(
                    "{} is already used by the listener at line {first}",
                    raw.listen.0
                ),
            ));
        }
        let cluster = match raw.cluster {
            Some(c) if !clusters.iter().any(|k| k.name == c.value) => {
                let known: Vec<&str> = clusters.iter().map(|k| k.name.as_str()).collect();
                return Err(ConfigError::invalid(
                    Position::at(origin, c.referenced),
                    format!("{field}.cluster"),
                    if known.is_empty() {
                        format!("{:?} is not in `clusters:` (the file lists none)", c.value)
                    } else {
                        format!(
                            "{:?} is not in `clusters:` (known: {})",
                            c.value,
                            known.join(", ")
                        )
                    },
                ));
            }
            c => c.map(|c| c.value),
        };
        out.push(ListenerSpec {
            name,
            listen: raw.listen.0,
            hosts,
            target_port: raw.target_port.map_or(443, |p| p.port()),
            cluster,
            forward_to: raw.forward_to.map(|HostPort(h, p)| (h, p)),
            aliases: match raw.aliases {
                Some(list) => check_aliases(list, origin, &field)?,
                None => Vec::new(),
            },
        });
    }
    Ok(out)
}

/// Lower-case names without a trailing dot; refuses an empty list and a name given twice.
fn check_aliases(
    list: Spanned<Vec<Spanned<RawAlias>>>,
    origin: &Path,
    listener: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    if list.value.is_empty() {
        return Err(ConfigError::invalid(
            Position::at(origin, list.referenced),
            format!("{listener}.aliases"),
            "the list is empty, so the listener would route nothing; leave it out to route \
             every service",
        ));
    }
    let norm = |s: String| s.trim_end_matches('.').to_ascii_lowercase();
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, entry) in list.value.into_iter().enumerate() {
        let name = norm(entry.value.name.0);
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ConfigError::invalid(
                Position::at(origin, entry.referenced),
                format!("{listener}.aliases[{i}].name"),
                format!("{name:?} is listed twice"),
            ));
        }
        out.push((name, norm(entry.value.service.0)));
    }
    Ok(out)
}

/// Applies defaults, resolves kubeconfig paths and rejects an empty list or a repeated name.
/// Returns each cluster's position too, for [`check_clusters_used`].
fn check_clusters(
    list: Spanned<Vec<Spanned<RawCluster>>>,
    origin: &Path,
    resolve: impl Fn(PathBuf) -> PathBuf,
) -> Result<(Vec<ClusterSpec>, Vec<Position>), ConfigError> {
    if list.value.is_empty() {
        return Err(ConfigError::invalid(
            Position::at(origin, list.referenced),
            "clusters",
            "the list is empty; list at least one cluster, or leave `clusters` out",
        ));
    }
    let mut out: Vec<ClusterSpec> = Vec::with_capacity(list.value.len());
    let mut positions: Vec<Position> = Vec::with_capacity(list.value.len());
    for (i, entry) in list.value.into_iter().enumerate() {
        let at = Position::at(origin, entry.referenced);
        let raw = entry.value;
        let name = raw.name.0;
        if let Some(j) = out.iter().position(|c| c.name == name) {
            return Err(ConfigError::invalid(
                at,
                format!("clusters[{i}].name"),
                format!(
                    "{name:?} is already the name of the cluster at line {}",
                    positions[j].line.unwrap_or(0)
                ),
            ));
        }
        out.push(ClusterSpec {
            name,
            kubeconfig: raw.kubeconfig.map(&resolve),
            context: raw.context,
            cluster_domain: raw
                .cluster_domain
                .map_or_else(|| "cluster.local".to_string(), |d| d.0),
            network: raw.network.unwrap_or_default(),
            namespaces: raw.namespaces.into_iter().map(|n| n.0).collect(),
        });
        positions.push(at);
    }
    Ok((out, positions))
}

/// A cluster no listener names would be watched for nothing: most likely a listener lost its
/// `cluster:` line, so refuse rather than route that listener somewhere else.
fn check_clusters_used(
    clusters: &[ClusterSpec],
    positions: &[Position],
    listeners: Option<&[ListenerSpec]>,
) -> Result<(), ConfigError> {
    for (i, (cluster, at)) in clusters.iter().zip(positions).enumerate() {
        let used = listeners
            .unwrap_or_default()
            .iter()
            .any(|l| l.cluster.as_deref() == Some(cluster.name.as_str()));
        if !used {
            return Err(ConfigError::invalid(
                at.clone(),
                format!("clusters[{i}]"),
                format!(
                    "no listener routes to cluster {:?}; give one `cluster: {}` under `listeners:`",
                    cluster.name, cluster.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
