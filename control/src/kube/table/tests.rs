//! Tables built from the kube-double's realistic objects (real Service and EndpointSlice JSON,
//! parsed into k8s-openapi types as the watcher does). Nothing here dials these addresses.

use std::net::SocketAddr;

use eastwest_kube_double::fixtures::{self, AddressType, Endpoint};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DynamicObject, PartialObjectMeta};
use serde_json::Value;

use super::*;
use crate::kube::model;
use crate::kube::store::Change;
use crate::services::EndpointSpec;

/// `objects` in one store per kind, as the watches would list them (pods as the metadata-only
/// watch sees them, DestinationRules as dynamic objects).
fn stores(objects: &[Value]) -> [Store; 5] {
    let mut stores = [(); 5].map(|_| Store::default());
    for s in &mut stores {
        s.apply(Change::Init);
    }
    for o in objects {
        let (i, key, object) = match o["kind"].as_str() {
            Some("Service") => {
                let svc: Service = serde_json::from_value(o.clone()).unwrap();
                (0, model::key(&svc), model::service(&svc))
            }
            Some("EndpointSlice") => {
                let slice: EndpointSlice = serde_json::from_value(o.clone()).unwrap();
                (1, model::key(&slice), model::slice(&slice))
            }
            Some("Pod") => {
                let pod: PartialObjectMeta<Pod> = serde_json::from_value(o.clone()).unwrap();
                (2, model::key(&pod), model::pod(&pod))
            }
            Some("Node") => {
                let node: PartialObjectMeta<Node> = serde_json::from_value(o.clone()).unwrap();
                (4, model::key(&node), model::node(&node))
            }
            Some("DestinationRule") => {
                let rule: DynamicObject = serde_json::from_value(o.clone()).unwrap();
                (3, model::key(&rule), model::rule(&rule))
            }
            _ => continue,
        };
        stores[i].apply(Change::InitApply(key.unwrap(), object));
    }
    for s in &mut stores {
        s.apply(Change::InitDone);
    }
    stores
}

const CX: Context<'static> = Context {
    cluster_domain: "cluster.local",
    cluster_id: "west",
    network: "network2",
    gateway_namespace: "istio-system",
    istio_mtls_only: false,
    passthrough_targets: &[],
};

fn table(objects: &[Value], statics: &[ServiceSpec]) -> (RouteTable, Counts) {
    let (t, counts, problems) = table_with(objects, statics, &CX);
    assert_eq!(problems, Vec::<String>::new());
    (t, counts)
}

fn table_with(
    objects: &[Value],
    statics: &[ServiceSpec],
    cx: &Context<'_>,
) -> (RouteTable, Counts, Vec<String>) {
    let stores = stores(objects);
    let refs: Vec<&Store> = stores.iter().collect();
    build(&refs, cx, statics, None)
}

/// The sorted endpoints of `host:port`, or `None` if there is no such route.
fn endpoints(t: &RouteTable, host: &str, port: u16) -> Option<Vec<String>> {
    subset(t, host, port, "")
}

/// The sorted endpoints of `host:port` subset `name`, or `None` if there is no such route.
fn subset(t: &RouteTable, host: &str, port: u16, name: &str) -> Option<Vec<String>> {
    let route = t.lookup(host, port, name)?;
    let mut v: Vec<String> = route.endpoints.iter().map(|e| e.addr.to_string()).collect();
    v.sort();
    Some(v)
}

#[test]
fn the_mesh_fixture_becomes_the_routes_istio_would_send_to() {
    let (t, counts) = table(&fixtures::mesh(), &[]);
    assert_eq!(
        counts,
        Counts {
            services: 6,
            slices: 7,
            rules: 0
        },
        "the FQDN slice is not counted"
    );
    let reviews = "reviews.bookinfo.svc.cluster.local";
    // Named targetPort `http-web`: the slice port named like the Service port (`http`) wins.
    // Two slices merge; the terminating endpoint 10.244.2.7 is left out.
    assert_eq!(
        endpoints(&t, reviews, 9080).unwrap(),
        ["10.244.1.5:9080", "10.244.3.9:9080"]
    );
    assert_eq!(
        endpoints(&t, reviews, 9090).unwrap(),
        ["10.244.1.5:9090", "10.244.3.9:9090"]
    );
    // Dual stack: the IPv4 and the IPv6 slice.
    assert_eq!(
        endpoints(&t, "ratings.bookinfo.svc.cluster.local", 9080).unwrap(),
        ["10.244.1.8:9080", "[fd00:10:244:1::8]:9080"]
    );
    // A slice with no endpoints: the route exists ("no ready endpoint", not "no route").
    assert_eq!(
        endpoints(&t, "details.bookinfo.svc.cluster.local", 9080).unwrap(),
        Vec::<String>::new()
    );
    // Headless: the pods, and each StatefulSet pod by its own name.
    assert_eq!(
        endpoints(&t, "mysql.db.svc.cluster.local", 3306).unwrap(),
        ["10.244.2.10:3306", "10.244.3.11:3306"]
    );
    assert_eq!(
        endpoints(&t, "mysql-1.mysql.db.svc.cluster.local", 3306).unwrap(),
        ["10.244.3.11:3306"]
    );
    assert_eq!(
        endpoints(&t, "mysql-0.mysql.db.svc.cluster.local", 3306).unwrap(),
        ["10.244.2.10:3306"]
    );
    // FQDN slices are ignored.
    assert_eq!(
        endpoints(&t, "legacy-db.db.svc.cluster.local", 5432).unwrap(),
        Vec::<String>::new()
    );
    // Service port 443 → targetPort 15017, found by the port name.
    assert_eq!(
        endpoints(&t, "istiod.istio-system.svc.cluster.local", 443).unwrap(),
        ["10.244.0.6:15017"]
    );
    assert_eq!(
        endpoints(&t, reviews, 15017),
        None,
        "target ports are not service ports"
    );
    assert_eq!(
        t.route_count(),
        12,
        "10 service ports and 2 StatefulSet pods"
    );
}

#[test]
fn not_ready_and_terminating_endpoints_take_no_connections_but_ready_absent_does() {
    let svc = fixtures::service("ns", "web")
        .tcp_port("http", 80, 8080)
        .build();
    let slice = fixtures::endpoint_slice("ns", "web", "web-1")
        .endpoint(Endpoint::new("10.0.0.1"))
        .endpoint(Endpoint::new("10.0.0.2").not_ready())
        .endpoint(Endpoint::new("10.0.0.3").terminating())
        // Serving while terminating (graceful shutdown): still no new connections.
        .endpoint(Endpoint::new("10.0.0.4").conditions(true, true, true))
        .tcp_port("http", 8080)
        .build();
    let mut no_conditions = fixtures::endpoint_slice("ns", "web", "web-2")
        .endpoint(Endpoint::new("10.0.0.5"))
        .tcp_port("http", 8080)
        .build();
    no_conditions["endpoints"][0]
        .as_object_mut()
        .unwrap()
        .remove("conditions");
    let (t, _) = table(&[svc, slice, no_conditions], &[]);
    assert_eq!(
        endpoints(&t, "web.ns.svc.cluster.local", 80).unwrap(),
        ["10.0.0.1:8080", "10.0.0.5:8080"]
    );
}

#[test]
fn slices_of_other_services_udp_ports_and_external_names_add_nothing() {
    let svc = fixtures::service("ns", "dns")
        .port(fixtures::ServicePort::tcp("dns-udp", 53, 53).protocol("UDP"))
        .tcp_port("dns-tcp", 53, 53)
        .build();
    let slice = fixtures::endpoint_slice("ns", "dns", "dns-1")
        .ready_addresses(&["10.0.0.10"])
        .port("dns-udp", 53, "UDP", None)
        .tcp_port("dns-tcp", 5353)
        .build();
    // Same slice name pattern, other namespace and service: must not leak into ns/dns.
    let other = fixtures::endpoint_slice("other", "dns", "dns-1")
        .ready_addresses(&["10.9.9.9"])
        .tcp_port("dns-tcp", 5353)
        .build();
    let external = fixtures::service("ns", "ext")
        .external_name("db.example.com")
        .build();
    let (t, counts) = table(&[svc, slice, other, external], &[]);
    assert_eq!(
        endpoints(&t, "dns.ns.svc.cluster.local", 53).unwrap(),
        ["10.0.0.10:5353"]
    );
    assert_eq!(t.route_count(), 1, "no route for the ExternalName service");
    assert_eq!(counts.services, 1);
}

#[test]
fn an_unnamed_single_port_matches_the_unnamed_slice_port_and_domains_are_configurable() {
    let mut svc = fixtures::service("ns", "one")
        .tcp_port("x", 80, 8080)
        .build();
    svc["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let mut slice = fixtures::endpoint_slice("ns", "one", "one-1")
        .ready_addresses(&["10.0.0.1"])
        .tcp_port("x", 8080)
        .build();
    slice["ports"][0].as_object_mut().unwrap().remove("name");
    let cx = Context {
        cluster_domain: "corp.example",
        ..CX
    };
    let (t, _, _) = table_with(&[svc, slice], &[], &cx);
    assert_eq!(
        endpoints(&t, "one.ns.svc.corp.example", 80).unwrap(),
        ["10.0.0.1:8080"]
    );
}

#[test]
fn static_services_are_merged_and_ipv6_only_slices_work() {
    let svc = fixtures::service("ns", "v6")
        .tcp_port("http", 80, 8080)
        .build();
    let slice = fixtures::endpoint_slice("ns", "v6", "v6-1")
        .address_type(AddressType::IPv6)
        .ready_addresses(&["fd00::1"])
        .tcp_port("http", 8080)
        .build();
    let extra = ServiceSpec {
        host: "static.example.local".into(),
        port: 443,
        subset: String::new(),
        endpoints: vec![EndpointSpec::ready(SocketAddr::from((
            [127, 0, 0, 2],
            9443,
        )))],
    };
    let (t, _) = table(&[svc, slice], &[extra]);
    assert_eq!(
        endpoints(&t, "v6.ns.svc.cluster.local", 80).unwrap(),
        ["[fd00::1]:8080"]
    );
    assert_eq!(
        endpoints(&t, "static.example.local", 443).unwrap(),
        ["127.0.0.2:9443"]
    );
}

const REVIEWS: &str = "reviews.ns.svc.cluster.local";

/// `ns/reviews` on port 9080 with three pods: v1 and v2 in zone a on node n1, v3 in zone b on
/// n2; the rest of a test's objects follow.
fn reviews(more: &[Value]) -> Vec<Value> {
    let mut objects = vec![
        fixtures::service("ns", "reviews")
            .tcp_port("http", 9080, 9080)
            .build(),
        fixtures::endpoint_slice("ns", "reviews", "reviews-1")
            .endpoint(Endpoint::new("10.0.0.1").pod("r1").zone("a").node("n1"))
            .endpoint(Endpoint::new("10.0.0.2").pod("r2").zone("a").node("n1"))
            .endpoint(Endpoint::new("10.0.0.3").pod("r3").zone("b").node("n2"))
            .tcp_port("http", 9080)
            .build(),
        fixtures::pod(
            "ns",
            "r1",
            &[("app", "reviews"), ("version", "v1")],
            "10.0.0.1",
        ),
        fixtures::pod(
            "ns",
            "r2",
            &[("app", "reviews"), ("version", "v2")],
            "10.0.0.2",
        ),
        fixtures::pod(
            "ns",
            "r3",
            &[("app", "reviews"), ("version", "v3")],
            "10.0.0.3",
        ),
    ];
    objects.extend(more.iter().cloned());
    objects
}

fn rule(ns: &str, name: &str, host: &str, subsets: &[(&str, &[(&str, &str)])]) -> Value {
    fixtures::destination_rule(ns, name, host, subsets)
}

#[test]
fn subsets_select_endpoints_by_pod_labels_and_the_labels_istio_adds() {
    let dr = rule(
        "ns",
        "reviews",
        "reviews",
        &[
            ("v1", &[("version", "v1")]),
            ("v2", &[("version", "v2"), ("app", "reviews")]),
            ("zone-a", &[("topology.kubernetes.io/zone", "a")]),
            ("n2", &[("kubernetes.io/hostname", "n2")]),
            ("here", &[("topology.istio.io/cluster", "west")]),
            ("eu", &[("topology.kubernetes.io/region", "eu-1")]),
            ("elsewhere", &[("topology.istio.io/cluster", "east")]),
            ("net", &[("topology.istio.io/network", "network2")]),
            ("none", &[("version", "v9")]),
        ],
    );
    let nodes = [
        fixtures::node("n1", &[("topology.kubernetes.io/region", "us-1")]),
        fixtures::node("n2", &[("topology.kubernetes.io/region", "eu-1")]),
    ];
    let (t, counts) = table(&reviews(&[dr, nodes[0].clone(), nodes[1].clone()]), &[]);
    assert_eq!(counts.rules, 1);
    let s = |name| subset(&t, REVIEWS, 9080, name).unwrap();
    assert_eq!(s(""), ["10.0.0.1:9080", "10.0.0.2:9080", "10.0.0.3:9080"]);
    assert_eq!(s("v1"), ["10.0.0.1:9080"]);
    assert_eq!(s("v2"), ["10.0.0.2:9080"]);
    assert_eq!(s("zone-a"), ["10.0.0.1:9080", "10.0.0.2:9080"]);
    assert_eq!(s("n2"), ["10.0.0.3:9080"]);
    assert_eq!(s("eu"), ["10.0.0.3:9080"], "the region of the pod's node");
    assert_eq!(s("here").len(), 3, "every endpoint is in this cluster");
    assert_eq!(s("elsewhere"), Vec::<String>::new());
    assert_eq!(s("net").len(), 3);
    // A subset no endpoint matches is a route with none ready, as an empty Envoy cluster.
    assert_eq!(s("none"), Vec::<String>::new());
    assert_eq!(
        subset(&t, REVIEWS, 9080, "v4"),
        None,
        "not a subset of the rule"
    );
}

#[test]
fn which_rule_applies_follows_istio_namespace_precedence_and_export_to() {
    let full = "reviews.ns.svc.cluster.local";
    let in_ns = rule("ns", "a", "reviews", &[("from-ns", &[("version", "v1")])]);
    let mut hidden = rule("ns", "b", full, &[("hidden", &[("version", "v2")])]);
    hidden["spec"]["exportTo"] = serde_json::json!(["."]);
    let in_root = rule(
        "istio-system",
        "c",
        full,
        &[("from-root", &[("version", "v3")])],
    );
    let elsewhere = rule("other", "d", full, &[("from-other", &[("version", "v3")])]);

    // The service's namespace beats the root namespace; a rule exported only to its own
    // namespace is invisible to a gateway elsewhere; a third namespace never applies.
    let (t, _) = table(
        &reviews(&[
            in_ns.clone(),
            hidden.clone(),
            in_root.clone(),
            elsewhere.clone(),
        ]),
        &[],
    );
    assert!(subset(&t, REVIEWS, 9080, "from-ns").is_some());
    assert!(subset(&t, REVIEWS, 9080, "hidden").is_none());
    assert!(subset(&t, REVIEWS, 9080, "from-root").is_none());
    assert!(subset(&t, REVIEWS, 9080, "from-other").is_none());

    // Without the service-namespace rules, the root namespace's applies.
    let (t, _) = table(&reviews(&[in_root.clone(), elsewhere]), &[]);
    assert_eq!(
        subset(&t, REVIEWS, 9080, "from-root").unwrap(),
        ["10.0.0.3:9080"]
    );

    // A gateway running in `ns` sees the `.`-exported rule, and its own namespace comes first.
    let cx = Context {
        gateway_namespace: "ns",
        ..CX
    };
    let (t, _, _) = table_with(&reviews(&[hidden, in_root]), &[], &cx);
    assert!(subset(&t, REVIEWS, 9080, "hidden").is_some());
    assert!(subset(&t, REVIEWS, 9080, "from-root").is_none());
}

#[test]
fn a_broken_or_conflicting_rule_costs_only_its_own_service_its_subsets() {
    let ratings = [
        fixtures::service("ns", "ratings")
            .tcp_port("http", 9080, 9080)
            .build(),
        fixtures::endpoint_slice("ns", "ratings", "ratings-1")
            .endpoint(Endpoint::new("10.0.1.1").pod("t1"))
            .tcp_port("http", 9080)
            .build(),
        fixtures::pod("ns", "t1", &[("version", "v1")], "10.0.1.1"),
        rule("ns", "ratings", "ratings", &[("v1", &[("version", "v1")])]),
    ];
    let mut broken = rule("ns", "reviews", "reviews", &[("v1", &[("version", "v1")])]);
    broken["spec"]["subsets"][0]["labels"]["version"] = serde_json::json!(1);
    let mut objects = reviews(&[broken]);
    objects.extend(ratings.iter().cloned());
    let (t, counts, problems) = table_with(&objects, &[], &CX);
    assert_eq!(counts.rules, 1);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("ns/reviews")
            && problems[0].contains("spec.subsets[0].labels.version is not a string"),
        "{problems:?}"
    );
    // reviews still routes (no subsets); ratings keeps its subset.
    assert_eq!(endpoints(&t, REVIEWS, 9080).unwrap().len(), 3);
    assert_eq!(subset(&t, REVIEWS, 9080, "v1"), None);
    assert_eq!(
        subset(&t, "ratings.ns.svc.cluster.local", 9080, "v1").unwrap(),
        ["10.0.1.1:9080"]
    );

    // Two rules defining one subset: the older wins, the conflict is reported.
    let mut old = rule("ns", "old", "reviews", &[("v", &[("version", "v1")])]);
    old["metadata"]["creationTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
    let mut new = rule(
        "ns",
        "new",
        "reviews",
        &[("v", &[("version", "v2")]), ("w", &[])],
    );
    new["metadata"]["creationTimestamp"] = serde_json::json!("2026-02-01T00:00:00Z");
    let (t, _, problems) = table_with(&reviews(&[new, old]), &[], &CX);
    assert_eq!(subset(&t, REVIEWS, 9080, "v").unwrap(), ["10.0.0.1:9080"]);
    assert_eq!(
        subset(&t, REVIEWS, 9080, "w").unwrap().len(),
        3,
        "merged from the newer"
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("ns/old and ns/new"), "{problems:?}");
}
