//! A first bulk-throughput probe: one connection through a running `eastwest` binary, client →
//! gateway → sink, reporting throughput and the gateway's CPU seconds per GiB for each forward
//! mode. The full harness against haproxy, nginx and sniproxy is issue 6.
//!
//! `cargo build --release && cargo run --release -p eastwest-bench --bin bulk -- [GIB]`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A ClientHello prefix is all the gateway needs to route; the rest is opaque bytes to it.
const HELLO: &[u8] = include_bytes!("../../../proxy/tests/data/openssl_client_hello.bin");
const CHUNK: usize = 256 * 1024;

fn main() {
    let gib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4);
    let bin = std::env::var("EASTWEST_BIN").unwrap_or_else(|_| "target/release/eastwest".into());
    println!("bulk: {gib} GiB, one connection, eastwest at {bin}");
    for mode in ["auto", "copy"] {
        let (secs, cpu) = run(&bin, mode, gib << 30);
        println!(
            "  forward={mode:<5} {:>6.2} GiB/s   gateway CPU {:>5.3} s/GiB",
            gib as f64 / secs,
            cpu / gib as f64
        );
    }
}

/// The gateway under test, killed and reaped when dropped: also when an `expect` or `assert`
/// unwinds out of [`run`], which would otherwise leave an `eastwest run` behind on the machine.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(bin: &str, mode: &str, bytes: u64) -> (f64, f64) {
    let sink = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    // The captured hello names `west.west.svc.cluster.local`: a plain DNS name, routed to port 443.
    let route = format!(
        "west.west.svc.cluster.local:443={}",
        sink.local_addr().expect("addr")
    );
    let child = Command::new(bin)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--workers",
            "1",
        ])
        .args([
            "--log-format",
            "json",
            "--forward",
            mode,
            "--hosts",
            "*",
            "--endpoints",
            &route,
        ])
        .env(
            "RUST_LOG",
            std::env::var("BULK_LOG").unwrap_or_else(|_| "info,eastwest::access=off".into()),
        )
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eastwest");
    let mut gateway = Gateway(child);
    // Keep reading the gateway's log after its address is known, so it never blocks or breaks
    // on a full or closed pipe; print it when BULK_LOG asks for it.
    let stderr = BufReader::new(gateway.0.stderr.take().expect("stderr"));
    let (tx, rx) = std::sync::mpsc::channel();
    let echo = std::env::var("BULK_LOG").is_ok();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if echo {
                eprintln!("{line}");
            }
            if line.contains("\"listening\"") {
                let v = line
                    .split("\"addr\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next());
                let _ = tx.send(v.and_then(|a| a.parse::<SocketAddr>().ok()));
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
    let addr = addr.expect("gateway address");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = sink.accept().expect("accept");
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return n,
                Ok(k) => n += k as u64,
            }
        }
    });
    let cpu0 = cpu_seconds(gateway.0.id());
    let t0 = Instant::now();
    let mut c = TcpStream::connect(addr).expect("connect");
    c.write_all(HELLO).expect("hello");
    let buf = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let k = left.min(CHUNK as u64) as usize;
        c.write_all(&buf[..k]).expect("write");
        left -= k as u64;
    }
    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let got = reader.join().expect("sink");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(gateway.0.id()) - cpu0;
    assert_eq!(got, bytes + HELLO.len() as u64, "bytes lost");
    drop(gateway);
    std::thread::sleep(Duration::from_millis(50));
    (secs, cpu)
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic while the gateway runs (a failed `expect` or `assert`) still kills and reaps it.
    #[test]
    fn a_panic_leaves_no_child_behind() {
        let child = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let unwound = std::panic::catch_unwind(move || {
            let _gateway = Gateway(child);
            panic!("a failed assertion");
        });
        assert!(unwound.is_err());
        // Reaped, not just killed: a zombie would still have its /proc entry.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "child {pid} outlived the panic"
        );
    }
}
