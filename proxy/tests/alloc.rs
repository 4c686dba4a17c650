//! Heap allocations per connection on the data path, counted by a global allocator.
//!
//! After warm-up a connection costs exactly what tokio needs for it, four allocations (seen
//! with a backtrace per allocation, tokio 1.54):
//!
//! - the spawned task (its cell holds the connection future, about 1.6 KiB);
//! - one readiness registration (`ScheduledIo`, 256 B) per socket, client and upstream;
//! - the I/O driver's list of registrations to release: `RegistrationSet::release` takes the
//!   `Vec` with `mem::take`, so the next deregistration allocates a new one. That is one per
//!   driver turn, shared by every socket closed in it; this test closes one connection at a
//!   time, the worst case.
//!
//! The ClientHello parse, the SNI, the route lookup, the counters, the forwarding buffer and
//! the pipes allocate nothing. This fails if a change adds an allocation per connection (a
//! `String` for the SNI, a `Vec` per direction, a metric label resolved per connection…).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use eastwest_proxy::config::{ListenerConfig, ProxyConfig};
use eastwest_proxy::hosts::HostPatterns;
use eastwest_proxy::metrics::Metrics;
use eastwest_proxy::routes::{RouteTableBuilder, Routes};
use eastwest_proxy::server::Gateway;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a side
// effect that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HOST: &str = "echo.bench.svc.cluster.local";
const MSG: usize = 64;

/// A real rustls ClientHello for the Istio name of `HOST:8080`, made before counting starts.
fn client_hello() -> Vec<u8> {
    use rustls::pki_types::ServerName;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(format!("outbound_.8080_._.{HOST}")).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// A backend on 127.0.0.2 that reads `expect` bytes, echoes the last 64 and closes; plain std
/// sockets on their own thread, so it allocates nothing per connection either.
fn backend(expect: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut got = 0;
            while got < expect {
                match conn.read(&mut buf[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            if got == expect {
                let _ = conn.write_all(&buf[expect - MSG..expect]);
            }
        }
    });
    addr
}

/// One connection through the gateway: hello + 64 B out, the 64 B echoed back, closed.
fn exchange(gateway: SocketAddr, first: &[u8]) {
    let mut s = TcpStream::connect(gateway).unwrap();
    s.write_all(first).unwrap();
    let mut echo = [0u8; MSG];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(echo, [0x42; MSG], "the echo came back wrong");
}

#[test]
fn a_connection_allocates_only_what_tokio_needs_for_its_task_and_sockets() {
    let mut first = client_hello();
    first.extend_from_slice(&[0x42; MSG]);
    let upstream = backend(first.len());

    let routes = Routes::new();
    let mut b = RouteTableBuilder::new();
    b.add(HOST, 8080, "", [upstream]);
    routes.publish(b.build(None));
    let listener = ListenerConfig {
        name: "tls".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        hosts: HostPatterns::default_local(),
        target_port: 8080,
        forward_to: None,
        aliases: None,
    };
    let config = ProxyConfig::new(vec![listener]);
    let metrics = Metrics::new();
    let gw = Gateway::start(config, vec![routes], &metrics).unwrap();
    let at = gw.local_addrs()[0];

    // Warm-up: the worker's peek and scratch buffers, the pipe pool, tokio's slabs.
    for _ in 0..300 {
        exchange(at, &first);
    }
    let n = 1000u64;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        exchange(at, &first);
    }
    let per_conn = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64;
    eprintln!("{per_conn:.3} allocations per connection");
    // Task, two registrations, the release list; slack for tokio growing a structure once.
    assert!(
        per_conn <= 4.05,
        "a connection makes {per_conn:.3} heap allocations (expected 4: task, 2 registrations, \
         release list)"
    );
    drop(gw);
}
