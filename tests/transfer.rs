//! Bytes through the real binary over real sockets: 256 MiB each way at once, byte-exact by
//! SHA-256, with splice and with the buffered copy; half-close in both directions; and a
//! ClientHello fragmented into 1-byte segments and into several TLS records.

mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::Instant;

use support::{
    Gateway, RawBackend, WEST_SERVICE, WEST_SNI, connect, read_hashed, reframe,
    rustls_client_hello, sha256, write_bytewise, write_random,
};

/// Bytes sent each way in the bulk test (on top of the ClientHello upstream).
const BULK: u64 = 256 * 1024 * 1024;

/// Sends a real ClientHello then [`BULK`] pseudo-random bytes upstream while the backend sends
/// [`BULK`] bytes downstream, both at once, each side checksumming what it writes and reads.
fn bulk_both_ways(forward: &str) {
    let backend = RawBackend::bind();
    let mut gw = Gateway::start(&["--endpoints", &backend.west_route(), "--forward", forward]);
    let hello = rustls_client_hello(WEST_SNI);
    let start = Instant::now();

    let backend_side = thread::spawn(move || {
        let up = backend.accept();
        let mut rd = up.try_clone().unwrap();
        let reader = thread::spawn(move || read_hashed(&mut rd).unwrap());
        let mut wr = up;
        let sent = write_random(&mut wr, &[], 0xb0b, BULK).unwrap();
        wr.shutdown(Shutdown::Write).unwrap();
        (sent, reader.join().unwrap())
    });
    let client = connect(gw.addr());
    let mut wr = client.try_clone().unwrap();
    let prefix = hello.clone();
    let writer = thread::spawn(move || {
        let sent = write_random(&mut wr, &prefix, 0xa11ce, BULK).unwrap();
        wr.shutdown(Shutdown::Write).unwrap();
        sent
    });
    let mut rd = client;
    let (client_got_len, client_got) = read_hashed(&mut rd).unwrap();
    let client_sent = writer.join().unwrap();
    let (backend_sent, (backend_got_len, backend_got)) = backend_side.join().unwrap();
    let elapsed = start.elapsed();
    let mib = 2.0 * BULK as f64 / (1024.0 * 1024.0);
    eprintln!(
        "--forward {forward}: {mib} MiB in {elapsed:.2?} ({:.0} MiB/s, both directions at once)",
        mib / elapsed.as_secs_f64()
    );

    let upstream = hello.len() as u64 + BULK;
    assert_eq!(backend_got_len, upstream);
    assert_eq!(backend_got, client_sent, "upstream bytes differ");
    assert_eq!(client_got_len, BULK);
    assert_eq!(client_got, backend_sent, "downstream bytes differ");

    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["dst.service"], WEST_SERVICE, "{line}");
    assert_eq!(line["bytes_sent"], upstream, "{line}");
    assert_eq!(line["bytes_received"], BULK, "{line}");
    // Which path moved the bytes: splice(2) on Linux unless the buffered copy was asked for.
    let path = if forward == "copy" { "copy" } else { "splice" };
    assert_eq!(line["forward"], path, "{line}");
    let bytes = |dir: &str| {
        gw.metric(&format!(
            "eastwest_bytes_total{{listener=\"tls\",direction=\"{dir}\"}}"
        ))
    };
    assert_eq!(bytes("upstream"), upstream as f64);
    assert_eq!(bytes("downstream"), BULK as f64);
}

#[test]
fn bulk_256_mib_each_way_is_byte_exact_with_splice() {
    bulk_both_ways("auto");
}

#[test]
fn bulk_256_mib_each_way_is_byte_exact_with_the_buffered_copy() {
    bulk_both_ways("copy");
}

#[test]
fn client_half_close_still_delivers_the_whole_response() {
    const RESPONSE: u64 = 4 * 1024 * 1024;
    let backend = RawBackend::bind();
    let mut gw = Gateway::start(&["--endpoints", &backend.west_route()]);
    let hello = rustls_client_hello(WEST_SNI);
    let mut request = hello.clone();
    request.extend_from_slice(b"the whole request");

    let backend_side = thread::spawn(move || {
        let mut up = backend.accept();
        let mut got = Vec::new();
        up.read_to_end(&mut got).unwrap(); // the client's FIN made it through
        // Only now respond: the gateway must have kept this direction open.
        let sent = write_random(&mut up, &[], 7, RESPONSE).unwrap();
        drop(up);
        (got, sent)
    });
    let mut client = connect(gw.addr());
    client.write_all(&request).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (len, got) = read_hashed(&mut client).unwrap(); // to EOF: the backend's close
    let (backend_got, backend_sent) = backend_side.join().unwrap();
    assert!(backend_got == request, "the backend got other bytes");
    assert_eq!(len, RESPONSE);
    assert_eq!(got, backend_sent);

    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["bytes_sent"], request.len() as u64, "{line}");
    assert_eq!(line["bytes_received"], RESPONSE, "{line}");
}

#[test]
fn backend_half_close_lets_the_client_keep_sending() {
    const GREETING: u64 = 64 * 1024;
    const UPLOAD: u64 = 4 * 1024 * 1024;
    let backend = RawBackend::bind();
    let mut gw = Gateway::start(&["--endpoints", &backend.west_route()]);
    let hello = rustls_client_hello(WEST_SNI);

    let hello_len = hello.len();
    let backend_side = thread::spawn(move || {
        let mut up = backend.accept();
        let mut got_hello = vec![0u8; hello_len];
        up.read_exact(&mut got_hello).unwrap();
        let greeting = write_random(&mut up, &[], 3, GREETING).unwrap();
        up.shutdown(Shutdown::Write).unwrap();
        // Half-closed: still reading what the client sends.
        let upload = read_hashed(&mut up).unwrap();
        (got_hello, greeting, upload)
    });
    let mut client = connect(gw.addr());
    client.write_all(&hello).unwrap();
    let (len, greeting) = read_hashed(&mut client).unwrap(); // EOF: the backend's FIN came through
    assert_eq!(len, GREETING);
    // The client carries on sending after the backend has finished.
    let upload = write_random(&mut client, &[], 5, UPLOAD).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (got_hello, backend_greeting, (upload_len, backend_upload)) = backend_side.join().unwrap();
    assert!(got_hello == hello);
    assert_eq!(greeting, backend_greeting);
    assert_eq!(upload_len, UPLOAD);
    assert_eq!(upload, backend_upload);

    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["bytes_sent"], hello_len as u64 + UPLOAD, "{line}");
    assert_eq!(line["bytes_received"], GREETING, "{line}");
}

/// Sends `wire` (a ClientHello, however framed) and a few bytes after it, one byte per TCP
/// segment if `bytewise`; checks they reach the backend untouched and how the gateway routed.
fn routes_fragmented(wire: &[u8], bytewise: bool) {
    let parsed = eastwest_proxy::sni::parse(wire, 64 * 1024)
        .unwrap()
        .unwrap();
    assert_eq!(
        (parsed.sni.as_str(), parsed.wire_len),
        (WEST_SNI, wire.len())
    );

    let backend = RawBackend::bind();
    let mut gw = Gateway::start(&["--endpoints", &backend.west_route()]);
    let mut client = connect(gw.addr());
    if bytewise {
        write_bytewise(&mut client, wire);
    } else {
        client.write_all(wire).unwrap();
    }
    client.write_all(b"after the hello").unwrap();
    client.shutdown(Shutdown::Write).unwrap();

    let mut up = backend.accept();
    let mut got = Vec::new();
    up.read_to_end(&mut got).unwrap();
    let mut want = wire.to_vec();
    want.extend_from_slice(b"after the hello");
    assert_eq!(sha256(&got), sha256(&want), "the upstream got other bytes");
    drop(up);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();

    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["sni"], WEST_SNI, "{line}");
    assert_eq!(line["dst.service"], WEST_SERVICE, "{line}");
    assert_eq!(line["bytes_sent"], want.len() as u64, "{line}");
}

#[test]
fn client_hello_in_one_byte_segments_is_routed_intact() {
    routes_fragmented(&rustls_client_hello(WEST_SNI), true);
}

#[test]
fn client_hello_split_across_records_is_routed_intact() {
    let wire = reframe(&rustls_client_hello(WEST_SNI), 4);
    routes_fragmented(&wire, false);
}

#[test]
fn client_hello_split_across_records_and_one_byte_segments_is_routed_intact() {
    let wire = reframe(&rustls_client_hello(WEST_SNI), 5);
    routes_fragmented(&wire, true);
}
