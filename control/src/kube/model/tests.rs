//! Reducing API objects: what is kept and what is dropped, on real object JSON.

use eastwest_kube_double::fixtures;
use serde_json::{Value, json};

use super::*;

fn slice_of(v: Value) -> Option<Object> {
    slice(&serde_json::from_value::<EndpointSlice>(v).unwrap())
}

#[test]
fn a_slice_without_the_service_label_contributes_nothing() {
    let mut v = fixtures::endpoint_slice("ns", "svc", "s")
        .ready_addresses(&["10.0.0.1"])
        .tcp_port("http", 80)
        .build();
    assert!(slice_of(v.clone()).is_some());
    v["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove(SERVICE_NAME_LABEL);
    assert_eq!(slice_of(v), None);
}

#[test]
fn garbage_from_the_api_is_skipped_not_trusted() {
    let mut v = fixtures::endpoint_slice("ns", "svc", "s")
        .ready_addresses(&["10.0.0.1", "not-an-ip"])
        .tcp_port("http", 80)
        .build();
    v["ports"] = json!([
        {"name": "http", "port": 80, "protocol": "TCP"},
        {"name": "neg", "port": -1},
        {"name": "big", "port": 70000},
        {"name": "zero", "port": 0},
        {"name": "none"}
    ]);
    let Some(Object::Slice(s)) = slice_of(v) else {
        panic!("slice dropped")
    };
    let ips: Vec<IpAddr> = s.ready.iter().map(|e| e.ip).collect();
    assert_eq!(ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(s.ports.len(), 1, "{:?}", s.ports);
}

#[test]
fn keys_are_namespace_and_name() {
    let svc: Service = serde_json::from_value(
        fixtures::service("east", "web")
            .tcp_port("http", 80, 80)
            .build(),
    )
    .unwrap();
    assert_eq!(key(&svc), Some(("east".into(), "web".into())));
    let bare = Service::default();
    assert_eq!(key(&bare), None, "no name");
    let node: PartialObjectMeta<k8s_openapi::api::core::v1::Node> =
        serde_json::from_value(fixtures::node("n1", &[])).unwrap();
    assert_eq!(key(&node), Some(("".into(), "n1".into())), "cluster-scoped");
}
