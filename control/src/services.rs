//! Services and their endpoints as an operator writes them — the services file, the config
//! file's `services:` list and the `--endpoints` flag — and the route table built from them.
//!
//! ```yaml
//! services:
//!   - host: west.west.svc.cluster.local
//!     port: 8080
//!     subset: v1            # optional, default "" (the whole service)
//!     endpoints:            # required; [] declares the route with no ready endpoint
//!       - 127.0.0.1:9000
//!       - "[::1]:9001"      # IPv6 must be quoted: a bare [ starts a YAML list
//!       - address: 127.0.0.1:9002
//!         ready: false      # optional, default true; not-ready endpoints get no traffic
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use eastwest_proxy::routes::{RouteTable, RouteTableBuilder};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::error::{ConfigError, Position, from_yaml};
use crate::value::{self, Addr, Checked, DNS_NAME, PortValue, SUBSET};

/// One service port (and subset) and its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service's DNS name, e.g. `west.west.svc.cluster.local` (matched case-insensitively,
    /// a trailing dot ignored).
    pub host: String,
    /// The service port, 1 to 65535: the `8080` of `outbound_.8080_._.host`.
    pub port: u16,
    /// Istio subset (a DestinationRule subset name); empty for the whole service.
    pub subset: String,
    /// May be empty: the route then exists but has no ready endpoint, which the proxy refuses
    /// as "no ready endpoint" rather than "no route".
    pub endpoints: Vec<EndpointSpec>,
}

/// One endpoint: `IP:PORT`, or `{address: IP:PORT, ready: BOOL}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointSpec {
    pub address: SocketAddr,
    /// Not-ready endpoints are kept out of the route table (default true).
    pub ready: bool,
}

impl EndpointSpec {
    pub fn ready(address: SocketAddr) -> Self {
        EndpointSpec {
            address,
            ready: true,
        }
    }
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            address: Addr,
            #[serde(default = "yes")]
            ready: bool,
        }
        fn yes() -> bool {
            true
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EndpointSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("IP:PORT, or a map with `address` and `ready`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<EndpointSpec, E> {
                value::parse_addr(s)
                    .map(EndpointSpec::ready)
                    .map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EndpointSpec, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EndpointSpec {
                    address: long.address.0,
                    ready: long.ready,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<EndpointSpec, A::Error> {
                Err(de::Error::custom(
                    "this is a YAML list, not IP:PORT; quote IPv6 endpoints: \"[::1]:9001\"",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `services:` entry as read, before the duplicate check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    host: Checked<DNS_NAME>,
    port: PortValue,
    #[serde(default)]
    subset: Option<Checked<SUBSET>>,
    endpoints: Vec<EndpointSpec>,
}

/// The services file. `services` is required, so that an empty or truncated read of the file
/// is rejected instead of emptying the route table; an empty table is `services: []`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicesFile {
    services: Vec<Spanned<RawService>>,
}

/// Parses a services file; `origin` names it in errors.
pub fn parse_services(text: &str, origin: &Path) -> Result<Vec<ServiceSpec>, ConfigError> {
    // Said plainly: serde-saphyr would report "unexpected end of file".
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ConfigError::invalid(
            Position::file(origin),
            "",
            "the file is empty; a services file needs a `services:` list (`services: []` for none)",
        ));
    }
    let file: ServicesFile = from_yaml(text, origin)?;
    check_services(file.services, origin, "services")
}

/// Turns raw entries into specs, rejecting a (host, port, subset) listed twice.
pub(crate) fn check_services(
    entries: Vec<Spanned<RawService>>,
    origin: &Path,
    field: &str,
) -> Result<Vec<ServiceSpec>, ConfigError> {
    let mut seen: HashMap<(String, u16, String), (usize, u64)> = HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let at = Position::at(origin, entry.referenced);
        let raw = entry.value;
        let spec = ServiceSpec {
            host: raw.host.0,
            port: raw.port.port(),
            subset: raw.subset.map(|s| s.0).unwrap_or_default(),
            endpoints: raw.endpoints,
        };
        let key = (
            spec.host.trim_end_matches('.').to_ascii_lowercase(),
            spec.port,
            spec.subset.clone(),
        );
        let line = at.line.unwrap_or(0);
        if let Some((j, first_line)) = seen.insert(key, (i, line)) {
            let subset = match spec.subset.as_str() {
                "" => String::new(),
                s => format!(" subset {s}"),
            };
            return Err(ConfigError::invalid(
                at,
                format!("{field}[{i}]"),
                format!(
                    "{} port {}{subset} is already listed at line {first_line} ({field}[{j}]); \
                     list each service port once, with all its endpoints",
                    spec.host, spec.port
                ),
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

/// Parses one `--endpoints` value: `HOST:PORT[/SUBSET]=IP:PORT[,IP:PORT...]`, e.g.
/// `west.west.svc.cluster.local:8080=10.0.0.7:8080,10.0.0.8:8080` or
/// `west.west.svc.cluster.local:8080/v1=[fd00::7]:8080`. Nothing after `=` declares the route
/// with no ready endpoint. All endpoints given this way are ready.
pub fn parse_endpoints_flag(s: &str) -> Result<ServiceSpec, ConfigError> {
    let err = |message: String| ConfigError::Flag {
        flag: "--endpoints",
        value: s.to_string(),
        message,
    };
    let (service, endpoints) = s
        .split_once('=')
        .ok_or_else(|| err("expected HOST:PORT=IP:PORT[,IP:PORT...]".into()))?;
    let (host_port, subset) = match service.split_once('/') {
        Some((hp, subset)) => (hp, subset.trim()),
        None => (service, ""),
    };
    let (host, port) = host_port
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| err(format!("{host_port:?} needs a port: HOST:PORT=IP:PORT")))?;
    value::check_dns_name(host).map_err(&err)?;
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(err(format!("{port:?} is not a port (1-65535)"))),
    };
    if subset.is_empty() && service.contains('/') {
        return Err(err("the subset after `/` is empty".into()));
    }
    value::check_subset(subset).map_err(&err)?;
    let endpoints = if endpoints.trim().is_empty() {
        Vec::new()
    } else {
        endpoints
            .split(',')
            .enumerate()
            .map(|(i, ep)| {
                value::parse_addr(ep.trim())
                    .map(EndpointSpec::ready)
                    .map_err(|e| err(format!("endpoint {}: {e}", i + 1)))
            })
            .collect::<Result<_, _>>()?
    };
    Ok(ServiceSpec {
        host: host.to_string(),
        port,
        subset: subset.to_string(),
        endpoints,
    })
}

/// Builds a route table from `specs` (not-ready endpoints left out; the same service port given
/// twice, e.g. by a flag and by the file, has its endpoints merged). Endpoints already in
/// `previous` keep their passive health and load.
pub fn build_table(specs: &[ServiceSpec], previous: Option<&RouteTable>) -> RouteTable {
    let mut builder = RouteTableBuilder::new();
    add_specs(&mut builder, specs);
    builder.build(previous)
}

/// Adds `specs`' ready endpoints to `builder`.
pub(crate) fn add_specs(builder: &mut RouteTableBuilder, specs: &[ServiceSpec]) {
    for spec in specs {
        let ready = spec.endpoints.iter().filter(|e| e.ready).map(|e| e.address);
        builder.add(&spec.host, spec.port, &spec.subset, ready);
    }
}

#[cfg(test)]
mod tests;
