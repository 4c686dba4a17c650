//! Shared by the integration tests: starts the real `eastwest` binary with JSON logs, learns its
//! addresses from its own log lines (so tests bind port 0 and never guess), awaits log events
//! (access-log lines, reloads) instead of sleeping, and reads the admin endpoints.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for an event before it fails (a bound, not a synchronisation).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `eastwest run`.
pub struct Gateway {
    pub child: Child,
    /// The TLS listener(s), in config order.
    pub listen: Vec<SocketAddr>,
    pub admin: SocketAddr,
    logs: Receiver<Value>,
    /// Every log line seen so far (for assertions and for failure messages).
    pub seen: Vec<Value>,
}

/// The path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_eastwest")
}

impl Gateway {
    /// Starts `eastwest run` with `args` plus loopback listen/admin on port 0, one worker and
    /// JSON logs (each may be overridden by passing it in `args`), and waits until it listens.
    pub fn start(args: &[&str]) -> Gateway {
        let mut cmd = Command::new(bin());
        cmd.arg("run");
        let has = |flag: &str| args.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if !has("--listen") && !has("--config") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !has("--admin") {
            cmd.args(["--admin", "127.0.0.1:0"]);
        }
        if !has("--workers") {
            cmd.args(["--workers", "1"]);
        }
        cmd.args(["--log-format", "json"]).args(args);
        Self::spawn(cmd)
    }

    /// Starts a prepared command (must log JSON) and waits for its listeners and admin address.
    pub fn spawn(mut cmd: Command) -> Gateway {
        cmd.env("RUST_LOG", "info,eastwest::access=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn eastwest");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut gw = Gateway {
            child,
            listen: Vec::new(),
            admin: "0.0.0.0:0".parse().unwrap(),
            logs,
            seen: Vec::new(),
        };
        gw.wait_log(|v| {
            if v["message"] == "listening" {
                return false;
            }
            v["message"] == "admin listening"
        });
        gw.listen = gw
            .seen
            .iter()
            .filter(|v| v["message"] == "listening")
            .map(|v| v["addr"].as_str().unwrap().parse().unwrap())
            .collect();
        let admin = gw.seen.iter().find(|v| v["message"] == "admin listening").unwrap();
        gw.admin = admin["addr"].as_str().unwrap().parse().unwrap();
        gw
    }

    /// The first listener.
    pub fn addr(&self) -> SocketAddr {
        self.listen[0]
    }

    /// Waits for a log line matching `pred` (lines already seen are not matched again).
    pub fn wait_log(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no matching log line within {EVENT_TIMEOUT:?}; seen:\n{}",
                    self.dump()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("eastwest exited; its log:\n{}", self.dump())
                }
            }
        }
    }

    /// Waits for the next access-log line (one per connection, at close).
    pub fn wait_access(&mut self) -> Value {
        self.wait_log(|v| v["target"] == "eastwest::access")
    }

    /// Waits for the access-log line of a connection that ended with `reason`.
    pub fn wait_reason(&mut self, reason: &str) -> Value {
        self.wait_log(|v| v["target"] == "eastwest::access" && v["reason"] == reason)
    }

    /// Log lines seen so far, one per line.
    pub fn dump(&self) -> String {
        self.seen.iter().map(|v| format!("{v}\n")).collect()
    }

    /// `GET path` on the admin server: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }

    /// The value of one Prometheus series, e.g.
    /// `eastwest_connections_refused_total{listener="tls",reason="no_sni"}`; 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.admin_get("/stats/prometheus");
        body.lines()
            .find_map(|l| {
                let rest = l.strip_prefix(series)?;
                rest.strip_prefix(' ')?.trim().parse().ok()
            })
            .unwrap_or(0.0)
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit (bounded by EVENT_TIMEOUT).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            // Drain logs while waiting so the child never blocks on a full stderr pipe.
            match self.logs.recv_timeout(Duration::from_millis(50)) {
                Ok(v) => self.seen.push(v),
                Err(_) if Instant::now() > deadline => panic!("eastwest did not exit:\n{}", self.dump()),
                Err(_) => {}
            }
        }
    }

    /// CPU time (user + system) the process has used so far, from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET (the admin server is ours; no client library needed for two lines).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A real ClientHello from rustls for `sni` (with the Istio ALPN), as the bytes it would write.
pub fn rustls_client_hello(sni: &str) -> Vec<u8> {
    use rustls::pki_types::ServerName;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"istio".to_vec()];
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers for tests/mtls.rs, tests/transfer.rs and tests/idle_cpu.rs: a raw TCP backend, a
// pseudo-random byte stream with running SHA-256 checksums, and TLS record re-framing.
// ---------------------------------------------------------------------------------------------

/// The Istio SNI of `west.west.svc.cluster.local:8080` and the cluster key it routes to.
pub const WEST_SNI: &str = "outbound_.8080_._.west.west.svc.cluster.local";
pub const WEST_SERVICE: &str = "outbound|8080||west.west.svc.cluster.local";

/// A plain TCP backend on loopback: no TLS, so it sees the client's TLS bytes exactly as the
/// gateway forwarded them.
pub struct RawBackend {
    listener: std::net::TcpListener,
    pub addr: SocketAddr,
}

impl RawBackend {
    pub fn bind() -> RawBackend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        RawBackend { listener, addr }
    }

    /// The `--endpoints` value that routes `west.west.svc.cluster.local:8080` here.
    pub fn west_route(&self) -> String {
        format!("west.west.svc.cluster.local:8080={}", self.addr)
    }

    /// The next connection the gateway opens here, failing after [`EVENT_TIMEOUT`] instead of
    /// hanging. Reads on it also fail after [`EVENT_TIMEOUT`] without progress.
    pub fn accept(&self) -> TcpStream {
        let listener = self.listener.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(listener.accept());
        });
        let (stream, _) = rx
            .recv_timeout(EVENT_TIMEOUT)
            .expect("the gateway did not connect to the backend in time")
            .unwrap();
        stream.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
        stream
    }
}

/// Connects to the gateway with a read timeout of [`EVENT_TIMEOUT`] (a failure bound).
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    s
}

/// Writes `bytes` one byte per `write` with Nagle off, so each byte leaves in its own segment.
pub fn write_bytewise(s: &mut TcpStream, bytes: &[u8]) {
    s.set_nodelay(true).unwrap();
    for b in bytes {
        s.write_all(std::slice::from_ref(b)).unwrap();
    }
}

/// xorshift64: a cheap, reproducible pseudo-random byte stream for bulk transfers.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed | 1) // the all-zero state is a fixed point
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Bulk writes and reads go in chunks of this size: big enough for few syscalls, small enough
/// that hundreds of MiB never sit in memory.
pub const TRANSFER_CHUNK: usize = 256 * 1024;

/// Writes `prefix`, then `len` pseudo-random bytes from `seed` generated chunk by chunk; returns
/// the SHA-256 of everything written.
pub fn write_random(
    w: &mut impl Write,
    prefix: &[u8],
    seed: u64,
    len: u64,
) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    let mut sha = sha2::Sha256::new();
    w.write_all(prefix)?;
    sha.update(prefix);
    let mut rng = Xorshift::new(seed);
    let mut buf = vec![0u8; TRANSFER_CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(TRANSFER_CHUNK as u64) as usize;
        rng.fill(&mut buf[..n]);
        w.write_all(&buf[..n])?;
        sha.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(sha.finalize().into())
}

/// Reads to EOF; returns how many bytes came and their SHA-256.
pub fn read_hashed(r: &mut impl Read) -> std::io::Result<(u64, [u8; 32])> {
    use sha2::Digest;
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; TRANSFER_CHUNK];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((total, sha.finalize().into()));
        }
        sha.update(&buf[..n]);
        total += n as u64;
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Re-frames the TLS handshake records at the start of `wire` (e.g. a one-record ClientHello)
/// into `records` handshake records of near-equal size with correct headers: the same
/// handshake bytes to any TLS stack, a different framing on the wire. Panics on anything but
/// complete handshake records.
pub fn reframe(wire: &[u8], records: usize) -> Vec<u8> {
    const HEADER: usize = 5;
    let version = [wire[1], wire[2]];
    let mut body = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        assert_eq!(rest[0], 0x16, "not a handshake record");
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        body.extend_from_slice(&rest[HEADER..HEADER + len]);
        rest = &rest[HEADER + len..];
    }
    assert!(records >= 1 && records <= body.len(), "{records} records");
    let mut out = Vec::with_capacity(body.len() + records * HEADER);
    for i in 0..records {
        let chunk = &body[i * body.len() / records..(i + 1) * body.len() / records];
        out.push(0x16);
        out.extend_from_slice(&version);
        out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}
