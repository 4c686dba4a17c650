//! What the route table needs from each Service and EndpointSlice, taken out of the API
//! objects as they arrive so that the full objects are dropped at once (10,000 services cost
//! their ports and ready addresses, not their JSON).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DynamicObject, PartialObjectMeta};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, name)` of an object.
pub type Key = (Box<str>, Box<str>);

/// A Service's TCP ports. Headless Services (clusterIP `None`) are kept like any other: their
/// routes go to the pods' addresses, which is what a gateway in front of them does too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub ports: Box<[NamedPort]>,
    /// `clusterIP: None`: each endpoint with a `hostname` (a StatefulSet's pods) is also
    /// reachable by itself as `<hostname>.<service>.<namespace>.svc.<domain>`.
    pub headless: bool,
}

/// A port and its name (`""` when unnamed, as in a single-port Service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: Box<str>,
    pub port: u16,
}

/// An EndpointSlice's Service, TCP ports and the endpoints that may take new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    pub service: Box<str>,
    pub ports: Box<[NamedPort]>,
    pub ready: Box<[ReadyEndpoint]>,
}

/// One ready address of a slice and where it runs (for subset labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyEndpoint {
    pub ip: IpAddr,
    /// The Pod behind it (`targetRef`), in the slice's namespace.
    pub pod: Option<Box<str>>,
    /// `zone` (Istio's `topology.kubernetes.io/zone` label).
    pub zone: Option<Box<str>>,
    /// `nodeName` (Istio's `kubernetes.io/hostname` label).
    pub node: Option<Box<str>>,
    /// `hostname` (set for a StatefulSet's pods behind a headless Service).
    pub hostname: Option<Box<str>>,
}

/// Label pairs, sorted by key.
pub type Labels = Box<[(Box<str>, Box<str>)]>;

/// A Pod's labels (pods are watched as metadata only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub labels: Labels,
}

/// What endpoint labels need from a Node: its region (Istio's locality).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub region: Option<Box<str>>,
}

/// A DestinationRule's host, visibility and subsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// `spec.host` as written: a short name (`reviews`, relative to the rule's namespace) or a
    /// full host.
    pub host: Box<str>,
    /// `spec.exportTo`; empty means everywhere (`*`).
    pub export_to: Box<[Box<str>]>,
    pub subsets: Box<[Subset]>,
    /// `metadata.creationTimestamp` (RFC 3339, so it sorts): the older rule wins a conflict.
    pub created: Box<str>,
}

/// A named subset and the labels its endpoints must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    pub name: Box<str>,
    pub labels: Labels,
}

/// What an object contributes to the routes; `None` in [`Object`] position means "nothing"
/// (an ExternalName Service, an FQDN slice, a slice with no Service label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Service(ServiceInfo),
    Slice(SliceInfo),
    Pod(PodInfo),
    Node(NodeInfo),
    /// A DestinationRule, or why it cannot be used (only its own service is affected).
    Rule(Result<RuleInfo, String>),
}

/// The object's key, if it has a name (the API server always sets it); the namespace is `""`
/// for cluster-scoped objects (Nodes).
pub fn key<K: kube::Resource>(object: &K) -> Option<Key> {
    let meta = object.meta();
    Some((
        meta.namespace.as_deref().unwrap_or("").into(),
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
    let headless = spec.cluster_ip.as_deref() == Some("None");
    Some(Object::Service(ServiceInfo { ports, headless }))
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
        .flat_map(|e| {
            let pod = e
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.as_deref())
                .map(Box::from);
            e.addresses.iter().filter_map(move |a| {
                Some(ReadyEndpoint {
                    ip: a.parse::<IpAddr>().ok()?,
                    pod: pod.clone(),
                    zone: e.zone.as_deref().map(Box::from),
                    node: e.node_name.as_deref().map(Box::from),
                    hostname: e.hostname.as_deref().map(Box::from),
                })
            })
        })
        .collect();
    Some(Object::Slice(SliceInfo {
        service,
        ports,
        ready,
    }))
}

fn labels(map: Option<&std::collections::BTreeMap<String, String>>) -> Labels {
    // A BTreeMap iterates in key order: the pairs come out sorted.
    map.into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
        .collect()
}

/// A Pod's labels, from its metadata.
pub fn pod(pod: &PartialObjectMeta<Pod>) -> Option<Object> {
    Some(Object::Pod(PodInfo {
        labels: labels(pod.metadata.labels.as_ref()),
    }))
}

/// A Node's region label, from its metadata.
pub fn node(node: &PartialObjectMeta<Node>) -> Option<Object> {
    let region = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("topology.kubernetes.io/region"))
        .map(|r| r.as_str().into());
    Some(Object::Node(NodeInfo { region }))
}

/// A DestinationRule (any served version: v1 and v1beta1 have the same fields read here), or
/// why it is unusable. Checked here, once per version of the object, not at every table build.
pub fn rule(rule: &DynamicObject) -> Option<Object> {
    Some(Object::Rule(rule_info(rule)))
}

fn rule_info(rule: &DynamicObject) -> Result<RuleInfo, String> {
    let spec = rule.data.get("spec").ok_or("it has no spec")?;
    let host = match spec.get("host").and_then(|h| h.as_str()) {
        Some(h) if !h.trim().is_empty() => h.trim().trim_end_matches('.').to_ascii_lowercase(),
        _ => return Err("spec.host is missing or empty".into()),
    };
    let strings = |v: Option<&serde_json::Value>, field: &str| -> Result<Box<[Box<str>]>, String> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(Box::default()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(Box::from)
                        .ok_or_else(|| format!("{field} holds a non-string"))
                })
                .collect(),
            Some(_) => Err(format!("{field} is not a list")),
        }
    };
    let export_to = strings(spec.get("exportTo"), "spec.exportTo")?;
    let mut subsets: Vec<Subset> = Vec::new();
    let raw = match spec.get("subsets") {
        None | Some(serde_json::Value::Null) => &[][..],
        Some(serde_json::Value::Array(items)) => items.as_slice(),
        Some(_) => return Err("spec.subsets is not a list".into()),
    };
    for (i, subset) in raw.iter().enumerate() {
        let name = match subset.get("name").and_then(|n| n.as_str()) {
            Some(n) if !n.is_empty() => n,
            _ => return Err(format!("spec.subsets[{i}].name is missing")),
        };
        crate::value::check_subset(name).map_err(|e| format!("spec.subsets[{i}].name: {e}"))?;
        if subsets.iter().any(|s| &*s.name == name) {
            return Err(format!(
                "spec.subsets[{i}]: subset {name:?} is defined twice"
            ));
        }
        let mut pairs: Vec<(Box<str>, Box<str>)> = Vec::new();
        match subset.get("labels") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                for (k, v) in map {
                    let v = v
                        .as_str()
                        .ok_or_else(|| format!("spec.subsets[{i}].labels.{k} is not a string"))?;
                    pairs.push((k.as_str().into(), v.into()));
                }
            }
            Some(_) => return Err(format!("spec.subsets[{i}].labels is not a map")),
        }
        pairs.sort();
        subsets.push(Subset {
            name: name.into(),
            labels: pairs.into(),
        });
    }
    Ok(RuleInfo {
        host: host.into(),
        export_to,
        subsets: subsets.into(),
        created: rule
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default()
            .into(),
    })
}

#[cfg(test)]
mod tests;
