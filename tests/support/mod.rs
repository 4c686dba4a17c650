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
        let has = |flag: &str| {
            args.iter()
                .any(|a| *a == flag || a.starts_with(&format!("{flag}=")))
        };
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
    /// A `RUST_LOG` the command already sets is kept; the default logs every connection.
    pub fn spawn(mut cmd: Command) -> Gateway {
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info,eastwest::access=info");
        }
        cmd.stdin(Stdio::null())
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
        let admin = gw
            .seen
            .iter()
            .find(|v| v["message"] == "admin listening")
            .unwrap();
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
                Err(_) if Instant::now() > deadline => {
                    panic!("eastwest did not exit:\n{}", self.dump())
                }
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
    http_request(addr, "GET", path)
}

/// One request with `method` and an empty body: the status code and the body.
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A real ClientHello from rustls for `sni` (with the Istio ALPN), as the bytes it would write.
pub fn rustls_client_hello(sni: &str) -> Vec<u8> {
    rustls_client_hello_with_alpn(sni, vec![b"istio".to_vec()])
}

/// A real rustls ClientHello for `sni` offering the ALPN protocols `alpn` (all its records).
pub fn rustls_client_hello_with_alpn(sni: &str, alpn: Vec<Vec<u8>>) -> Vec<u8> {
    use rustls::pki_types::ServerName;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
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

// ---------------------------------------------------------------------------------------------
// Helpers for tests/refusals.rs, tests/failover.rs, tests/drain.rs and tests/cli.rs: an upstream
// whose accept queue can be checked (to prove no byte reached it), an address that refuses
// connections, bounded polling of admin state, and the "a good connection still routes" and
// "this connection was refused" checks.
// ---------------------------------------------------------------------------------------------

/// A raw TCP upstream on loopback. Unlike [`RawBackend`] it never accepts behind the test's
/// back, so an empty accept queue proves that the gateway made no connection to it: the
/// gateway connects before it writes a connection's access line, so once a refusal's line is
/// in, a connection that had been made would already be queued here.
pub struct Upstream {
    listener: std::net::TcpListener,
}

impl Upstream {
    pub fn bind() -> Upstream {
        Upstream::bind_at("127.0.0.1:0".parse().unwrap())
    }

    /// Listens on `addr`, e.g. again on the port of a [`RefusingAddr`] just dropped.
    pub fn bind_at(addr: SocketAddr) -> Upstream {
        let listener =
            std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        Upstream { listener }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// The next connection, waiting at most [`EVENT_TIMEOUT`]; reads on it are bounded too.
    pub fn accept(&self) -> TcpStream {
        Upstream::accept_any(&[self]).1
    }

    /// The next connection to any of `upstreams` (waiting at most [`EVENT_TIMEOUT`]) and the
    /// index of the one it reached.
    pub fn accept_any(upstreams: &[&Upstream]) -> (usize, TcpStream) {
        use std::os::fd::AsRawFd;
        let mut fds: Vec<libc::pollfd> = upstreams
            .iter()
            .map(|u| libc::pollfd {
                fd: u.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // SAFETY: `fds` is a live array of `fds.len()` pollfds for the whole call.
            let n = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    left.as_millis() as i32,
                )
            };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
            let addrs: Vec<_> = upstreams.iter().map(|u| u.addr()).collect();
            assert!(
                n > 0,
                "no connection reached {addrs:?} within {EVENT_TIMEOUT:?}"
            );
            let i = fds.iter().position(|p| p.revents != 0).unwrap();
            let (stream, _) = upstreams[i].listener.accept().unwrap();
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
            return (i, stream);
        }
    }

    /// Panics if a connection is waiting to be accepted.
    pub fn assert_no_connection(&self, context: &str) {
        match self.listener.accept() {
            Ok((_, from)) => panic!(
                "{context}: upstream {} got a connection from {from}",
                self.addr()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept on {}: {e}", self.addr()),
        }
    }
}

/// A loopback address that refuses connections: a socket bound to a port but not listening.
/// Holding the port (rather than binding a listener and dropping it) keeps it from being taken
/// meanwhile by another test's listener, or by an outgoing connect as its source port, which on
/// loopback can then connect to itself. Drop it to free the port.
pub struct RefusingAddr {
    _socket: std::os::fd::OwnedFd,
    pub addr: SocketAddr,
}

impl RefusingAddr {
    pub fn new() -> RefusingAddr {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: plain socket(2); the returned descriptor is checked and then owned by `OwnedFd`.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `sin` is a valid sockaddr_in and `len` its size, for bind and getsockname.
        let rc = unsafe { libc::bind(socket.as_raw_fd(), (&raw const sin).cast(), len) };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        // SAFETY: as above; getsockname writes at most `len` bytes into `sin`.
        let rc = unsafe { libc::getsockname(socket.as_raw_fd(), (&raw mut sin).cast(), &mut len) };
        assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
        let addr = SocketAddr::from(([127, 0, 0, 1], u16::from_be(sin.sin_port)));
        RefusingAddr {
            _socket: socket,
            addr,
        }
    }
}

/// Checks `cond` every 20 ms until it holds, failing after [`EVENT_TIMEOUT`]. Only for state
/// that no log line marks (admin endpoints, gauges); the pause is a polling interval.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(EVENT_TIMEOUT, what, cond);
}

/// [`wait_until`] with another limit, for what a documented longer delay governs (a backoff).
pub fn wait_until_within(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not true within {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `bytes`; a refusal may already have closed the connection, so a reset or a broken pipe
/// is not an error here (the caller asserts on how the connection ended).
pub fn send_tolerating_close(stream: &mut TcpStream, bytes: &[u8]) {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
    match stream.write_all(bytes) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), BrokenPipe | ConnectionReset) => {}
        Err(e) => panic!("write: {e}"),
    }
}

/// Reads until the peer closes (EOF or reset) and returns what arrived; fails if the connection
/// is still open after [`EVENT_TIMEOUT`] (the stream must have that read timeout, as
/// [`connect`] and [`Upstream::accept`] set).
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("connection not closed (read: {e}); got {} bytes", got.len()),
        }
    }
}

/// A good connection through `gw`: a real ClientHello for `sni` reaches one of `upstreams` byte
/// for byte, a byte comes back, both sides close, and the access line says `closed` with that
/// upstream as `dst.addr`. Returns the index of the upstream reached.
pub fn forwards_to_one_of(gw: &mut Gateway, upstreams: &[&Upstream], sni: &str) -> usize {
    let hello = rustls_client_hello(sni);
    let mut client = connect(gw.addr());
    client.write_all(&hello).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let (i, mut up) = Upstream::accept_any(upstreams);
    assert_eq!(
        read_until_closed(&mut up),
        hello,
        "the upstream must get the hello untouched"
    );
    up.write_all(b"!").unwrap();
    drop(up);
    assert_eq!(
        read_until_closed(&mut client),
        b"!",
        "the upstream's byte must come back"
    );
    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["sni"], sni, "{line}");
    assert_eq!(line["dst.addr"], upstreams[i].addr().to_string(), "{line}");
    i
}

/// [`forwards_to_one_of`] with one upstream.
pub fn assert_forwards(gw: &mut Gateway, upstream: &Upstream, sni: &str) {
    forwards_to_one_of(gw, &[upstream], sni);
}

/// Opens a connection, lets `send` write on it, and asserts the gateway refused it with
/// `reason`: closed with nothing sent back, and an access line with that reason, no upstream
/// and no bytes forwarded. Returns the access line.
pub fn assert_refused(gw: &mut Gateway, reason: &str, send: impl FnOnce(&mut TcpStream)) -> Value {
    let mut client = connect(gw.addr());
    send(&mut client);
    let back = read_until_closed(&mut client);
    assert!(
        back.is_empty(),
        "{reason}: the client got {} bytes back",
        back.len()
    );
    let line = gw.wait_access();
    assert_eq!(line["reason"], reason, "{line}");
    assert!(
        line["dst.addr"].is_null(),
        "a refusal has no upstream: {line}"
    );
    assert_eq!(line["bytes_sent"], 0, "{line}");
    assert_eq!(line["bytes_received"], 0, "{line}");
    line
}
