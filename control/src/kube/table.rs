//! A cluster's stores → one complete route table: for every Service port, the ready addresses
//! of every slice of that Service, on the slice port with the Service port's name (so named
//! targetPorts work); and for every subset of the DestinationRule that applies to the Service,
//! the same endpoints narrowed to those whose labels match the subset's.
//!
//! Which DestinationRule applies is decided as istiod decides it for a gateway proxy: rules in
//! the gateway's own namespace first (unless that is the root namespace), then rules in the
//! Service's namespace exported to the gateway, then rules in the root namespace
//! (`istio-system`) exported to it; rules at the same
//! level are merged in creation order, the older one winning a subset defined twice. A rule that
//! cannot be used is reported and ignored: its Service still routes, without its subsets, and no
//! other Service is touched.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

use eastwest_proxy::routes::{RouteTable, RouteTableBuilder};

use super::model::{NodeInfo, Object, PodInfo, ReadyEndpoint, RuleInfo, SliceInfo, Subset};
use super::store::Store;
use crate::services::{ServiceSpec, add_specs};

/// Istio's default root namespace (`meshConfig.rootNamespace`).
pub const ROOT_NAMESPACE: &str = "istio-system";

/// The labels Istio adds to every endpoint (besides the pod's own).
pub const CLUSTER_LABEL: &str = "topology.istio.io/cluster";
pub const NETWORK_LABEL: &str = "topology.istio.io/network";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// What names and labels mean in this cluster.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub cluster_domain: &'a str,
    pub cluster_id: &'a str,
    pub network: &'a str,
    /// The namespace the gateway runs in, as a proxy's namespace for DestinationRule lookup.
    pub gateway_namespace: &'a str,
    /// Keep only endpoints whose pod has [`TLS_MODE_LABEL`]` = istio`...
    pub istio_mtls_only: bool,
    /// ...except on these service ports (host, port), the targets of fixed passthrough
    /// listeners.
    pub passthrough_targets: &'a [(String, u16)],
}

/// The label Istio's injector puts on pods whose sidecar speaks Istio mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Sizes of what a table was built from, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub services: usize,
    pub slices: usize,
    /// Usable DestinationRules.
    pub rules: usize,
}

/// A rule with where it lives.
struct Placed<'a> {
    namespace: &'a str,
    name: &'a str,
    rule: &'a RuleInfo,
}

/// Builds the table from every store (Services, EndpointSlices, Pods and DestinationRules of
/// every watched namespace) and the static services; endpoints already in `previous` keep their
/// health and load. Also returns the problems found (unusable or conflicting rules), one
/// sentence each.
pub fn build(
    stores: &[&Store],
    cx: &Context<'_>,
    statics: &[ServiceSpec],
    previous: Option<&RouteTable>,
) -> (RouteTable, Counts, Vec<String>) {
    let mut counts = Counts::default();
    let mut problems = Vec::new();
    let mut slices: HashMap<(&str, &str), Vec<&SliceInfo>> = HashMap::new();
    let mut pods: HashMap<(&str, &str), &PodInfo> = HashMap::new();
    let mut nodes: HashMap<&str, &NodeInfo> = HashMap::new();
    let mut rules_by_host: HashMap<String, Vec<Placed<'_>>> = HashMap::new();
    // v1 and v1beta1 watches see the same rule: count it once.
    let mut seen_rules: HashSet<(&str, &str)> = HashSet::new();
    for store in stores {
        for ((namespace, name), object) in store.objects() {
            match object {
                Object::Slice(slice) => {
                    counts.slices += 1;
                    slices
                        .entry((namespace, &slice.service))
                        .or_default()
                        .push(slice);
                }
                Object::Pod(_) | Object::Node(_) => {}
                Object::Rule(rule) => {
                    if !seen_rules.insert((namespace, name)) {
                        continue;
                    }
                    match rule {
                        Ok(rule) => {
                            counts.rules += 1;
                            let host = rule_host(rule, namespace, cx.cluster_domain);
                            rules_by_host.entry(host).or_default().push(Placed {
                                namespace,
                                name,
                                rule,
                            });
                        }
                        Err(reason) => problems.push(format!(
                            "DestinationRule {namespace}/{name} is ignored: {reason}; its \
                             service routes without its subsets"
                        )),
                    }
                }
                Object::Service(_) => {}
            }
        }
    }
    // Pod labels matter only to subsets: no rule, no index (a cluster may run 10,000s of pods).
    if !rules_by_host.is_empty() || cx.istio_mtls_only {
        for store in stores {
            for ((namespace, name), object) in store.objects() {
                match object {
                    Object::Pod(pod) => {
                        pods.insert((namespace, name), pod);
                    }
                    Object::Node(node) => {
                        nodes.insert(name, node);
                    }
                    _ => {}
                }
            }
        }
    }
    let mut builder = RouteTableBuilder::new();
    let mut host = String::new();
    for store in stores {
        for ((namespace, name), object) in store.objects() {
            let Object::Service(service) = object else {
                continue;
            };
            counts.services += 1;
            host.clear();
            let _ = write!(host, "{name}.{namespace}.svc.{}", cx.cluster_domain);
            let of_service = slices
                .get(&(&**namespace, &**name))
                .map_or(&[][..], Vec::as_slice);
            let subsets = match rules_by_host.get(host.as_str()) {
                Some(rules) => applicable_subsets(rules, namespace, cx, &mut problems),
                None => Vec::new(),
            };
            for port in service.ports.iter() {
                let mtls_only = cx.istio_mtls_only
                    && !cx
                        .passthrough_targets
                        .iter()
                        .any(|(h, p)| *p == port.port && h.eq_ignore_ascii_case(&host));
                let endpoints = || {
                    of_service
                        .iter()
                        .flat_map(|slice| {
                            let target = slice.ports.iter().find(|p| p.name == port.name);
                            target
                                .into_iter()
                                .flat_map(|t| slice.ready.iter().map(move |e| (e, t.port)))
                        })
                        .filter(|(e, _)| !mtls_only || istio_mtls(e, namespace, &pods))
                };
                builder.add(
                    &host,
                    port.port,
                    "",
                    endpoints().map(|(e, p)| SocketAddr::new(e.ip, p)),
                );
                if service.headless {
                    // One route per addressable pod: `outbound_.<port>_._.<pod>.<svc>...`
                    // reaches that pod, across clusters (beyond Istio, issue #38327).
                    for (e, p) in endpoints() {
                        if let Some(pod_host) = &e.hostname {
                            builder.add(
                                &format!("{pod_host}.{host}"),
                                port.port,
                                "",
                                [SocketAddr::new(e.ip, p)],
                            );
                        }
                    }
                }
                for subset in &subsets {
                    let matching = endpoints()
                        .filter(|(e, _)| matches(subset, e, namespace, &pods, &nodes, cx))
                        .map(|(e, p)| SocketAddr::new(e.ip, p));
                    builder.add(&host, port.port, &subset.name, matching);
                }
            }
        }
    }
    add_specs(&mut builder, statics);
    (builder.build(previous), counts, problems)
}

/// The host a rule names: a short name is relative to the rule's namespace, as in Istio.
fn rule_host(rule: &RuleInfo, namespace: &str, cluster_domain: &str) -> String {
    if rule.host.contains('.') {
        rule.host.to_string()
    } else {
        format!("{}.{namespace}.svc.{cluster_domain}", rule.host)
    }
}

/// Whether a rule in `namespace` with `export_to` is visible to a proxy in `to`.
fn exported(namespace: &str, export_to: &[Box<str>], to: &str) -> bool {
    export_to.is_empty()
        || export_to
            .iter()
            .any(|e| &**e == "*" || &**e == to || (&**e == "." && namespace == to))
}

/// The subsets of the rules for one service that apply to the gateway, merged.
fn applicable_subsets<'a>(
    rules: &'a [Placed<'a>],
    service_namespace: &str,
    cx: &Context<'_>,
    problems: &mut Vec<String>,
) -> Vec<&'a Subset> {
    // As istiod's PushContext.destinationRule: the proxy's namespace first, unless that is the
    // root namespace (there, only for services of the root namespace itself, so that a root
    // rule does not override everyone's); then the service's namespace; then the root's.
    let own = if cx.gateway_namespace != ROOT_NAMESPACE || service_namespace == ROOT_NAMESPACE {
        Some((cx.gateway_namespace, false))
    } else {
        None
    };
    let levels = [
        own,
        Some((service_namespace, true)),
        Some((ROOT_NAMESPACE, true)),
    ];
    for (namespace, must_export) in levels.into_iter().flatten() {
        let mut at_level: Vec<&Placed<'_>> = rules
            .iter()
            .filter(|p| p.namespace == namespace)
            .filter(|p| {
                !must_export || exported(p.namespace, &p.rule.export_to, cx.gateway_namespace)
            })
            .collect();
        if at_level.is_empty() {
            continue;
        }
        at_level.sort_by(|a, b| (&a.rule.created, a.name).cmp(&(&b.rule.created, b.name)));
        let mut merged: Vec<&Subset> = Vec::new();
        let mut from: Vec<&str> = Vec::new();
        for placed in at_level {
            for subset in placed.rule.subsets.iter() {
                match merged.iter().position(|s| s.name == subset.name) {
                    Some(i) => problems.push(format!(
                        "DestinationRules {ns}/{} and {ns}/{} both define subset {:?} of {}; \
                         the older ({}) is used",
                        from[i],
                        placed.name,
                        subset.name,
                        placed.rule.host,
                        from[i],
                        ns = placed.namespace,
                    )),
                    None => {
                        merged.push(subset);
                        from.push(placed.name);
                    }
                }
            }
        }
        return merged;
    }
    Vec::new()
}

/// Whether the endpoint's pod speaks Istio mTLS (its injector's `tlsMode` label).
fn istio_mtls(
    endpoint: &ReadyEndpoint,
    namespace: &str,
    pods: &HashMap<(&str, &str), &PodInfo>,
) -> bool {
    pod_label(endpoint, namespace, pods, TLS_MODE_LABEL) == Some("istio")
}

fn pod_label<'p>(
    endpoint: &ReadyEndpoint,
    namespace: &str,
    pods: &'p HashMap<(&str, &str), &PodInfo>,
    key: &str,
) -> Option<&'p str> {
    let pod = endpoint
        .pod
        .as_deref()
        .and_then(|name| pods.get(&(namespace, name)))?;
    pod.labels
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &*pod.labels[i].1)
}

/// Whether the endpoint's labels (its pod's, plus those Istio adds) hold every label of the
/// subset.
fn matches(
    subset: &Subset,
    endpoint: &ReadyEndpoint,
    namespace: &str,
    pods: &HashMap<(&str, &str), &PodInfo>,
    nodes: &HashMap<&str, &NodeInfo>,
    cx: &Context<'_>,
) -> bool {
    subset.labels.iter().all(|(key, want)| {
        let have = match &**key {
            REGION_LABEL => endpoint
                .node
                .as_deref()
                .and_then(|n| nodes.get(n))
                .and_then(|n| n.region.as_deref()),
            CLUSTER_LABEL => Some(cx.cluster_id),
            NETWORK_LABEL if !cx.network.is_empty() => Some(cx.network),
            ZONE_LABEL if endpoint.zone.is_some() => endpoint.zone.as_deref(),
            HOSTNAME_LABEL if endpoint.node.is_some() => endpoint.node.as_deref(),
            _ => pod_label(endpoint, namespace, pods, key),
        };
        have == Some(&**want)
    })
}

#[cfg(test)]
mod tests;
