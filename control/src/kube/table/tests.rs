//! Tables built from the kube-double's realistic objects (real Service and EndpointSlice JSON,
//! parsed into k8s-openapi types as the watcher does). Nothing here dials these addresses.

use std::net::SocketAddr;

use eastwest_kube_double::fixtures::{self, AddressType, Endpoint};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;

use super::*;
use crate::kube::model;
use crate::kube::store::Change;
use crate::services::EndpointSpec;

/// Services and slices of `objects` in two stores, as two watches would list them.
fn stores(objects: &[Value]) -> [Store; 2] {
    let [mut services, mut slices] = [Store::default(), Store::default()];
    services.apply(Change::Init);
    slices.apply(Change::Init);
    for o in objects {
        match o["kind"].as_str() {
            Some("Service") => {
                let svc: Service = serde_json::from_value(o.clone()).unwrap();
                let key = model::key(&svc).unwrap();
                services.apply(Change::InitApply(key, model::service(&svc)));
            }
            Some("EndpointSlice") => {
                let slice: EndpointSlice = serde_json::from_value(o.clone()).unwrap();
                let key = model::key(&slice).unwrap();
                slices.apply(Change::InitApply(key, model::slice(&slice)));
            }
            _ => {}
        }
    }
    services.apply(Change::InitDone);
    slices.apply(Change::InitDone);
    [services, slices]
}

fn table(objects: &[Value], statics: &[ServiceSpec]) -> (RouteTable, Counts) {
    let [a, b] = stores(objects);
    build(&[&a, &b], "cluster.local", statics, None)
}

/// The sorted endpoints of `host:port`, or `None` if there is no such route.
fn endpoints(t: &RouteTable, host: &str, port: u16) -> Option<Vec<String>> {
    let route = t.lookup(host, port, "")?;
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
            slices: 7
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
    // Headless: the pods.
    assert_eq!(
        endpoints(&t, "mysql.db.svc.cluster.local", 3306).unwrap(),
        ["10.244.2.10:3306", "10.244.3.11:3306"]
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
    assert_eq!(t.route_count(), 10);
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
    let [a, b] = stores(&[svc, slice]);
    let (t, _) = build(&[&a, &b], "corp.example", &[], None);
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
