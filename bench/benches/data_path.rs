//! Micro-benchmarks of the per-connection work on the data path.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use eastwest_proxy::config::Balance;
use eastwest_proxy::hosts::HostPatterns;
use eastwest_proxy::routes::RouteTableBuilder;
use eastwest_proxy::{balance, name, sni};

/// Captured ClientHellos (see proxy/tests/data/README.md).
const OPENSSL_HELLO: &[u8] = include_bytes!("../../proxy/tests/data/openssl_client_hello.bin");
const PQ_HELLO: &[u8] = include_bytes!("../../proxy/tests/data/pq_client_hello.bin");
const MAX: usize = 64 * 1024;

/// Splits one hello's handshake message across records of `chunk` bytes.
fn reframe(hello: &[u8], chunk: usize) -> Vec<u8> {
    let len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
    let body = &hello[5..5 + len];
    let mut out = Vec::new();
    for part in body.chunks(chunk) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn parse(c: &mut Criterion) {
    let multi = reframe(PQ_HELLO, 512);
    let mut g = c.benchmark_group("client_hello_parse");
    for (label, bytes) in [
        ("openssl", OPENSSL_HELLO),
        ("post_quantum", PQ_HELLO),
        ("post_quantum_4_records", &multi[..]),
    ] {
        assert!(
            matches!(sni::parse(bytes, MAX), Ok(Ok(_))),
            "{label} must parse"
        );
        g.bench_with_input(BenchmarkId::from_parameter(label), bytes, |b, bytes| {
            b.iter(|| sni::parse(black_box(bytes), MAX))
        });
    }
    g.finish();
}

fn naming(c: &mut Criterion) {
    let hosts = HostPatterns::parse(&["*.local", "api.example.com"]).expect("patterns");
    c.bench_function("istio_name_resolve", |b| {
        b.iter(|| {
            name::resolve(
                black_box("outbound_.8080_.v1_.west.west.svc.cluster.local"),
                443,
            )
        })
    });
    c.bench_function("host_pattern_match", |b| {
        b.iter(|| hosts.matches(black_box("west.west.svc.cluster.local")))
    });
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080))
}

fn routes(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup_and_pick");
    for n in [10usize, 10_000, 100_000] {
        let mut b = RouteTableBuilder::new();
        for i in 0..n {
            b.add(
                &format!("svc-{i}.ns.svc.cluster.local"),
                8080,
                "",
                (0..3).map(|k| addr(i * 3 + k)),
            );
        }
        let table = b.build(None);
        let host = format!("svc-{}.ns.svc.cluster.local", n / 2);
        g.bench_with_input(BenchmarkId::from_parameter(n), &host, |b, host| {
            b.iter(|| {
                let r = table.lookup(black_box(host), 8080, "").expect("route");
                balance::pick(r, Balance::RoundRobin, 0, 1)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("snapshot_build");
    g.sample_size(10);
    g.bench_function("10000_services_x_10_endpoints", |bench| {
        bench.iter(|| {
            let mut b = RouteTableBuilder::new();
            for i in 0..10_000 {
                b.add(
                    &format!("svc-{i}.ns.svc.cluster.local"),
                    8080,
                    "",
                    (0..10).map(|k| addr(i * 10 + k)),
                );
            }
            b.build(None)
        })
    });
    g.finish();
}

criterion_group!(benches, parse, naming, routes);
criterion_main!(benches);
