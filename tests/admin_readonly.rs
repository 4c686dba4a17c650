//! The admin port is read-only: every method but GET is refused with 405 on every path, Envoy's
//! state-changing admin paths do not exist, and none of it changes what the gateway does.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use support::{EVENT_TIMEOUT, Gateway, Upstream, WEST_SNI, assert_forwards, http_get};

/// One request with `method` and an empty body; the response's status code.
fn status(addr: SocketAddr, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

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
            assert_eq!(status(gw.admin, method, path), 405, "{method} {path}");
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
