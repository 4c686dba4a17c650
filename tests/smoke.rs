//! The quickest end-to-end check: the binary starts, routes a real rustls ClientHello to a
//! backend byte for byte, and reports ready.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use support::{Gateway, rustls_client_hello};

#[test]
fn forwards_a_client_hello_untouched_and_is_ready() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let route = format!(
        "west.west.svc.cluster.local:8080={}",
        backend.local_addr().unwrap()
    );
    let mut gw = Gateway::start(&["--endpoints", &route]);
    assert_eq!(gw.admin_get("/healthz/ready"), (200, "ready\n".to_string()));

    let hello = rustls_client_hello("outbound_.8080_._.west.west.svc.cluster.local");
    let mut client = TcpStream::connect(gw.addr()).unwrap();
    client.write_all(&hello).unwrap();
    client.write_all(b"after the hello").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();

    let (mut up, _) = backend.accept().unwrap();
    let mut got = Vec::new();
    up.read_to_end(&mut got).unwrap();
    let mut want = hello.clone();
    want.extend_from_slice(b"after the hello");
    assert_eq!(
        got, want,
        "the upstream must see exactly the client's bytes"
    );
    up.write_all(b"reply").unwrap();
    drop(up);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"reply");

    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed");
    assert_eq!(line["sni"], "outbound_.8080_._.west.west.svc.cluster.local");
    assert_eq!(
        line["dst.service"],
        "outbound|8080||west.west.svc.cluster.local"
    );
    assert_eq!(line["bytes_sent"], want.len() as u64);
    assert_eq!(line["bytes_received"], 5);
    assert_eq!(
        gw.metric("eastwest_connections_closed_total{listener=\"tls\",reason=\"closed\"}"),
        1.0
    );
}

/// A gateway whose stderr cannot be written (a broken log pipe, a full disk) keeps serving:
/// log writes fail quietly instead of panicking the process.
#[test]
fn keeps_serving_when_its_log_cannot_be_written() {
    use std::process::{Command, Stdio};
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    // No log to learn addresses from, so pick free ports (bind, note, release).
    let free = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (listen, admin) = (free(), free());
    let route = format!(
        "west.west.svc.cluster.local:8080={}",
        backend.local_addr().unwrap()
    );
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut child = Command::new(support::bin())
        .args(["run", "--workers", "1", "--endpoints", &route])
        .args([
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(full)
        .spawn()
        .unwrap();
    // Ready means it got past every start-up log line.
    let deadline = std::time::Instant::now() + support::EVENT_TIMEOUT;
    while std::net::TcpStream::connect(admin).is_err()
        || support::http_get(admin, "/healthz/ready").0 != 200
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the gateway died writing its log"
        );
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::yield_now();
    }
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .write_all(&rustls_client_hello(
            "outbound_.8080_._.west.west.svc.cluster.local",
        ))
        .unwrap();
    let (mut up, _) = backend.accept().unwrap();
    up.write_all(b"still here").unwrap();
    drop(up);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"still here");
    // The access-log write for that connection failed too; the process is still serving.
    assert_eq!(support::http_get(admin, "/healthz/ready").0, 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// SO_REUSEPORT lets the workers share the port, but a second gateway on the same address must
/// not start and silently take half the connections.
#[test]
fn a_second_gateway_on_the_same_port_refuses_to_start() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let route = format!(
        "west.west.svc.cluster.local:8080={}",
        backend.local_addr().unwrap()
    );
    let first = Gateway::start(&["--endpoints", &route]);
    let out = std::process::Command::new(support::bin())
        .args(["run", "--admin", "127.0.0.1:0", "--endpoints", &route])
        .args(["--listen", &first.addr().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second gateway started on {}",
        first.addr()
    );
    assert!(
        err.contains(&first.addr().to_string()) && err.contains("already listening"),
        "{err}"
    );
}
