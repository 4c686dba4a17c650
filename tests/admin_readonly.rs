//! The admin port is read-only: every method but GET is refused with 405 on every path, Envoy's
//! state-changing admin paths do not exist, and none of it changes what the gateway does.

mod support;

use support::{Gateway, Upstream, WEST_SNI, assert_forwards, http_get, http_request};

#[test]
fn the_admin_port_serves_reads_only() {
    let upstream = Upstream::bind();
    let route = format!("west.west.svc.cluster.local:8080={}", upstream.addr());
    let mut gw = Gateway::start(&["--endpoints", &route]);
    let ours = [
        "/healthz/ready",
        "/healthz/live",
        "/stats/prometheus",
        "/debug/routes",
        "/debug/clusters",
        "/debug/config",
    ];
    // Envoy's admin paths that change state (drain, quit, log levels, health, runtime).
    let envoys = [
        "/quitquitquit",
        "/drain_listeners",
        "/healthcheck/fail",
        "/logging?level=off",
        "/runtime_modify?a=b",
        "/reset_counters",
    ];
    for path in ours.iter().chain(&envoys) {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            assert_eq!(
                http_request(gw.admin, method, path).0,
                405,
                "{method} {path}"
            );
        }
    }
    for path in ours {
        assert_eq!(http_get(gw.admin, path).0, 200, "GET {path}");
    }
    for path in envoys {
        assert_eq!(http_get(gw.admin, path).0, 404, "GET {path}");
    }
    // Nothing changed: still ready, still routing, nothing drained.
    assert_eq!(http_get(gw.admin, "/healthz/ready").0, 200);
    assert_forwards(&mut gw, &upstream, WEST_SNI);
    assert_eq!(gw.metric("eastwest_draining"), 0.0);
}
