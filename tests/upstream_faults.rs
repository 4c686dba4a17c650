//! Upstream faults against the real binary, with real sockets: an endpoint that black-holes
//! SYNs (connect timeout, then the next endpoint), one that resets mid-stream, one that reads
//! slowly (back-pressure to the client, the gateway's memory flat), and a service whose every
//! endpoint is down (a clean refusal, and the gateway goes on serving).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use support::{
    EVENT_TIMEOUT, Gateway, RefusingAddr, Upstream, WEST_SNI, assert_forwards, assert_refused,
    connect, read_until_closed, rustls_client_hello, send_tolerating_close,
};

/// A listener whose accept queue is full, so the kernel drops further SYNs: a connect to it
/// hangs, as to a pod behind a black-holing network. `listen(fd, 0)` leaves room for one
/// queued connection; the fillers take it (and one more, for kernels that allow backlog + 1).
struct BlackHole {
    listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    fn new() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listen(2) on a socket we own, to shrink its backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == ErrorKind::TimedOut => break,
                Err(e) => panic!("connect to the black hole: {e}"),
            }
            assert!(fillers.len() < 8, "the accept queue never filled");
        }
        BlackHole {
            listener,
            _fillers: fillers,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }
}

fn metric_connect_failures(gw: &Gateway) -> f64 {
    gw.metric("eastwest_upstream_connect_failures_total{listener=\"tls\"}")
}

#[test]
fn a_black_holed_endpoint_times_out_and_the_next_one_serves() {
    let hole = BlackHole::new();
    let live = Upstream::bind();
    let both = format!(
        "west.west.svc.cluster.local:8080={},{}",
        hole.addr(),
        live.addr()
    );
    let only = format!("hole.west.svc.cluster.local:8080={}", hole.addr());
    let mut gw = Gateway::start(&[
        "--endpoints",
        &both,
        "--endpoints",
        &only,
        "--connect-timeout",
        "200ms",
        "--balance",
        "round-robin",
    ]);
    // Round robin tries the hole first at least once in two connections: both reach `live`.
    for _ in 0..2 {
        assert_forwards(&mut gw, &live, WEST_SNI);
    }
    assert!(metric_connect_failures(&gw) >= 1.0);
    // With nothing else to try: refused after the connect timeout, per attempt.
    let hello = rustls_client_hello("outbound_.8080_._.hole.west.svc.cluster.local");
    let line = assert_refused(&mut gw, "connect_failed", |c| {
        send_tolerating_close(c, &hello)
    });
    assert!(line["duration_ms"].as_u64().unwrap() >= 200, "{line}");
    assert_forwards(&mut gw, &live, WEST_SNI);
}

#[test]
fn a_reset_mid_stream_ends_that_connection_only() {
    let upstream = Upstream::bind();
    let route = format!("west.west.svc.cluster.local:8080={}", upstream.addr());
    let mut gw = Gateway::start(&["--endpoints", &route]);
    let hello = rustls_client_hello(WEST_SNI);

    // A second connection, forwarding the whole time.
    let mut other = connect(gw.addr());
    other.write_all(&hello).unwrap();
    let mut other_up = upstream.accept();
    other_up.read_exact(&mut vec![0u8; hello.len()]).unwrap();

    let mut client = connect(gw.addr());
    client.write_all(&hello).unwrap();
    let mut up = upstream.accept();
    up.read_exact(&mut vec![0u8; hello.len()]).unwrap();
    up.write_all(b"partial answer").unwrap();
    // The pod dies: SO_LINGER 0 makes close(2) send a reset.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads one valid `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            up.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(up);
    // The client gets what the pod sent before it died, then the end (EOF or reset), at once
    // rather than at the idle timeout.
    let mut got = Vec::new();
    let end = client.read_to_end(&mut got);
    assert_eq!(got, b"partial answer");
    if let Err(e) = end {
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
    let line = gw.wait_access();
    assert_eq!(line["bytes_received"], 14, "{line}");
    // A reset is how many peers end a stream, so it is recorded as an ending, not an error.
    assert_eq!(line["reason"], "closed", "{line}");

    // The other connection did not notice.
    other.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    other_up.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still here");
    other_up.write_all(b"yes").unwrap();
    other.read_exact(&mut buf[..3]).unwrap();
    assert_eq!(&buf[..3], b"yes");
}

/// The gateway's resident memory, from /proc/PID/status.
fn rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A pod that stops reading: the client is held back by TCP flow control through the
/// gateway, which buffers nothing of its own (splice leaves the bytes in kernel buffers), and
/// everything arrives intact once the pod reads again.
fn slow_reader(forward: &str) {
    const CAP: usize = 256 << 20;
    let upstream = Upstream::bind();
    let route = format!("west.west.svc.cluster.local:8080={}", upstream.addr());
    let gw = Gateway::start(&["--endpoints", &route, "--forward", forward]);
    let mut client = connect(gw.addr());
    client.write_all(&rustls_client_hello(WEST_SNI)).unwrap();
    let mut up = upstream.accept();
    let rss_before = rss_kib(&gw);
    // Write until the client's writes stall (500 ms without progress), at most CAP bytes.
    client
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0usize;
    while written < CAP {
        match client.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("client write: {e}"),
        }
    }
    assert!(
        written < CAP,
        "{written} bytes went in without the pod reading: no back-pressure"
    );
    let grown = rss_kib(&gw).saturating_sub(rss_before);
    eprintln!(
        "{forward}: {} KiB in flight when the client stalled; gateway RSS +{grown} KiB",
        written >> 10
    );
    assert!(
        grown < 4096,
        "the gateway grew by {grown} KiB holding {} KiB for a slow pod",
        written >> 10
    );
    // The pod reads again: every byte arrives.
    client.shutdown(Shutdown::Write).unwrap();
    up.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let hello_len = rustls_client_hello(WEST_SNI).len();
    let got = read_until_closed(&mut up);
    assert_eq!(got.len(), hello_len + written);
    assert!(got[hello_len..].iter().all(|&b| b == 0x5a));
}

#[test]
fn a_slow_reading_pod_pushes_back_on_the_client_splice() {
    slow_reader("auto");
}

#[test]
fn a_slow_reading_pod_pushes_back_on_the_client_copy() {
    slow_reader("copy");
}

#[test]
fn a_service_with_every_endpoint_down_is_refused_cleanly() {
    let (a, b) = (RefusingAddr::new(), RefusingAddr::new());
    let live = Upstream::bind();
    let dead = format!("dead.west.svc.cluster.local:8080={},{}", a.addr, b.addr);
    let good = format!("west.west.svc.cluster.local:8080={}", live.addr());
    let mut gw = Gateway::start(&["--endpoints", &dead, "--endpoints", &good]);
    let hello = rustls_client_hello("outbound_.8080_._.dead.west.svc.cluster.local");
    for _ in 0..3 {
        assert_refused(&mut gw, "connect_failed", |c| {
            send_tolerating_close(c, &hello)
        });
        assert_forwards(&mut gw, &live, WEST_SNI);
    }
    // Each refusal tried both endpoints (once each: never the same one twice).
    assert!(metric_connect_failures(&gw) >= 6.0);
}
