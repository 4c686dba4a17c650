//! Failover between endpoints: a connect that is refused is retried on another endpoint, so the
//! client never notices; an endpoint that keeps failing is ejected (and shown so in
//! `/debug/routes`); once its ejection time is over, an endpoint that came back gets traffic
//! again.

mod support;

use std::io::Write;

use support::{Gateway, RefusingAddr, Upstream, forwards_to_one_of, wait_until};

const SNI: &str = "outbound_.8080_._.svc.ns.svc.cluster.local";
const CONNECT_FAILURES: &str = "eastwest_upstream_connect_failures_total{listener=\"tls\"}";
const EJECTIONS: &str = "eastwest_endpoint_ejections_total{listener=\"tls\"}";
/// The default `eject_after_failures`.
const EJECT_AFTER: f64 = 3.0;
/// Bounds the connections made while waiting for the dead endpoint to be ejected. The balancer
/// tries it first at least every other connection (round robin) or half the time (P2C), so
/// three failures take a handful; 200 leave no room for bad luck (P2C: below 1e-50).
const MAX_CONNECTIONS: usize = 200;

/// `svc.ns.svc.cluster.local:8080` with `dead` first, then `live`.
fn route(dead: &RefusingAddr, live: &Upstream) -> String {
    format!(
        "svc.ns.svc.cluster.local:8080={},{}",
        dead.addr,
        live.addr()
    )
}

/// The `/debug/routes` status (`HEALTHY`, `EJECTED`) of the endpoint at `addr`.
fn status(gw: &Gateway, addr: std::net::SocketAddr) -> String {
    let (code, body) = gw.admin_get("/debug/routes");
    assert_eq!(code, 200);
    let line = body
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(addr.to_string().as_str()))
        .unwrap_or_else(|| panic!("{addr} not in /debug/routes:\n{body}"));
    line.split_whitespace().nth(2).unwrap().to_string()
}

/// Connects until the dead endpoint has been ejected; every connection must reach `live`.
fn connect_until_ejected(gw: &mut Gateway, live: &Upstream) {
    for _ in 0..MAX_CONNECTIONS {
        assert_eq!(forwards_to_one_of(gw, &[live], SNI), 0);
        if gw.metric(EJECTIONS) > 0.0 {
            return;
        }
    }
    panic!(
        "no ejection after {MAX_CONNECTIONS} connections:\n{}",
        gw.dump()
    );
}

fn a_refusing_endpoint_is_retried_around_then_ejected(balance: &str) {
    let live = Upstream::bind();
    let dead = RefusingAddr::new();
    let mut gw = Gateway::start(&["--endpoints", &route(&dead, &live), "--balance", balance]);
    assert_eq!(status(&gw, dead.addr), "HEALTHY");

    connect_until_ejected(&mut gw, &live);
    assert_eq!(gw.metric(EJECTIONS), 1.0);
    assert_eq!(gw.metric(CONNECT_FAILURES), EJECT_AFTER);
    assert_eq!(status(&gw, dead.addr), "EJECTED");
    assert_eq!(status(&gw, live.addr()), "HEALTHY");

    // Ejected: connections go straight to the live endpoint, no connect is wasted on the dead.
    for _ in 0..10 {
        forwards_to_one_of(&mut gw, &[&live], SNI);
    }
    assert_eq!(gw.metric(CONNECT_FAILURES), EJECT_AFTER);
    assert_eq!(gw.metric(EJECTIONS), 1.0);
    let refused = "eastwest_connections_refused_total{listener=\"tls\",reason=\"connect_failed\"}";
    assert_eq!(
        gw.metric(refused),
        0.0,
        "no client may see a failed connect"
    );
}

#[test]
fn round_robin_retries_a_refusing_endpoint_and_ejects_it() {
    a_refusing_endpoint_is_retried_around_then_ejected("round-robin");
}

#[test]
fn p2c_retries_a_refusing_endpoint_and_ejects_it() {
    a_refusing_endpoint_is_retried_around_then_ejected("p2c");
}

#[test]
fn an_endpoint_that_comes_back_gets_traffic_after_its_ejection_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eastwest.yaml");
    std::fs::write(&config, "limits:\n  ejection_time: 1s\n").unwrap();
    let live = Upstream::bind();
    let dead = RefusingAddr::new();
    let mut gw = Gateway::start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--endpoints",
        &route(&dead, &live),
    ]);
    connect_until_ejected(&mut gw, &live);
    assert_eq!(status(&gw, dead.addr), "EJECTED");

    // The endpoint comes back on the same address.
    let addr = dead.addr;
    drop(dead);
    let revived = Upstream::bind_at(addr);
    wait_until("the ejection time (1s) is over", || {
        status(&gw, addr) == "HEALTHY"
    });
    // Round robin over two healthy endpoints: one of the next two connections goes there.
    let reached = (0..4).any(|_| forwards_to_one_of(&mut gw, &[&live, &revived], SNI) == 1);
    assert!(
        reached,
        "the revived endpoint got no connection:\n{}",
        gw.dump()
    );
    assert_eq!(
        gw.metric(CONNECT_FAILURES),
        EJECT_AFTER,
        "no connect failed after the revival"
    );
    assert_eq!(status(&gw, addr), "HEALTHY");
}

/// Sets the gateway's soft open-file limit with util-linux `prlimit` (the hard limit stays).
fn set_nofile(gw: &Gateway, limit: &str) {
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &gw.child.id().to_string(),
            &format!("--nofile={limit}:"),
        ])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed");
}

/// The lowest fd number the gateway does not use: where its next descriptor will go.
fn lowest_free_fd(gw: &Gateway) -> usize {
    let used: std::collections::HashSet<usize> =
        std::fs::read_dir(format!("/proc/{}/fd", gw.child.id()))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
    (0..).find(|fd| !used.contains(fd)).unwrap()
}

/// When the gateway itself runs out of file descriptors opening the upstream connection, the
/// refusal says so (`gateway_resources`), the endpoint is not blamed (no connect failure, no
/// ejection, still HEALTHY), and once descriptors are back the same endpoint serves.
#[test]
fn running_out_of_descriptors_does_not_blame_the_endpoint() {
    let live = Upstream::bind();
    let route = format!("svc.ns.svc.cluster.local:8080={}", live.addr());
    let mut gw = Gateway::start(&["--endpoints", &route]);
    // Room for the accepted socket (the lowest free fd), none for the upstream socket.
    let soft = std::fs::read_to_string(format!("/proc/{}/limits", gw.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3).map(String::from))
        .unwrap();
    set_nofile(&gw, &(lowest_free_fd(&gw) + 1).to_string());
    support::assert_refused(&mut gw, "gateway_resources", |c| {
        c.write_all(&support::rustls_client_hello(SNI)).unwrap();
    });
    assert_eq!(gw.metric(CONNECT_FAILURES), 0.0);
    assert_eq!(gw.metric(EJECTIONS), 0.0);
    assert_eq!(status(&gw, live.addr()), "HEALTHY");
    assert_eq!(
        gw.metric(
            "eastwest_connections_refused_total{listener=\"tls\",reason=\"gateway_resources\"}"
        ),
        1.0
    );

    set_nofile(&gw, &soft);
    support::assert_forwards(&mut gw, &live, SNI);
}
