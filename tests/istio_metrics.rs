//! Istio's standard TCP metrics, named and labelled as Istio spells them, on the metrics-only
//! port (Envoy's 15090, `--stats`) and on the admin port, counted per route.

mod support;

use support::{Gateway, Upstream, WEST_SNI, forwards_to_one_of, http_get, rustls_client_hello};

#[test]
fn istio_tcp_metrics_count_connections_and_bytes_per_destination() {
    let west = Upstream::bind();
    let route = format!("west.west.svc.cluster.local:8080={}", west.addr());
    let mut gw = Gateway::start(&["--endpoints", &route, "--stats", "127.0.0.1:0"]);
    let stats = gw
        .seen
        .iter()
        .find(|v| v["message"] == "stats listening")
        .expect("the stats address is logged before the admin's")["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for _ in 0..2 {
        forwards_to_one_of(&mut gw, &[&west], WEST_SNI);
    }
    let labels = "{reporter=\"source\",destination_service=\"west.west.svc.cluster.local\",\
                  destination_service_name=\"west\",destination_service_namespace=\"west\",\
                  destination_cluster=\"static\",destination_port=\"8080\",destination_subset=\"\"}";
    let hello = rustls_client_hello(WEST_SNI).len();
    let (code, body) = http_get(stats, "/stats/prometheus");
    assert_eq!(code, 200);
    for (family, value) in [
        ("istio_tcp_connections_opened_total", 2),
        ("istio_tcp_connections_closed_total", 2),
        ("istio_tcp_received_bytes_total", 2 * hello),
        ("istio_tcp_sent_bytes_total", 2),
    ] {
        let line = format!("{family}{labels} {value}");
        assert!(body.lines().any(|l| l == line), "no `{line}` in:\n{body}");
    }
    for family in ["istio_tcp_connections_opened", "istio_tcp_sent_bytes"] {
        assert!(
            body.contains(&format!("# TYPE {family} counter\n")),
            "{body}"
        );
    }
    assert!(body.ends_with("# EOF\n"), "one OpenMetrics exposition");
    // Our own metrics are there too, and the admin port serves the same.
    assert!(body.contains("eastwest_connections_accepted_total"));
    let (_, admin) = gw.admin_get("/stats/prometheus");
    assert!(admin.contains(&format!("istio_tcp_connections_opened_total{labels} 2")));
    // The stats port serves metrics only.
    assert_eq!(http_get(stats, "/debug/routes").0, 404);
}
