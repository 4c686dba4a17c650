//! What the route table needs from each Service and EndpointSlice, taken out of the API
//! objects as they arrive so that the full objects are dropped at once (10,000 services cost
//! their ports and ready addresses, not their JSON).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, name)` of an object.
pub type Key = (Box<str>, Box<str>);

/// A Service's TCP ports. Headless Services (clusterIP `None`) are kept like any other: their
/// routes go to the pods' addresses, which is what a gateway in front of them does too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub ports: Box<[NamedPort]>,
}

/// A port and its name (`""` when unnamed, as in a single-port Service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: Box<str>,
    pub port: u16,
}

/// An EndpointSlice's Service, TCP ports and the addresses that may take new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    pub service: Box<str>,
    pub ports: Box<[NamedPort]>,
    pub ready: Box<[IpAddr]>,
}

/// What an object contributes to the routes; `None` in [`Object`] position means "nothing"
/// (an ExternalName Service, an FQDN slice, a slice with no Service label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Service(ServiceInfo),
    Slice(SliceInfo),
}

/// The object's key, if it has a name and a namespace (the API server always sets both).
pub fn key<K: kube::Resource>(object: &K) -> Option<Key> {
    let meta = object.meta();
    Some((
        meta.namespace.as_deref()?.into(),
        meta.name.as_deref()?.into(),
    ))
}

fn is_tcp(protocol: Option<&str>) -> bool {
    // Protocol defaults to TCP in both types.
    protocol.is_none_or(|p| p == "TCP")
}

fn port_number(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}

/// The route-relevant part of a Service; `None` for ExternalName Services (a DNS alias with no
/// endpoints of its own) and Services without a spec.
pub fn service(svc: &Service) -> Option<Object> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter(|p| is_tcp(p.protocol.as_deref()))
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.as_deref().unwrap_or("").into(),
                port: port_number(p.port)?,
            })
        })
        .collect();
    Some(Object::Service(ServiceInfo { ports }))
}

/// The route-relevant part of an EndpointSlice; `None` for FQDN slices and slices not owned by
/// a Service. Only endpoints whose `ready` condition is true or absent, and which are not
/// terminating, are kept: they alone take new connections.
pub fn slice(slice: &EndpointSlice) -> Option<Object> {
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return None;
    }
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)?
        .as_str()
        .into();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter(|p| is_tcp(p.protocol.as_deref()))
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.as_deref().unwrap_or("").into(),
                port: port_number(p.port?)?,
            })
        })
        .collect();
    let ready = slice
        .endpoints
        .iter()
        .filter(|e| {
            let c = e.conditions.as_ref();
            c.and_then(|c| c.ready) != Some(false) && c.and_then(|c| c.terminating) != Some(true)
        })
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .collect();
    Some(Object::Slice(SliceInfo {
        service,
        ports,
        ready,
    }))
}

#[cfg(test)]
mod tests;
