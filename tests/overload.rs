//! Many and slow clients against the real binary: a flood of connections trickling their
//! ClientHello is bounded by `--max-sniffing` while real clients are served, and a gateway out
//! of file descriptors backs off, keeps its open connections, and recovers.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;

use support::{
    Gateway, Upstream, WEST_SNI, connect, read_until_closed, rustls_client_hello, wait_until,
};

const REFUSED: &str = "eastwest_connections_refused_total{listener=\"tls\",reason=";

fn route(upstream: &Upstream) -> String {
    format!("west.west.svc.cluster.local:8080={}", upstream.addr())
}

/// A real client: its whole hello at once, forwarded byte for byte, a byte back. Checked on
/// the sockets alone (the access log is busy with the flood's refusals).
fn served(gw: &Gateway, upstream: &Upstream) {
    let hello = rustls_client_hello(WEST_SNI);
    let mut client = connect(gw.addr());
    client.write_all(&hello).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut up = upstream.accept();
    assert_eq!(read_until_closed(&mut up), hello);
    up.write_all(b"!").unwrap();
    drop(up);
    assert_eq!(read_until_closed(&mut client), b"!");
}

#[test]
fn a_flood_of_trickling_clients_is_bounded_and_real_clients_are_served() {
    const FLOOD: usize = 2000;
    const MAX_SNIFFING: usize = 100;
    // 2,000 client sockets here, as many in the gateway (which raises its own limit too).
    eastwest_proxy::raise_fd_limit().unwrap();
    let upstream = Upstream::bind();
    let route = route(&upstream);
    let gw = Gateway::start(&[
        "--endpoints",
        &route,
        "--max-sniffing",
        "100",
        "--sniff-timeout",
        "60s",
        "--sniff-timeout-pressured",
        "300ms",
    ]);
    let hello = rustls_client_hello(WEST_SNI);
    // Slowloris: every connection sends the first bytes of a real hello, one byte per round.
    let mut flood: Vec<TcpStream> = (0..FLOOD).map(|_| connect(gw.addr())).collect();
    for byte in &hello[..3] {
        for c in &mut flood {
            // The gateway may already have cut a pressured one: that is the point.
            let _ = c.write_all(std::slice::from_ref(byte));
        }
    }
    wait_until("the gateway accepted the whole flood", || {
        gw.metric("eastwest_connections_accepted_total{listener=\"tls\"}") >= FLOOD as f64
    });
    // Real clients arriving now are past the limit too, but send their hello at once.
    for _ in 0..10 {
        served(&gw, &upstream);
    }
    // Past the limit, the trickling connections are cut after the pressured timeout; the
    // first MAX_SNIFFING keep the full one (they are still sniffing, nowhere near 60 s).
    let overload = format!("{REFUSED}\"sniff_overload\"}}");
    wait_until("every connection past the limit was cut", || {
        gw.metric(&overload) >= (FLOOD - MAX_SNIFFING) as f64
    });
    assert_eq!(gw.metric(&overload), (FLOOD - MAX_SNIFFING) as f64);
    assert_eq!(
        gw.metric("eastwest_connections_sniffing{listener=\"tls\"}"),
        MAX_SNIFFING as f64
    );
    assert_eq!(gw.metric(&format!("{REFUSED}\"sniff_timeout\"}}")), 0.0);
    // The cut ones see EOF (nothing sent back); the survivors can still finish their hello.
    let cut = flood
        .iter_mut()
        .map(|c| {
            c.set_nonblocking(true).unwrap();
            match c.read(&mut [0u8; 1]) {
                Ok(0) => true,
                Ok(n) => panic!("the gateway sent {n} bytes to a refused client"),
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            }
        })
        .filter(|closed| *closed)
        .count();
    assert_eq!(
        cut,
        FLOOD - MAX_SNIFFING,
        "connections closed by the gateway"
    );
    for _ in 0..10 {
        served(&gw, &upstream);
    }
    // Connections were refused, nothing was lost: every upstream connection came from a real
    // client.
    upstream.assert_no_connection("after the flood");
}

#[test]
fn out_of_file_descriptors_the_listener_backs_off_keeps_connections_and_recovers() {
    const NOFILE: usize = 64;
    let upstream = Upstream::bind();
    let route = route(&upstream);
    // prlimit sets the limit and execs the gateway, so the pid is the gateway's.
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg("--")
        .arg(support::bin())
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args([
            "--workers",
            "1",
            "--log-format",
            "json",
            "--endpoints",
            &route,
        ]);
    let mut gw = Gateway::spawn(cmd);
    // Logged before the listeners, so already among the start-up lines.
    let limit = gw
        .seen
        .iter()
        .find(|v| v["message"] == "open files limit")
        .expect("the gateway logs its open files limit");
    assert_eq!(limit["limit"], NOFILE as u64, "{limit}");

    // One connection forwarding before the shortage, to prove it is not disturbed.
    let hello = rustls_client_hello(WEST_SNI);
    let mut kept = connect(gw.addr());
    kept.write_all(&hello).unwrap();
    let mut kept_up = upstream.accept();
    let mut got = vec![0u8; hello.len()];
    kept_up.read_exact(&mut got).unwrap();
    assert_eq!(got, hello);

    // More connections than fds, each holding half a hello: the gateway accepts until it has
    // none left; the rest wait in the listen queue.
    let held: Vec<TcpStream> = (0..NOFILE)
        .map(|_| {
            let mut c = connect(gw.addr());
            c.write_all(&hello[..10]).unwrap();
            c
        })
        .collect();
    // Backing off, not spinning: each failure is one warn line with a pause twice the last.
    let mut pauses = Vec::new();
    for _ in 0..5 {
        let line = gw.wait_log(|v| {
            v["level"] == "WARN"
                && v["listener"] == "tls"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("accept failed"))
        });
        let message = line["message"].as_str().unwrap().to_string();
        assert!(message.contains("Too many open files"), "{message}");
        pauses.push(message.rsplit("retrying in ").next().unwrap().to_string());
    }
    assert_eq!(pauses, ["5ms", "10ms", "20ms", "40ms", "80ms"]);

    // The forwarding connection still moves bytes both ways while the listener is starved.
    kept.write_all(b"during").unwrap();
    let mut during = [0u8; 6];
    kept_up.read_exact(&mut during).unwrap();
    assert_eq!(&during, b"during");
    kept_up.write_all(b"back").unwrap();
    let mut back = [0u8; 4];
    kept.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"back");

    // Fds come back: the queued connections are accepted (and end as sniff_eof, their client
    // gone), and a new client is forwarded.
    drop(held);
    served(&gw, &upstream);
    assert!(gw.metric("eastwest_accept_errors_total{listener=\"tls\"}") >= 5.0);
    wait_until("every held connection was accepted and ended", || {
        gw.metric(&format!("{REFUSED}\"sniff_eof\"}}")) == NOFILE as f64
    });
    drop(kept);
    assert_eq!(read_until_closed(&mut kept_up), b"");
}
