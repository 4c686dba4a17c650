//! Every refusal reason, end to end against the real binary: each case makes one connection the
//! gateway must refuse and checks what an operator and the client see — the access line's
//! `reason`, `eastwest_connections_refused_total{reason}` up by exactly one, the connection
//! closed with nothing sent back, no connection to any upstream — and that a good connection
//! made right after still routes.

mod support;

use std::io::Write as _;
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;
use support::{
    Gateway, RefusingAddr, Upstream, WEST_SNI, assert_forwards, assert_refused, connect,
    read_until_closed, rustls_client_hello, send_tolerating_close, wait_until,
};

/// A gateway with one good route (to `upstream`) and routes that exist to be refused.
struct Fixture {
    gw: Gateway,
    upstream: Upstream,
    /// Endpoint of `dead.ns.svc.cluster.local:8080`: nothing listens there.
    _dead: RefusingAddr,
}

impl Fixture {
    fn start(extra: &[&str]) -> Fixture {
        let upstream = Upstream::bind();
        let dead = RefusingAddr::new();
        let routes = [
            format!("west.west.svc.cluster.local:8080={}", upstream.addr()),
            // Routed, but outside `--hosts`: must never be reached.
            format!("secret.ns.svc.example.com:8080={}", upstream.addr()),
            "empty.ns.svc.cluster.local:8080=".to_string(),
            format!("dead.ns.svc.cluster.local:8080={}", dead.addr),
        ];
        let mut args = vec!["--hosts", "*.cluster.local"];
        for r in &routes {
            args.extend(["--endpoints", r.as_str()]);
        }
        args.extend(extra);
        Fixture {
            gw: Gateway::start(&args),
            upstream,
            _dead: dead,
        }
    }

    fn refused_total(&self, reason: &str) -> f64 {
        self.gw.metric(&format!(
            "eastwest_connections_refused_total{{listener=\"tls\",reason=\"{reason}\"}}"
        ))
    }

    /// The refusal checks of the module docs, except the good connection after (see
    /// [`Fixture::refuses`]). Returns the access line.
    fn assert_refused(&mut self, reason: &str, send: impl FnOnce(&mut TcpStream)) -> Value {
        let before = self.refused_total(reason);
        let line = assert_refused(&mut self.gw, reason, send);
        assert_eq!(
            self.refused_total(reason),
            before + 1.0,
            "{reason}: the refusal counter must move by exactly one"
        );
        self.upstream.assert_no_connection(reason);
        line
    }

    /// [`Fixture::assert_refused`], then a good connection still routes.
    fn refuses(&mut self, reason: &str, send: impl FnOnce(&mut TcpStream)) -> Value {
        let line = self.assert_refused(reason, send);
        assert_forwards(&mut self.gw, &self.upstream, WEST_SNI);
        line
    }

    /// Sends a real ClientHello for `sni` and expects `reason`.
    fn refuses_sni(&mut self, sni: &str, reason: &str) -> Value {
        let hello = rustls_client_hello(sni);
        let line = self.refuses(reason, |c| send_tolerating_close(c, &hello));
        assert_eq!(line["sni"], sni, "{line}");
        line
    }
}

/// One named case of the shared-gateway test.
type Case = fn(&mut Fixture);

#[test]
fn every_refusal_reason_is_logged_counted_and_closed_and_the_next_connection_routes() {
    let mut fx = Fixture::start(&[]);
    // One gateway serves every case in turn (exact counter deltas need no other traffic);
    // a failing case is reported and the others still run.
    let cases: &[(&str, Case)] = &[
        ("not_tls", |fx| {
            let http = b"GET / HTTP/1.1\r\nHost: west.west.svc.cluster.local\r\n\r\n";
            fx.refuses("not_tls", |c| send_tolerating_close(c, http));
        }),
        ("not_client_hello", |fx| {
            fx.refuses("not_client_hello", |c| {
                send_tolerating_close(c, &server_hello())
            });
        }),
        ("malformed_client_hello", |fx| {
            let hello = with_extensions_len_off_by_one(rustls_client_hello(WEST_SNI));
            fx.refuses("malformed_client_hello", |c| {
                send_tolerating_close(c, &hello)
            });
        }),
        ("no_sni", |fx| {
            // rustls sends no server_name to an IP address.
            let hello = rustls_client_hello("127.0.0.1");
            fx.refuses("no_sni", |c| send_tolerating_close(c, &hello));
        }),
        ("bad_sni", |fx| {
            // `outbound_.8080_._.*est.west.svc.cluster.local`: same lengths, invalid byte.
            let hello = with_sni_byte_replaced(WEST_SNI, "outbound_.8080_._.".len(), b'*');
            fx.refuses("bad_sni", |c| send_tolerating_close(c, &hello));
        }),
        ("bad_istio_name", |fx| {
            for sni in ["outbound_.0_._.x.local", "outbound_.http_._.x.local"] {
                fx.refuses_sni(sni, "bad_istio_name");
            }
            // No host: the trailing dot goes (dropped by rustls or the gateway), nothing is left.
            let hello = rustls_client_hello("outbound_.8080_._.");
            let line = fx.refuses("bad_istio_name", |c| send_tolerating_close(c, &hello));
            assert!(
                line["sni"]
                    .as_str()
                    .unwrap()
                    .starts_with("outbound_.8080_._"),
                "{line}"
            );
        }),
        ("sniff_eof", |fx| {
            let hello = rustls_client_hello(WEST_SNI);
            fx.refuses("sniff_eof", |c| {
                send_tolerating_close(c, &hello[..hello.len() / 2]);
                c.shutdown(std::net::Shutdown::Write).unwrap();
            });
        }),
        ("host_not_exposed", |fx| {
            // A route exists, but `--hosts *.cluster.local` does not expose it.
            fx.refuses_sni(
                "outbound_.8080_._.secret.ns.svc.example.com",
                "host_not_exposed",
            );
        }),
        ("no_route", |fx| {
            let line = fx.refuses_sni("outbound_.8080_._.unknown.ns.svc.cluster.local", "no_route");
            assert_eq!(
                line["dst.service"],
                "outbound|8080||unknown.ns.svc.cluster.local"
            );
            // A known service, on a port it does not have.
            let line = fx.refuses_sni("outbound_.9090_._.west.west.svc.cluster.local", "no_route");
            assert_eq!(
                line["dst.service"],
                "outbound|9090||west.west.svc.cluster.local"
            );
        }),
        ("no_ready_endpoint", |fx| {
            fx.refuses_sni(
                "outbound_.8080_._.empty.ns.svc.cluster.local",
                "no_ready_endpoint",
            );
        }),
        ("connect_failed", |fx| {
            let failures = "eastwest_upstream_connect_failures_total{listener=\"tls\"}";
            let before = fx.gw.metric(failures);
            fx.refuses_sni(
                "outbound_.8080_._.dead.ns.svc.cluster.local",
                "connect_failed",
            );
            assert_eq!(fx.gw.metric(failures), before + 1.0);
        }),
    ];
    let failed: Vec<&str> = cases
        .iter()
        .filter(|(_, case)| catch_unwind(AssertUnwindSafe(|| case(&mut fx))).is_err())
        .map(|(name, _)| *name)
        .collect();
    assert!(
        failed.is_empty(),
        "failing cases: {failed:?}; gateway log:\n{}",
        fx.gw.dump()
    );
}

/// Hostile and broken first bytes, each with the reason the gateway must give, one gateway for
/// all (so each counter moves by exactly one), a good connection after each (`refuses`).
#[test]
fn the_bad_input_battery_is_refused_case_by_case() {
    let mut fx = Fixture::start(&[]);
    let west = WEST_SNI.as_bytes();
    let long_label = "a".repeat(63);
    let too_long =
        format!("outbound_.8080_._.{long_label}.{long_label}.{long_label}.{long_label}.local");
    assert!(too_long.len() > 253);
    let cases: &[(&str, &str, Vec<u8>)] = &[
        // An SSLv2-compatible ClientHello (two-byte header with the high bit set), as very old
        // clients and some scanners send: not a TLS record at all.
        ("sslv2 hello", "not_tls", {
            let mut v2 = vec![
                0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
            ];
            v2.extend(
                [0x00, 0x00, 0x2f, 0x00, 0x00, 0x35, 0x00, 0x00, 0x0a]
                    .repeat(2)
                    .iter()
                    .take(21),
            );
            v2.extend([0x42; 16]);
            v2
        }),
        // A record of another content type carrying a real hello (application data, alert).
        (
            "application data record",
            "not_tls",
            retyped(0x17, rustls_client_hello(WEST_SNI)),
        ),
        (
            "alert record",
            "not_tls",
            retyped(0x15, rustls_client_hello(WEST_SNI)),
        ),
        // A record header announcing more than TLS allows (2^14 + 1 bytes), then EOF-free
        // silence: refused at the header, without waiting for the body.
        (
            "record over 2^14",
            "malformed_client_hello",
            vec![0x16, 0x03, 0x01, 0x40, 0x01, 0x01],
        ),
        // RFC 6066: at most one host_name in the list.
        (
            "two server names",
            "malformed_client_hello",
            hello_with_names(&[west, b"other.ns.svc.cluster.local"]),
        ),
        ("IPv4 literal", "bad_sni", hello_with_names(&[b"127.0.0.1"])),
        ("IPv6 literal", "bad_sni", hello_with_names(&[b"::1"])),
        (
            "name over 253 bytes",
            "bad_sni",
            hello_with_names(&[too_long.as_bytes()]),
        ),
        (
            "non-ASCII name",
            "bad_sni",
            hello_with_names(&["outbound_.8080_._.w\u{e9}st.west.svc.cluster.local".as_bytes()]),
        ),
        (
            "NUL in name",
            "bad_sni",
            hello_with_names(&[b"outbound_.8080_._.west\0.west.svc.cluster.local"]),
        ),
        ("empty name", "bad_sni", hello_with_names(&[b""])),
        (
            "port 65536",
            "bad_istio_name",
            hello_with_names(&[b"outbound_.65536_._.west.west.svc.cluster.local"]),
        ),
        (
            "port in letters",
            "bad_istio_name",
            hello_with_names(&[b"outbound_.eighty_._.west.west.svc.cluster.local"]),
        ),
        (
            "port 0",
            "bad_istio_name",
            hello_with_names(&[b"outbound_.0_._.west.west.svc.cluster.local"]),
        ),
        (
            "empty host",
            "bad_istio_name",
            hello_with_names(&[b"outbound_.8080_._"]),
        ),
        (
            "host still holding _.",
            "bad_istio_name",
            hello_with_names(&[b"outbound_.8080_._.a_.west.west.svc.cluster.local"]),
        ),
        (
            "host not exposed",
            "host_not_exposed",
            hello_with_names(&[b"outbound_.8080_._.secret.ns.svc.example.com"]),
        ),
        (
            "unknown service",
            "no_route",
            hello_with_names(&[b"outbound_.8080_._.nope.west.svc.cluster.local"]),
        ),
    ];
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|(name, reason, bytes)| {
            catch_unwind(AssertUnwindSafe(|| {
                fx.refuses(reason, |c| send_tolerating_close(c, bytes));
            }))
            .err()
            .map(|_| format!("{name} (expected {reason})"))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "failing cases: {failed:?}; gateway log:\n{}",
        fx.gw.dump()
    );
    // The hand-built hello itself is good: with the west name it is forwarded byte for byte.
    let good = hello_with_names(&[west]);
    let mut client = connect(fx.gw.addr());
    client.write_all(&good).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut up = fx.upstream.accept();
    assert_eq!(read_until_closed(&mut up), good);
}

#[test]
fn client_hello_too_large_is_refused_at_the_configured_cap() {
    let mut fx = Fixture::start(&["--max-client-hello", "1024"]);
    let alpn = (0..100).map(|i| format!("protocol-{i:03}").into_bytes());
    let big = support::rustls_client_hello_with_alpn(WEST_SNI, alpn.collect());
    assert!(
        big.len() > 1024,
        "the test hello is only {} bytes",
        big.len()
    );
    assert!(
        rustls_client_hello(WEST_SNI).len() < 1024,
        "the good hello must fit"
    );
    // `refuses` routes a normal hello afterwards: the cap is on size, not on this client.
    fx.refuses("client_hello_too_large", |c| send_tolerating_close(c, &big));
}

#[test]
fn sniff_timeout_closes_a_client_that_stalls_mid_hello() {
    let mut fx = Fixture::start(&["--sniff-timeout", "300ms"]);
    let hello = rustls_client_hello(WEST_SNI);
    // Half a hello, and the connection left open: only the timeout can end it.
    let line = fx.refuses("sniff_timeout", |c| {
        send_tolerating_close(c, &hello[..hello.len() / 2])
    });
    let ms = line["duration_ms"].as_u64().unwrap();
    assert!(
        ms >= 300,
        "closed after {ms} ms, before the 300ms sniff timeout"
    );
}

#[test]
fn connection_limit_refuses_connections_over_the_limit() {
    let mut fx = Fixture::start(&["--max-connections", "1"]);
    let hello = rustls_client_hello(WEST_SNI);
    // Hold the one allowed connection mid-sniff.
    let mut held = connect(fx.gw.addr());
    held.write_all(&hello[..10]).unwrap();
    wait_until("the held connection is open in the gateway", || {
        fx.gw
            .metric("eastwest_connections_active{listener=\"tls\"}")
            == 1.0
    });
    fx.assert_refused("connection_limit", |c| send_tolerating_close(c, &hello));

    // The held connection was not disturbed: it completes its hello and is forwarded.
    held.write_all(&hello[10..]).unwrap();
    held.shutdown(std::net::Shutdown::Write).unwrap();
    let mut up = fx.upstream.accept();
    assert_eq!(read_until_closed(&mut up), hello);
    drop(up);
    assert_eq!(read_until_closed(&mut held), b"");
    assert_eq!(fx.gw.wait_access()["reason"], "closed");
    // Its slot is free again: with one worker, the access line and the slot's release happen
    // in one poll of that connection's task, before the worker serves the next connection.
    assert_forwards(&mut fx.gw, &fx.upstream, WEST_SNI);
}

#[test]
fn bytes_after_a_valid_client_hello_are_forwarded_untouched() {
    let mut fx = Fixture::start(&[]);
    let mut sent = rustls_client_hello(WEST_SNI);
    // Not our business: a bogus record header, text and every byte value, in the same write.
    sent.extend_from_slice(b"\x16\x03\x03\xff\xffnot a record");
    sent.extend(0..=255u8);
    let mut client = connect(fx.gw.addr());
    client.write_all(&sent).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut up = fx.upstream.accept();
    assert_eq!(read_until_closed(&mut up), sent);
    drop(up);
    assert_eq!(read_until_closed(&mut client), b"");
    let line = fx.gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["bytes_sent"], sent.len() as u64, "{line}");
}

/// A TLS 1.3-style ServerHello in a handshake record: TLS, but not what a client sends first.
fn server_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x03]; // legacy_version
    body.extend([0x5a; 32]); // random
    body.push(0); // legacy_session_id_echo: empty
    body.extend([0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.push(0); // legacy_compression_method
    body.extend([0, 0]); // no extensions
    const SERVER_HELLO: u8 = 2;
    let len = body.len() as u32;
    let mut message = vec![SERVER_HELLO];
    message.extend(&len.to_be_bytes()[1..]);
    message.extend(body);
    let mut record = vec![0x16, 0x03, 0x03];
    record.extend((message.len() as u16).to_be_bytes());
    record.extend(message);
    record
}

/// A real one-record ClientHello whose extensions length claims one byte more than there is.
fn with_extensions_len_off_by_one(mut hello: Vec<u8>) -> Vec<u8> {
    // Record header (5), handshake header (4), legacy_version (2), random (32), then the
    // length-prefixed session id (1), cipher suites (2) and compression methods (1).
    let mut at = 5 + 4 + 2 + 32;
    at += 1 + usize::from(hello[at]);
    at += 2 + usize::from(u16::from_be_bytes([hello[at], hello[at + 1]]));
    at += 1 + usize::from(hello[at]);
    let len = u16::from_be_bytes([hello[at], hello[at + 1]]);
    assert_eq!(
        usize::from(len),
        hello.len() - at - 2,
        "extensions must end the hello"
    );
    hello[at..at + 2].copy_from_slice(&(len + 1).to_be_bytes());
    hello
}

/// A real ClientHello for `sni` with the SNI's byte at `index` replaced by `byte` (lengths kept).
fn with_sni_byte_replaced(sni: &str, index: usize, byte: u8) -> Vec<u8> {
    let mut hello = rustls_client_hello(sni);
    let at: Vec<usize> = hello
        .windows(sni.len())
        .enumerate()
        .filter(|(_, w)| *w == sni.as_bytes())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "the SNI must appear once in the hello");
    hello[at[0] + index] = byte;
    hello
}

/// `hello` with its record's content type replaced.
fn retyped(content_type: u8, mut hello: Vec<u8>) -> Vec<u8> {
    hello[0] = content_type;
    hello
}

/// A minimal TLS 1.2-style ClientHello in one record whose server_name extension lists `names`
/// as host_name entries, each written as given (no validation: that is the gateway's job).
fn hello_with_names(names: &[&[u8]]) -> Vec<u8> {
    fn u16be(n: usize) -> [u8; 2] {
        u16::try_from(n).unwrap().to_be_bytes()
    }
    let mut list = Vec::new();
    for name in names {
        list.push(0); // host_name
        list.extend(u16be(name.len()));
        list.extend(*name);
    }
    let mut sni = u16be(list.len()).to_vec();
    sni.extend(list);
    let mut extensions = vec![0, 0]; // server_name
    extensions.extend(u16be(sni.len()));
    extensions.extend(sni);
    let mut body = vec![0x03, 0x03]; // legacy_version
    body.extend([0x11; 32]); // random
    body.push(0); // legacy_session_id: empty
    body.extend([0, 2, 0x13, 0x01]); // one cipher suite
    body.extend([1, 0]); // null compression
    body.extend(u16be(extensions.len()));
    body.extend(extensions);
    let mut message = vec![1]; // client_hello
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(u16be(message.len()));
    record.extend(message);
    record
}
