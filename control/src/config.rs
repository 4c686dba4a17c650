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
use crate::value::{Addr, Bounded, Checked, Dur, HOST_PATTERN, PortValue, opt};

/// The config file. See the field docs for each setting; `None` means "not in the file".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `admin: 0.0.0.0:15021` — address of the admin HTTP server (health, metrics, debug).
    pub admin: Option<SocketAddr>,
    /// `workers: 2` — data-path worker threads, each with its own accept socket (at least 1).
    pub workers: Option<usize>,
    /// `log_format: text` — `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// `balance: round_robin` — `round_robin`, or `p2c` (power of two choices on active
    /// connections).
    pub balance: Option<Balance>,
    /// `forward: auto` — `auto` (splice(2) where available) or `copy` (always the buffered copy).
    pub forward: Option<ForwardMode>,
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
    /// route table.
    pub services: Vec<ServiceSpec>,
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
}

/// `timeouts:` — durations written `500ms`, `15s`, `10m`, `1h` (or sums such as `1m30s`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// `sniff: 15s` — time allowed for a complete TLS ClientHello to arrive.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub sniff: Option<Duration>,
    /// `connect: 10s` — time allowed for one upstream TCP connect.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub connect: Option<Duration>,
    /// `idle: 1h` — a connection with no bytes either way for this long is closed.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub idle: Option<Duration>,
    /// `drain: 20s` — on SIGTERM, how long open connections may go on before the process exits.
    #[serde(default, deserialize_with = "opt::<_, Dur, _>")]
    pub drain: Option<Duration>,
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
    #[serde(default, deserialize_with = "opt::<_, Bounded<1, { u64::MAX }>, _>")]
    workers: Option<usize>,
    #[serde(default)]
    log_format: Option<LogFormat>,
    #[serde(default)]
    balance: Option<BalanceName>,
    #[serde(default)]
    forward: Option<ForwardName>,
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
        let listeners = match raw.listeners {
            Some(list) => Some(check_listeners(list, origin)?),
            None => None,
        };
        let services_file = raw.services_file.map(|file| match origin.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file,
        });
        Ok(Config {
            admin: raw.admin,
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
            listeners,
            timeouts: raw.timeouts,
            limits: raw.limits,
            services_file,
            services: check_services(raw.services, origin, "services")?,
        })
    }

    /// `base` (the proxy's defaults, or what flags already set) with the file's values over it.
    pub fn timeouts(&self, base: Timeouts) -> Timeouts {
        let t = &self.timeouts;
        Timeouts {
            sniff: t.sniff.unwrap_or(base.sniff),
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
        if let Some(first) = addrs.insert(raw.listen.0, line) {
            return Err(ConfigError::invalid(
                at,
                format!("{field}.listen"),
                format!(
                    "{} is already used by the listener at line {first}",
                    raw.listen.0
                ),
            ));
        }
        out.push(ListenerSpec {
            name,
            listen: raw.listen.0,
            hosts,
            target_port: raw.target_port.map_or(443, |p| p.port()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
