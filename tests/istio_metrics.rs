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

#[test]
fn debug_clusters_and_eastwest_clusters_show_each_endpoint_as_istioctl_does() {
    let (a, b) = (Upstream::bind(), Upstream::bind());
    let routes = [
        format!("west.west.svc.cluster.local:8080={},{}", a.addr(), b.addr()),
        format!("west.west.svc.cluster.local:8080/v1={}", a.addr()),
        format!("east.east.svc.cluster.local:9090={}", b.addr()),
    ];
    let mut args = vec!["--connect-attempts", "1"];
    for r in &routes {
        args.extend(["--endpoints", r.as_str()]);
    }
    let gw = Gateway::start(&args);
    let admin = gw.admin.to_string();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(support::bin())
            .args(["clusters", "--admin", &admin])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run(&[]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header.iter().map(|h| h.trim()).collect::<Vec<_>>(),
        ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let expected = [
        (b.addr(), "outbound|9090||east.east.svc.cluster.local"),
        (a.addr(), "outbound|8080||west.west.svc.cluster.local"),
        (b.addr(), "outbound|8080||west.west.svc.cluster.local"),
        (a.addr(), "outbound|8080|v1|west.west.svc.cluster.local"),
    ];
    assert_eq!(rows.len(), expected.len(), "{table}");
    for (endpoint, cluster) in expected {
        let e = endpoint.to_string();
        assert!(
            rows.iter()
                .any(|r| r[..] == [e.as_str(), "HEALTHY", "OK", cluster]),
            "no row {e} {cluster} in:\n{table}"
        );
    }
    // Filtered, and as JSON.
    let v1 = run(&["--cluster", "|v1|"]);
    assert_eq!(v1.lines().count(), 2, "{v1}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&["-o", "json", "--cluster", "east"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "endpoint": b.addr().to_string(),
            "status": "HEALTHY",
            "outlier_check": "OK",
            "cluster": "outbound|9090||east.east.svc.cluster.local",
            "source": "static",
            "active_connections": 0
        }])
    );
    // The effective configuration.
    let (code, config) = gw.admin_get("/debug/config");
    assert_eq!(code, 200);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["limits"]["connect_attempts"], 1);
    assert_eq!(
        config["listeners"][0]["hosts"],
        serde_json::json!(["*.local"])
    );
    assert_eq!(config["sources"][0]["kind"], "file");
    assert_eq!(config["sources"][0]["static_services"], 3);
    assert_eq!(config["istio_mtls_only"], false);
}

#[test]
fn eastwest_clusters_says_when_no_gateway_answers() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = std::process::Command::new(support::bin())
        .args(["clusters", "--admin", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&addr) && err.contains("is the gateway running"),
        "{err}"
    );
}
