//! The parser against real ClientHellos (rustls built here; openssl and a post-quantum rustls
//! captured in `proxy/tests/data/`, see its README), every prefix of them, re-framed into many
//! records, and edited into each refusal.

use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::*;

const MAX: usize = 64 * 1024;
const ISTIO_SNI: &str = "outbound_.8080_._.west.west.svc.cluster.local";

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The bytes a real rustls client (ring provider) sends first (also used by `sniff::tests`).
pub(crate) fn rustls_hello(name: ServerName<'static>, alpn: &[&[u8]]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).unwrap();
    }
    wire
}

fn istio_hello() -> Vec<u8> {
    let name = ServerName::try_from(ISTIO_SNI).expect("rustls accepts '_' in DNS names");
    rustls_hello(name, &[b"istio-peer-exchange", b"istio"])
}

/// A realistic hello over 4 KiB (`big_alpn(4500)`) or over one record (`big_alpn(20_000)`).
fn big_alpn(bytes: usize) -> Vec<u8> {
    let names: Vec<Vec<u8>> = (0..bytes / 24)
        .map(|i| format!("x-padding-protocol-{i:05}").into_bytes())
        .collect();
    let mut alpn: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    alpn.push(b"istio-h2");
    rustls_hello(
        ServerName::try_from("big.west.svc.cluster.local").unwrap(),
        &alpn,
    )
}

fn real_hellos() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("rustls", istio_hello()),
        ("openssl", data("openssl_client_hello.bin")),
        ("post-quantum", data("pq_client_hello.bin")),
        ("over 4 KiB", big_alpn(4500)),
    ]
}

fn found(buf: &[u8]) -> ClientHello {
    match parse(buf, MAX) {
        Ok(Ok(hello)) => hello,
        other => panic!("expected a hello, got {other:?}"),
    }
}

fn refused(buf: &[u8]) -> HelloError {
    match parse(buf, MAX) {
        Ok(Err(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn record(content_type: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap();
    let mut out = vec![content_type, 3, 1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The handshake bytes carried by the records of `wire`, concatenated.
fn message(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = wire;
    while rest.len() >= RECORD_HEADER_LEN {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.extend_from_slice(&rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len]);
        rest = &rest[RECORD_HEADER_LEN + len..];
    }
    assert!(rest.is_empty(), "trailing bytes after the records");
    out
}

/// Frames a handshake message into handshake records of `sizes` bytes (cycled; the last shorter).
fn reframe(message: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut rest, mut size) = (message, sizes.iter().cycle());
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at((*size.next().unwrap()).min(rest.len()));
        out.extend(record(CONTENT_TYPE_HANDSHAKE, chunk));
        rest = tail;
    }
    out
}

/// A real hello taken apart so that its extensions can be edited and its lengths rebuilt.
struct Hello {
    /// The ClientHello body up to, not including, the extensions length.
    prefix: Vec<u8>,
    extensions: Vec<(u16, Vec<u8>)>,
}

impl Hello {
    fn from_wire(wire: &[u8]) -> Hello {
        let message = message(wire);
        let body = &message[HANDSHAKE_HEADER_LEN..];
        let mut at = 2 + 32; // legacy_version, random
        at += 1 + usize::from(body[at]); // session id
        at += 2 + usize::from(u16::from_be_bytes([body[at], body[at + 1]])); // cipher suites
        at += 1 + usize::from(body[at]); // compression methods
        let prefix = body[..at].to_vec();
        let mut rest = &body[at + 2..];
        let mut extensions = Vec::new();
        while !rest.is_empty() {
            let kind = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            extensions.push((kind, rest[4..4 + len].to_vec()));
            rest = &rest[4 + len..];
        }
        Hello { prefix, extensions }
    }

    fn block(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (kind, data) in &self.extensions {
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    /// The body with `block` as the extensions; `None` leaves out even their length.
    fn body_with_block(&self, block: Option<&[u8]>) -> Vec<u8> {
        let mut body = self.prefix.clone();
        if let Some(block) = block {
            body.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
            body.extend_from_slice(block);
        }
        body
    }

    fn wire_with_block(&self, block: Option<&[u8]>) -> Vec<u8> {
        wire_from_body(&self.body_with_block(block))
    }

    fn wire(&self) -> Vec<u8> {
        self.wire_with_block(Some(&self.block()))
    }

    fn extension_mut(&mut self, kind: u16) -> &mut Vec<u8> {
        let found = self.extensions.iter_mut().find(|(k, _)| *k == kind);
        &mut found
            .unwrap_or_else(|| panic!("the hello has no extension {kind}"))
            .1
    }

    fn sni_mut(&mut self) -> &mut Vec<u8> {
        self.extension_mut(0)
    }
}

/// One handshake record holding a ClientHello with this body.
fn wire_from_body(body: &[u8]) -> Vec<u8> {
    let mut message = vec![HANDSHAKE_CLIENT_HELLO];
    message.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    message.extend_from_slice(body);
    reframe(&message, &[MAX_RECORD_PAYLOAD])
}

/// Edits the extensions of the real rustls hello and returns the rebuilt wire bytes.
fn edited(edit: impl FnOnce(&mut Hello)) -> Vec<u8> {
    let mut hello = Hello::from_wire(&istio_hello());
    edit(&mut hello);
    hello.wire()
}

/// server_name extension data with the given (name_type, name) entries.
fn sni_data(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in entries {
        list.push(*kind);
        list.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut out = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
    out.extend(list);
    out
}

fn with_sni(name: &[u8]) -> Vec<u8> {
    edited(|h| *h.sni_mut() = sni_data(&[(0, name)]))
}

#[test]
fn rustls_hello_is_found_with_its_istio_alpn() {
    let wire = istio_hello();
    let hello = found(&wire);
    assert_eq!(hello.sni.as_str(), ISTIO_SNI);
    assert!(hello.alpn.contains(Alpn::ISTIO | Alpn::ISTIO_PEER_EXCHANGE));
    assert!(!hello.alpn.contains(Alpn::ISTIO_H2));
    assert_eq!(hello.wire_len, wire.len());
}

#[test]
fn openssl_hello_is_found() {
    let wire = data("openssl_client_hello.bin");
    let hello = found(&wire);
    assert_eq!(hello.sni.as_str(), "west.west.svc.cluster.local");
    assert_eq!(hello.alpn, Alpn::ISTIO);
    assert_eq!(hello.wire_len, wire.len());
}

#[test]
fn post_quantum_hello_is_found() {
    let wire = data("pq_client_hello.bin");
    // An X25519MLKEM768 (0x11ec) key share of 1216 (0x04c0) bytes is really in there.
    assert!(wire.windows(4).any(|w| w == [0x11, 0xec, 0x04, 0xc0]));
    assert!(wire.len() > 1400, "{} bytes", wire.len());
    let hello = found(&wire);
    assert_eq!(hello.sni.as_str(), ISTIO_SNI);
    assert!(hello.alpn.contains(Alpn::ISTIO | Alpn::ISTIO_PEER_EXCHANGE));
    assert_eq!(hello.wire_len, wire.len());
}

#[test]
fn hello_over_4k_is_found() {
    let wire = big_alpn(4500);
    assert!(wire.len() > 4096, "{} bytes", wire.len());
    let hello = found(&wire);
    assert_eq!(hello.sni.as_str(), "big.west.svc.cluster.local");
    assert_eq!(hello.alpn, Alpn::ISTIO_H2);
    assert_eq!(hello.wire_len, wire.len());
}

#[test]
fn hello_that_rustls_splits_over_two_records_is_reassembled() {
    let wire = big_alpn(20_000);
    assert_ne!(
        message(&wire).len() + RECORD_HEADER_LEN,
        wire.len(),
        "rustls sent one record"
    );
    let hello = found(&wire);
    assert_eq!(hello.alpn, Alpn::ISTIO_H2);
    assert_eq!(hello.wire_len, wire.len());
    assert_eq!(parse(&wire[..wire.len() - 1], MAX), Err(Incomplete));
}

fn assert_every_prefix_incomplete(what: &str, wire: &[u8]) {
    for end in 0..wire.len() {
        assert_eq!(
            parse(&wire[..end], MAX),
            Err(Incomplete),
            "{what}: {end} of {} bytes",
            wire.len()
        );
    }
}

#[test]
fn every_prefix_is_incomplete_until_the_hello_is() {
    for (what, wire) in real_hellos()
        .into_iter()
        .chain([("two records", big_alpn(20_000))])
    {
        assert_every_prefix_incomplete(what, &wire);
        assert_eq!(found(&wire).wire_len, wire.len(), "{what}");
    }
}

#[test]
fn hello_reframed_into_many_records_gives_the_same_answer() {
    for (what, wire) in real_hellos() {
        let expected = found(&wire);
        let message = message(&wire);
        for sizes in [&[1][..], &[7], &[100], &[1, 7, 100], &[MAX_RECORD_PAYLOAD]] {
            let reframed = reframe(&message, sizes);
            let what = format!("{what} in records of {sizes:?}");
            let hello = parse(&reframed, MAX).unwrap_or_else(|_| panic!("{what}: incomplete"));
            if record_count(&reframed) > MAX_RECORDS {
                // Past the record cap: refused, however valid the pieces.
                assert_eq!(hello, Err(HelloError::Malformed), "{what}");
                continue;
            }
            let expected = ClientHello {
                wire_len: reframed.len(),
                ..expected
            };
            assert_eq!(hello, Ok(expected), "{what}");
            if sizes != [1] || wire.len() < 2000 {
                assert_every_prefix_incomplete(&what, &reframed);
            }
        }
    }
}

/// Counts the records in a well-formed sequence of TLS records.
fn record_count(wire: &[u8]) -> usize {
    let (mut pos, mut n) = (0, 0);
    while pos + RECORD_HEADER_LEN <= wire.len() {
        pos += RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([wire[pos + 3], wire[pos + 4]]));
        n += 1;
    }
    n
}

#[test]
fn a_hello_over_the_record_cap_is_refused_and_one_at_it_is_found() {
    let (_, wire) = real_hellos().into_iter().next().unwrap();
    let message = message(&wire);
    let at_cap = message.len().div_ceil(MAX_RECORDS);
    let reframed = reframe(&message, &[at_cap]);
    assert!(record_count(&reframed) <= MAX_RECORDS);
    assert!(parse(&reframed, MAX).unwrap().is_ok());
    let over = reframe(&message, &[1]);
    if record_count(&over) > MAX_RECORDS {
        assert_eq!(parse(&over, MAX), Ok(Err(HelloError::Malformed)));
    }
    // Decided as soon as the record after the cap starts, not after the whole hello.
    // A ClientHello header declaring 4,096 bytes, then one byte per record.
    let mut tiny = Vec::new();
    for i in 0..=MAX_RECORDS {
        let byte = [0x01, 0x00, 0x10, 0x00].get(i).copied().unwrap_or(0);
        tiny.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x01, byte]);
    }
    assert_eq!(parse(&tiny, MAX), Ok(Err(HelloError::Malformed)));
}

#[test]
fn bytes_after_the_hello_are_not_part_of_it() {
    for (what, wire) in real_hellos() {
        let expected = found(&wire);
        for garbage in [
            &b"\x17\x03\x03\x00\x05early"[..],
            b"\x00",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            let with_garbage = [&wire[..], garbage].concat();
            assert_eq!(found(&with_garbage), expected, "{what} + {garbage:?}");
        }
    }
}

#[test]
fn not_tls_is_decided_from_the_first_bytes() {
    assert_eq!(parse(b"", MAX), Err(Incomplete));
    assert_eq!(parse(b"\x16", MAX), Err(Incomplete));
    assert_eq!(refused(b"G"), HelloError::NotTls);
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: west\r\n\r\n"),
        HelloError::NotTls
    );
    // An SSLv2-compatible hello: two-byte length with the high bit set, then type 1, version 3.1.
    assert_eq!(
        refused(b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10"),
        HelloError::NotTls
    );
    assert_eq!(
        refused(&record(0x17, b"application data")),
        HelloError::NotTls
    );
    assert_eq!(refused(b"\x16\x02"), HelloError::NotTls);
}

#[test]
fn server_hello_is_not_a_client_hello() {
    let mut wire = istio_hello();
    wire[RECORD_HEADER_LEN] = 2;
    assert_eq!(
        refused(&wire[..RECORD_HEADER_LEN + 1]),
        HelloError::NotClientHello
    );
    // Also when the handshake type arrives in a later byte of a one-byte-record stream.
    let reframed = reframe(&message(&wire), &[1]);
    assert_eq!(
        refused(&reframed[..RECORD_HEADER_LEN + 1]),
        HelloError::NotClientHello
    );
}

#[test]
fn too_large_is_decided_from_the_lengths_before_the_bytes_arrive() {
    let wire = istio_hello();
    let header_in_view = &wire[..RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN];
    assert_eq!(
        parse(header_in_view, wire.len() - 1),
        Ok(Err(HelloError::TooLarge))
    );
    assert_eq!(parse(header_in_view, wire.len()), Err(Incomplete));
    assert_eq!(
        parse(&wire, wire.len()).map(|h| h.map(|h| h.wire_len)),
        Ok(Ok(wire.len()))
    );
    // A record that alone overruns the cap, from its header alone.
    assert_eq!(
        parse(b"\x16\x03\x01\x01\x00", 200),
        Ok(Err(HelloError::TooLarge))
    );
    // A 16 MiB handshake declared in a small record: its remaining records cannot fit.
    assert_eq!(
        refused(b"\x16\x03\x01\x00\x04\x01\xff\xff\xff"),
        HelloError::TooLarge
    );
    // A 32 KiB handshake whose first record carries only its header: the rest needs at least
    // two more records, so at least 9 + 32768 + 2 * 5 bytes on the wire.
    let header_only = b"\x16\x03\x01\x00\x04\x01\x00\x80\x00";
    assert_eq!(parse(header_only, 9 + 32768 + 10), Err(Incomplete));
    assert_eq!(
        parse(header_only, 9 + 32768 + 9),
        Ok(Err(HelloError::TooLarge))
    );
    // Fragmented: known at the latest once the last record's header is in view.
    let message = message(&wire);
    let reframed = reframe(&message, &[100]);
    let last_payload = message.len() - 100 * (message.len().div_ceil(100) - 1);
    let until = &reframed[..reframed.len() - last_payload];
    assert_eq!(
        parse(until, reframed.len() - 1),
        Ok(Err(HelloError::TooLarge))
    );
    assert_eq!(parse(until, reframed.len()), Err(Incomplete));
}

#[test]
fn malformed_records_are_refused() {
    let wire = istio_hello();
    let message = message(&wire);
    assert_eq!(refused(b"\x16\x03\x01\x40\x01"), HelloError::Malformed); // 2^14 + 1
    assert_eq!(refused(b"\x16\x03\x01\x00\x00"), HelloError::Malformed); // zero length
    let first = reframe(&message[..100], &[100]);
    let rest = reframe(&message[100..], &[100]);
    for between in [
        record(0x15, b"\x02\x28"),
        record(CONTENT_TYPE_HANDSHAKE, b""),
        b"\x16\x04".to_vec(),
    ] {
        let spliced = [&first[..], &between, &rest].concat();
        assert_eq!(
            refused(&spliced),
            HelloError::Malformed,
            "{between:?} between records"
        );
    }
    // Bytes after the hello inside its own record.
    let trailing = record(CONTENT_TYPE_HANDSHAKE, &[&message[..], b"\x00"].concat());
    assert_eq!(refused(&trailing), HelloError::Malformed);
}

#[test]
fn malformed_hellos_are_refused() {
    let hello = Hello::from_wire(&istio_hello());
    let block = hello.block();
    let cases = [
        (
            "truncated extensions",
            hello.wire_with_block(Some(&block[..block.len() - 3])),
        ),
        (
            "bytes after the extensions",
            wire_from_body(&[hello.body_with_block(Some(&block)), vec![0]].concat()),
        ),
        (
            "two host names",
            edited(|h| *h.sni_mut() = sni_data(&[(0, b"a.local"), (0, b"b.local")])),
        ),
        (
            "no host_name entry",
            edited(|h| *h.sni_mut() = sni_data(&[(1, b"a.local")])),
        ),
        ("empty server_name", edited(|h| h.sni_mut().clear())),
        ("bytes after the name list", edited(|h| h.sni_mut().push(0))),
        (
            "duplicate SNI extension",
            edited(|h| h.extensions.push((0, sni_data(&[(0, b"b")])))),
        ),
        (
            "duplicate ALPN extension",
            edited(|h| h.extensions.push((16, b"\x00\x03\x02h2".to_vec()))),
        ),
        (
            "bytes after the ALPN list",
            edited(|h| h.extension_mut(16).push(0)),
        ),
        (
            "ALPN list longer than its extension",
            edited(|h| h.extension_mut(16)[1] += 1),
        ),
    ];
    for (what, wire) in cases {
        assert_eq!(refused(&wire), HelloError::Malformed, "{what}");
    }
    // The editing helper itself keeps a hello intact.
    assert_eq!(found(&hello.wire()).sni.as_str(), ISTIO_SNI);
}

#[test]
fn hello_without_server_name_is_no_sni() {
    // rustls sends no SNI for an IP address.
    let by_ip = rustls_hello(
        ServerName::IpAddress(std::net::Ipv4Addr::new(10, 0, 0, 1).into()),
        &[b"istio"],
    );
    assert_eq!(refused(&by_ip), HelloError::NoSni);
    assert_eq!(
        refused(&edited(|h| h.extensions.retain(|(k, _)| *k != 0))),
        HelloError::NoSni
    );
    let hello = Hello::from_wire(&istio_hello());
    assert_eq!(refused(&hello.wire_with_block(None)), HelloError::NoSni);
    assert_eq!(
        refused(&hello.wire_with_block(Some(b""))),
        HelloError::NoSni
    );
}

#[test]
fn bad_host_names_are_bad_sni() {
    let long_label = "a".repeat(64);
    let too_long = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62),
    ]
    .join(".");
    assert_eq!(too_long.len(), 254);
    for name in [
        "10.0.0.1",
        "10.1",
        "west.local.1",
        "::1",
        "[::1]",
        "fe80::1%eth0",
        too_long.as_str(),
        &format!("{long_label}.local"),
        "caf\u{e9}.local",
        "a..b",
        ".a",
        "a.b..",
        "",
        ".",
        "west local",
        "west.local/x",
        // A subset with the protocol prefix of Istio's internal cluster names.
        "outbound_.8080_.http/v1_.west.west.svc.cluster.local",
        "west\0.local",
    ] {
        assert_eq!(
            refused(&with_sni(name.as_bytes())),
            HelloError::BadSni,
            "{name:?}"
        );
        assert_eq!(HostName::new(name), None, "{name:?}");
    }
    assert_eq!(refused(&with_sni(b"caf\xe9.local")), HelloError::BadSni);
}

#[test]
fn good_host_names_are_lower_cased_without_the_trailing_dot() {
    let longest = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(longest.len(), MAX_HOST_LEN);
    for (name, expected) in [
        ("West.WEST.svc.Cluster.Local", "west.west.svc.cluster.local"),
        ("west.local.", "west.local"),
        ("outbound_.8080_._.West.svc", "outbound_.8080_._.west.svc"),
        ("localhost", "localhost"),
        ("1a.2b", "1a.2b"),
        (longest.as_str(), longest.as_str()),
        (&format!("{longest}."), longest.as_str()),
    ] {
        assert_eq!(
            found(&with_sni(name.as_bytes())).sni.as_str(),
            expected,
            "{name}"
        );
        let host = HostName::new(name).unwrap();
        assert_eq!(host.as_str(), expected);
        assert_eq!(host.to_string(), expected);
        assert_eq!(format!("{host:?}"), format!("{expected:?}"));
    }
    assert_eq!(HostName::new("A.b"), HostName::new("a.B."));
}

#[test]
fn alpn_bits() {
    let none = found(&rustls_hello(
        ServerName::try_from("a.local").unwrap(),
        &[b"h2", b"http/1.1"],
    ));
    assert_eq!(none.alpn, Alpn::default());
    assert!(!none.alpn.any_istio());
    let all: &[&[u8]] = &[
        b"istio",
        b"istio-peer-exchange",
        b"istio-http/1.0",
        b"istio-http/1.1",
        b"istio-h2",
    ];
    let alpn = found(&rustls_hello(ServerName::try_from("a.local").unwrap(), all)).alpn;
    for bit in [
        Alpn::ISTIO,
        Alpn::ISTIO_PEER_EXCHANGE,
        Alpn::ISTIO_HTTP10,
        Alpn::ISTIO_HTTP11,
        Alpn::ISTIO_H2,
    ] {
        assert!(alpn.contains(bit), "{bit:?}");
        assert!(bit.any_istio());
        assert!(!Alpn::default().contains(bit));
    }
}

#[test]
fn results_stay_small() {
    // Returned by value on every completed peek; no heap inside.
    assert!(
        size_of::<ClientHello>() <= 272,
        "{}",
        size_of::<ClientHello>()
    );
}

/// xorshift64: reproducible, dependency-free randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
}

#[test]
fn mutated_real_hellos_never_panic() {
    const ITERATIONS_PER_HELLO: usize = 3000;
    let mut rng = Rng(0x5eed_1e55_cafe_f00d);
    let mut outcomes = [0usize; 3];
    for (_, wire) in real_hellos() {
        let framings = [wire.clone(), reframe(&message(&wire), &[7, 300])];
        for _ in 0..ITERATIONS_PER_HELLO {
            let mut bytes = framings[rng.below(2)].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                match rng.below(5) {
                    0 => bytes[at] ^= 1 << rng.below(8),
                    1 => bytes[at] = rng.next() as u8,
                    2 => bytes.truncate(at),
                    3 => bytes.insert(at, rng.next() as u8),
                    _ => {
                        let tail = bytes.split_off(at);
                        bytes.extend_from_slice(&tail[..rng.below(64).min(tail.len())]);
                        bytes.extend(tail);
                    }
                }
                if bytes.is_empty() {
                    bytes.push(CONTENT_TYPE_HANDSHAKE);
                }
            }
            let max_len = if rng.below(4) == 0 {
                rng.below(2 * bytes.len())
            } else {
                MAX
            };
            match parse(&bytes, max_len) {
                Ok(Ok(hello)) => {
                    assert!(hello.wire_len <= bytes.len() && hello.wire_len <= max_len);
                    outcomes[0] += 1;
                }
                Ok(Err(_)) => outcomes[1] += 1,
                Err(Incomplete) => outcomes[2] += 1,
            }
        }
    }
    // The mutations reach every outcome, so they exercise more than the first byte.
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}

#[test]
fn next_boundary_is_the_end_of_the_record_in_flight() {
    let wire = reframe(&message(&istio_hello()), &[100]);
    assert_eq!(next_boundary(&[]), 5);
    assert_eq!(next_boundary(&wire[..3]), 5);
    assert_eq!(next_boundary(&wire[..5]), 105);
    assert_eq!(next_boundary(&wire[..104]), 105);
    assert_eq!(next_boundary(&wire[..105]), 110);
    assert_eq!(next_boundary(&wire[..107]), 110);
    assert_eq!(next_boundary(&wire[..110]), 210);
}
