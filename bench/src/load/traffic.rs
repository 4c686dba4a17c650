//! The load generator and the backends, on one current-thread tokio runtime on the other core.
//! Every client starts with a real rustls ClientHello for its route (a proxy must parse it
//! to route), then speaks the backend's plain protocol: the proxies never look past the hello.
//!
//! Backends read the hello's TLS record, then: `echo` writes back whatever it reads; `sink`
//! reads the length the client announces (8 bytes, little-endian), then that many bytes, and
//! answers with the count it read, so a bulk run ends only when every byte went through. The
//! length is announced rather than ended by a half-close because sniproxy, and nginx without
//! `proxy_half_close`, close both directions at the client's FIN.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const CHUNK: usize = 256 * 1024;
/// Request and response size of the connection-rate and round-trip workloads.
pub const MSG: usize = 64;

/// A real rustls ClientHello for `sni`, offering Istio's ALPN as a sidecar does.
pub fn client_hello(sni: &str) -> Vec<u8> {
    use rustls::pki_types::ServerName;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(builder) =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
    else {
        return Vec::new();
    };
    let mut config = builder
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"istio".to_vec()];
    let (Ok(name), mut out) = (ServerName::try_from(sni.to_string()), Vec::new()) else {
        return Vec::new();
    };
    if let Ok(mut conn) = rustls::ClientConnection::new(Arc::new(config), name) {
        while conn.wants_write() {
            if conn.write_tls(&mut out).is_err() {
                break;
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Echo,
    Sink,
}

/// A backend listening on its own loopback address; `accepted` counts its connections, so a
/// check can tell which backend a name reached.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
}

impl Backend {
    pub async fn start(ip: [u8; 4], role: Role) -> io::Result<Backend> {
        let l = TcpListener::bind(SocketAddr::from((ip, 0))).await?;
        let addr = l.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::Relaxed);
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = serve(s, role).await;
                });
            }
        });
        Ok(Backend { addr, accepted })
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Reads one TLS record (the ClientHello) off `s`.
async fn read_hello(s: &mut TcpStream) -> io::Result<()> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await?;
    let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(())
}

async fn serve(mut s: TcpStream, role: Role) -> io::Result<()> {
    read_hello(&mut s).await?;
    if role == Role::Echo {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n]).await?;
        }
    }
    let mut len = [0u8; 8];
    s.read_exact(&mut len).await?;
    let want = u64::from_le_bytes(len);
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    while total < want {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    s.write_all(&total.to_le_bytes()).await
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn bad(what: String) -> io::Error {
    io::Error::other(what)
}

/// Bulk: `conns` connections each send `bytes` to a sink; returns the wall time until the
/// last sink confirmed its count.
pub async fn bulk(
    addr: SocketAddr,
    hello: &[u8],
    conns: usize,
    bytes: u64,
) -> io::Result<Duration> {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let hello = hello.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await?;
            s.write_all(&hello).await?;
            s.write_all(&bytes.to_le_bytes()).await?;
            let buf = vec![0x5au8; CHUNK];
            let mut left = bytes;
            while left > 0 {
                let k = left.min(CHUNK as u64) as usize;
                s.write_all(&buf[..k]).await?;
                left -= k as u64;
            }
            let mut count = [0u8; 8];
            s.read_exact(&mut count).await?;
            let got = u64::from_le_bytes(count);
            if got != bytes {
                return Err(bad(format!("sink counted {got} bytes of {bytes}")));
            }
            Ok::<_, io::Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| bad(e.to_string()))??;
    }
    Ok(t0.elapsed())
}

/// One short connection: hello + 64 B, the 64 B echoed back, close.
async fn one_exchange(addr: SocketAddr, first: &[u8]) -> io::Result<()> {
    let mut s = connect(addr).await?;
    s.write_all(first).await?;
    let mut back = [0u8; MSG];
    s.read_exact(&mut back).await?;
    if back[..] != first[first.len() - MSG..] {
        return Err(bad("echo differs".into()));
    }
    Ok(())
}

/// New connections: `concurrency` clients open, exchange and close connections until `count`
/// are done or `limit` passes; returns (connections, wall time).
pub async fn connection_rate(
    addr: SocketAddr,
    hello: &[u8],
    concurrency: usize,
    count: u64,
    limit: Duration,
) -> io::Result<(u64, Duration)> {
    let mut first = hello.to_vec();
    first.extend_from_slice(&[0x42; MSG]);
    let first: Arc<[u8]> = first.into();
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (first, done) = (first.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while done.fetch_add(1, Ordering::Relaxed) < count && t0.elapsed() < limit {
                one_exchange(addr, &first).await?;
            }
            Ok::<_, io::Error>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| bad(e.to_string()))??;
    }
    let n = done.load(Ordering::Relaxed).min(count);
    // The counter overshoots by one per client that stopped on the time limit.
    let n = if t0.elapsed() >= limit {
        n.saturating_sub(concurrency as u64)
    } else {
        n
    };
    Ok((n, t0.elapsed()))
}

/// Round trips: `conns` persistent connections, each sending 64 B and awaiting the echo,
/// back to back, for `count` round trips in all or until `limit`; returns every round trip's
/// latency in nanoseconds.
pub async fn round_trips(
    addr: SocketAddr,
    hello: &[u8],
    conns: usize,
    count: u64,
    limit: Duration,
) -> io::Result<Vec<u32>> {
    let mut streams = Vec::new();
    for _ in 0..conns {
        let mut s = connect(addr).await?;
        s.write_all(hello).await?;
        streams.push(s);
    }
    let per_conn = count / conns as u64;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut s in streams {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_conn as usize);
            let (msg, mut back) = ([0x17u8; MSG], [0u8; MSG]);
            for _ in 0..per_conn {
                if t0.elapsed() >= limit {
                    break;
                }
                let t = Instant::now();
                s.write_all(&msg).await?;
                s.read_exact(&mut back).await?;
                lat.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
            }
            Ok::<_, io::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| bad(e.to_string()))??);
    }
    Ok(all)
}

/// Opens `n` connections and proves each reached its backend (one byte echoed), then holds
/// them; the caller measures and drops them.
pub async fn hold_idle(addr: SocketAddr, hello: &[u8], n: usize) -> io::Result<Vec<TcpStream>> {
    let mut first = hello.to_vec();
    first.push(b'!');
    let first: Arc<[u8]> = first.into();
    let mut held = Vec::with_capacity(n);
    // 64 at a time: a burst of thousands of SYNs would overflow the accept queues.
    for batch in (0..n).collect::<Vec<_>>().chunks(64) {
        let mut tasks = Vec::new();
        for _ in batch {
            let first = first.clone();
            tasks.push(tokio::spawn(async move {
                let mut s = connect(addr).await?;
                s.write_all(&first).await?;
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await?;
                Ok::<_, io::Error>(s)
            }));
        }
        for t in tasks {
            held.push(t.await.map_err(|e| bad(e.to_string()))??);
        }
    }
    Ok(held)
}

/// What a name got: the bytes the proxy returned before closing (or until `wait`).
pub async fn probe(addr: SocketAddr, hello: &[u8], wait: Duration) -> io::Result<Vec<u8>> {
    let mut s = connect(addr).await?;
    let mut first = hello.to_vec();
    first.extend_from_slice(b"probe");
    s.write_all(&first).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let read = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"probe") {
                        return;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    Ok(got)
}
