//! Waiting is idle: while a slow client trickles its ClientHello, the gateway must sleep between
//! bytes rather than spin on `peek` (tokio's `TcpStream::peek` returns at once while bytes are
//! queued, so a naive "peek until complete" loop burns a core).

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use support::{Gateway, RawBackend, WEST_SERVICE, WEST_SNI, connect, rustls_client_hello};

/// The slow client's pace: one byte per this.
const TRICKLE: Duration = Duration::from_millis(100);
/// Bytes trickled before the rest of the hello is sent: ~3 s at [`TRICKLE`].
const TRICKLED: usize = 30;
/// CPU the gateway may use while it waits. A spinning peek loop uses about the whole window
/// (~3 s of one core); an idle one a few wake-ups per byte.
const CPU_BUDGET: Duration = Duration::from_millis(300);

// Why this cannot flake: it bounds the CPU time the gateway *process* uses, not how long
// anything takes. A correct gateway wakes once per arriving byte (30 times), peeks and parses
// fewer than 30 bytes and goes back to sleep: microseconds each, far below one clock tick
// (10 ms) in total, against a 300 ms budget. A slow or loaded machine stretches wall time and
// delays those wake-ups, but does not make them cost more CPU. The sleeps below are the
// workload (a slow client), never synchronisation: the hello's completion is awaited through
// the backend's accept and the access log. The window (~3 s) stays well inside the default
// 15 s sniff timeout, however slow the machine.
#[test]
fn trickled_client_hello_costs_no_cpu_while_waiting_then_routes() {
    let backend = RawBackend::bind();
    let mut gw = Gateway::start(&["--endpoints", &backend.west_route()]);
    let hello = rustls_client_hello(WEST_SNI);
    assert!(hello.len() > TRICKLED);

    let mut client = connect(gw.addr());
    client.set_nodelay(true).unwrap(); // each byte its own segment, each one a wake-up
    let cpu_before = gw.cpu_time();
    let start = Instant::now();
    for b in &hello[..TRICKLED] {
        client.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(TRICKLE);
    }
    let cpu = gw.cpu_time() - cpu_before;
    let wall = start.elapsed();
    eprintln!("gateway CPU while a hello trickled in for {wall:.2?}: {cpu:?}");

    // Still waiting for the rest of the hello: neither refused nor timed out.
    assert_eq!(
        gw.metric("eastwest_connections_active{listener=\"tls\"}"),
        1.0,
        "log:\n{}",
        gw.dump()
    );
    assert!(
        cpu < CPU_BUDGET,
        "the gateway used {cpu:?} of CPU in {wall:?} waiting for a ClientHello: is the peek loop \
         spinning?"
    );

    client.write_all(&hello[TRICKLED..]).unwrap();
    client.write_all(b"after the hello").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut up = backend.accept();
    let mut got = Vec::new();
    up.read_to_end(&mut got).unwrap();
    let mut want = hello.clone();
    want.extend_from_slice(b"after the hello");
    assert!(got == want, "the backend got other bytes");
    drop(up);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();

    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["dst.service"], WEST_SERVICE, "{line}");
}

/// Segments in the many-segment case, and the pause between them (short enough to be quick,
/// long enough that the kernel queues them as separate segments rather than merging them).
const SEGMENTS: usize = 20_000;
const SEGMENT_GAP: Duration = Duration::from_micros(300);
/// Measured on the 2-core dev VM (debug build): 0.36 s of gateway CPU for 16,000 segments when
/// every wake-up re-peeked the whole queue (the cost grows with the square of the bytes
/// queued), more for 20,000; 0 ticks (< 10 ms) with the O(1) queue-length check and SO_RCVLOWAT.
const MANY_SEGMENTS_BUDGET: Duration = Duration::from_millis(200);

/// A hostile client sends a large (never-finished) hello one byte per segment. Each wake-up must
/// not re-read the whole queue: the gateway checks the queue length first and waits for the end
/// of the record. Cannot flake for the same reason as above: it bounds CPU, not time.
#[test]
fn many_tiny_segments_do_not_cost_quadratic_cpu() {
    let backend = RawBackend::bind();
    let gw = Gateway::start(&[
        "--endpoints",
        &backend.west_route(),
        "--sniff-timeout",
        "60s",
    ]);
    // One handshake record announcing a 16 KiB ClientHello; only its first SEGMENTS bytes come.
    let mut record = vec![
        0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc, 0x03, 0x03,
    ];
    record.resize(5 + 0x4000, 0);
    let mut client = connect(gw.addr());
    client.set_nodelay(true).unwrap();
    let cpu_before = gw.cpu_time();
    let start = Instant::now();
    let mut next = Instant::now();
    for b in &record[..SEGMENTS.min(record.len() - 1)] {
        client.write_all(std::slice::from_ref(b)).unwrap();
        next += SEGMENT_GAP;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let cpu = gw.cpu_time() - cpu_before;
    eprintln!(
        "gateway CPU while {SEGMENTS} one-byte segments arrived over {:.2?}: {cpu:?}",
        start.elapsed()
    );
    assert_eq!(
        gw.metric("eastwest_connections_active{listener=\"tls\"}"),
        1.0
    );
    assert!(
        cpu < MANY_SEGMENTS_BUDGET,
        "{cpu:?} of CPU for {SEGMENTS} tiny segments"
    );
}
