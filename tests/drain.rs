//! Drain on SIGTERM: readiness turns 503 and the listener stops taking connections, while the
//! connections already forwarded go on; the process exits 0 as soon as the last one closes, or
//! cuts what is left when the drain timeout runs out or a second signal comes.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{
    EVENT_TIMEOUT, Gateway, Upstream, WEST_SNI, connect, read_until_closed, rustls_client_hello,
    send_tolerating_close, wait_until,
};

/// A forwarded connection: the client's end and the upstream's end.
struct Open {
    client: TcpStream,
    upstream: TcpStream,
    hello_len: usize,
}

/// Starts a gateway routing `WEST_SNI` to a new upstream, with `args` added.
fn start(args: &[&str]) -> (Gateway, Upstream) {
    let upstream = Upstream::bind();
    let route = format!("west.west.svc.cluster.local:8080={}", upstream.addr());
    let mut all = vec!["--endpoints", route.as_str()];
    all.extend(args);
    (Gateway::start(&all), upstream)
}

/// Opens a connection through the gateway and checks that bytes move both ways.
fn open(gw: &Gateway, upstream: &Upstream) -> Open {
    let hello = rustls_client_hello(WEST_SNI);
    let mut client = connect(gw.addr());
    client.write_all(&hello).unwrap();
    let mut up = upstream.accept();
    let mut got = vec![0; hello.len()];
    up.read_exact(&mut got).unwrap();
    assert_eq!(got, hello);
    let mut open = Open {
        client,
        upstream: up,
        hello_len: hello.len(),
    };
    open.exchange(b"before");
    open
}

impl Open {
    /// Sends `msg` client → upstream and its reverse back, and checks both arrive.
    fn exchange(&mut self, msg: &[u8]) {
        self.client.write_all(msg).unwrap();
        let mut got = vec![0; msg.len()];
        self.upstream.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
        let reply: Vec<u8> = msg.iter().rev().copied().collect();
        self.upstream.write_all(&reply).unwrap();
        self.client.read_exact(&mut got).unwrap();
        assert_eq!(got, reply);
    }
}

/// Waits until `/healthz/ready` says 200: these tests drain a gateway that is serving.
fn wait_for_signal_handlers(gw: &Gateway) {
    wait_until("/healthz/ready is 200", || {
        gw.admin_get("/healthz/ready").0 == 200
    });
}

/// Asserts that the gateway logged `message`, already seen or still on its way (after
/// `wait_exit` the last lines may still be in the pipe).
fn logged(gw: &mut Gateway, message: &str) {
    if !gw.seen.iter().any(|v| v["message"] == message) {
        gw.wait_log(|v| v["message"] == message);
    }
}

/// A new connection to the draining listener is refused: the connect fails, or the connection
/// is closed without a byte back, and it reaches no upstream.
fn assert_new_connection_refused(addr: SocketAddr, upstream: &Upstream) {
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "connect: {e}"),
        Ok(mut s) => {
            s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
            send_tolerating_close(&mut s, &rustls_client_hello(WEST_SNI));
            assert_eq!(
                read_until_closed(&mut s),
                b"",
                "a draining gateway answered"
            );
        }
    }
    upstream.assert_no_connection("a connection made while draining");
}

#[test]
fn sigterm_refuses_new_connections_lets_open_ones_finish_then_exits_0() {
    let (mut gw, upstream) = start(&["--drain-timeout", "30s"]);
    wait_for_signal_handlers(&gw);
    let mut conn = open(&gw, &upstream);

    gw.signal(libc::SIGTERM);
    gw.wait_log(|v| v["message"] == "draining");
    wait_until("/healthz/ready turns 503", || {
        gw.admin_get("/healthz/ready").0 == 503
    });
    assert_eq!(gw.admin_get("/healthz/ready"), (503, "draining\n".into()));
    assert_eq!(gw.metric("eastwest_draining"), 1.0);
    assert_new_connection_refused(gw.addr(), &upstream);

    // The open connection still works, both ways.
    conn.exchange(b"after the signal");
    conn.exchange(b"and again");

    conn.client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_until_closed(&mut conn.upstream), b"");
    drop(conn.upstream);
    assert_eq!(read_until_closed(&mut conn.client), b"");
    let closed = Instant::now();
    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    let sent = conn.hello_len + "before".len() + "after the signal".len() + "and again".len();
    assert_eq!(line["bytes_sent"], sent as u64, "{line}");

    let status = gw.wait_exit();
    let took = closed.elapsed();
    assert!(status.success(), "exit status {status}:\n{}", gw.dump());
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after the last connection closed; the drain timeout was 30s"
    );
    logged(&mut gw, "drained; exiting");
}

#[test]
fn a_connection_open_past_the_drain_timeout_is_cut_and_the_process_exits_0() {
    let (mut gw, upstream) = start(&["--drain-timeout", "1s"]);
    wait_for_signal_handlers(&gw);
    let mut conn = open(&gw, &upstream);
    let signalled = Instant::now();
    gw.signal(libc::SIGTERM);

    // Nobody closes: the drain timeout must.
    let line = gw.wait_access();
    assert_eq!(line["reason"], "drained", "{line}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "cut before the 1s drain timeout"
    );
    let sent = conn.hello_len + "before".len();
    assert_eq!(line["bytes_sent"], sent as u64, "{line}");
    assert_eq!(line["bytes_received"], "before".len() as u64, "{line}");
    assert_eq!(read_until_closed(&mut conn.client), b"");
    assert_eq!(read_until_closed(&mut conn.upstream), b"");

    let status = gw.wait_exit();
    assert!(status.success(), "exit status {status}:\n{}", gw.dump());
    logged(&mut gw, "drain period over; closing remaining connections");
    logged(&mut gw, "drained; exiting");
}

/// A SIGTERM the moment the gateway says it listens must drain, not kill: the handlers are
/// installed before anything listens. (When they were installed after `Gateway::start`, a signal
/// in that window got the default action, status 143, in most runs of these 100 starts.)
#[test]
fn sigterm_right_after_start_drains_and_exits_0() {
    for round in 0..100 {
        let (mut gw, _upstream) = start(&[]);
        gw.signal(libc::SIGTERM);
        let status = gw.wait_exit();
        assert!(
            status.success(),
            "round {round}: a SIGTERM right after start ended the process with {status}"
        );
    }
}

/// A second SIGTERM during the drain stops at once: whatever is still open is cut (and recorded
/// `drained`), and the process exits 0 long before the 30s drain timeout.
#[test]
fn a_second_signal_during_the_drain_cuts_what_is_left_and_exits_0_at_once() {
    let (mut gw, upstream) = start(&["--drain-timeout", "30s"]);
    wait_for_signal_handlers(&gw);
    let mut conn = open(&gw, &upstream);

    gw.signal(libc::SIGTERM);
    gw.wait_log(|v| v["message"] == "draining");
    conn.exchange(b"still open while draining");
    let second = Instant::now();
    gw.signal(libc::SIGTERM);

    let line = gw.wait_access();
    assert_eq!(line["reason"], "drained", "{line}");
    let sent = conn.hello_len + "before".len() + "still open while draining".len();
    assert_eq!(line["bytes_sent"], sent as u64, "{line}");
    assert_eq!(read_until_closed(&mut conn.client), b"");
    assert_eq!(read_until_closed(&mut conn.upstream), b"");
    let status = gw.wait_exit();
    let took = second.elapsed();
    assert!(status.success(), "exit status {status}:\n{}", gw.dump());
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after the second signal; the drain timeout was 30s"
    );
    logged(&mut gw, "second signal: exiting now");
    assert!(
        !gw.seen.iter().any(|v| v["message"] == "drained; exiting"),
        "a forced stop is not a completed drain:\n{}",
        gw.dump()
    );
}
