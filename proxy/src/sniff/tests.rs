//! `sniff` over real loopback sockets: a real ClientHello trickled one byte per TCP segment is
//! found and left unread; every refusal; and waiting for the rest of a hello costs no CPU.

use std::time::Instant;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::timeout;

use super::*;

const MAX: usize = 64 * 1024;
const ISTIO_SNI: &str = "outbound_.8080_._.west.west.svc.cluster.local";
/// A sniff timeout the test must not reach: reaching it turns into a wrong `Reason`.
const NO_TIMEOUT: Duration = Duration::from_secs(30);
/// Failure bound only: a passing test never waits this long. Shorter than `NO_TIMEOUT`, so a
/// sniff that waits when it should decide fails here rather than returning `SniffTimeout`.
const BOUND: Duration = Duration::from_secs(10);

/// The bytes a real rustls client sends first, for the Istio SNI.
fn rustls_hello(alpn: &[&[u8]]) -> Vec<u8> {
    let name = ServerName::try_from(ISTIO_SNI).expect("rustls accepts '_' in DNS names");
    crate::sni::tests::rustls_hello(name, alpn)
}

fn istio_hello() -> Vec<u8> {
    rustls_hello(&[b"istio-peer-exchange", b"istio"])
}

/// (client, server): `client` writes with Nagle off, so each write is its own segment.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.unwrap();
    client.set_nodelay(true).unwrap();
    (client, accepted.unwrap().0)
}

/// `sniff` that must decide by itself: its own timeout is out of reach, and the test fails
/// after `BOUND`.
async fn decide(server: &TcpStream, max_len: usize) -> Result<ClientHello, Reason> {
    let res = timeout(BOUND, sniff(server, max_len, NO_TIMEOUT)).await;
    res.expect("sniff should decide without waiting for more bytes")
}

/// Sends `bytes` (keeping the connection open), then sniffs.
async fn sniff_after(bytes: &[u8], max_len: usize) -> (TcpStream, Result<ClientHello, Reason>) {
    let (mut client, server) = pair().await;
    client.write_all(bytes).await.unwrap();
    let res = decide(&server, max_len).await;
    (client, res)
}

#[tokio::test]
async fn hello_trickled_bytewise_is_found_and_left_unread() {
    let hello = istio_hello();
    let (mut client, mut server) = pair().await;
    let trickle = async {
        for byte in &hello {
            client.write_all(std::slice::from_ref(byte)).await.unwrap();
            client.flush().await.unwrap();
            // Let the sniff look at every one-byte segment.
            tokio::task::yield_now().await;
        }
    };
    let (found, ()) = timeout(BOUND, async {
        tokio::join!(sniff(&server, MAX, NO_TIMEOUT), trickle)
    })
    .await
    .unwrap();
    let found = found.unwrap();
    assert_eq!(found.sni.as_str(), ISTIO_SNI);
    assert!(
        found
            .alpn
            .contains(sni::Alpn::ISTIO | sni::Alpn::ISTIO_PEER_EXCHANGE)
    );
    assert_eq!(found.wire_len, hello.len());
    // Sniffing only peeked: the upstream must still receive the hello byte for byte.
    let mut unread = vec![0u8; hello.len()];
    server.read_exact(&mut unread).await.unwrap();
    assert_eq!(unread, hello);
}

#[tokio::test]
async fn hello_then_half_close_is_still_found() {
    // `printf <hello> | nc` sends its FIN right behind the hello: the hello is complete, so it
    // is not a SniffEof.
    let hello = istio_hello();
    let (mut client, server) = pair().await;
    client.write_all(&hello).await.unwrap();
    client.shutdown().await.unwrap();
    let found = decide(&server, MAX).await.unwrap();
    assert_eq!(found.sni.as_str(), ISTIO_SNI);
}

#[tokio::test]
async fn plain_http_is_not_tls_at_once() {
    // The client keeps the connection open: only the first bytes can decide, and they must.
    let (_client, res) = sniff_after(b"GET / HTTP/1.1\r\n", MAX).await;
    assert_eq!(res, Err(Reason::NotTls));
}

#[tokio::test]
async fn close_mid_hello_is_sniff_eof() {
    let hello = istio_hello();
    // Half-close (FIN, the client could still read) and full close after half a hello.
    for full_close in [false, true] {
        let (mut client, server) = pair().await;
        client.write_all(&hello[..hello.len() / 2]).await.unwrap();
        if full_close {
            drop(client);
        } else {
            client.shutdown().await.unwrap();
        }
        let res = decide(&server, MAX).await;
        assert_eq!(res, Err(Reason::SniffEof), "full close: {full_close}");
    }
}

#[tokio::test]
async fn reset_mid_hello_is_sniff_eof() {
    let hello = istio_hello();
    let (mut client, server) = pair().await;
    client.write_all(&hello[..hello.len() / 2]).await.unwrap();
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    let res = decide(&server, MAX).await;
    assert_eq!(res, Err(Reason::SniffEof));
}

#[tokio::test]
async fn close_before_any_byte_is_sniff_eof() {
    let (client, server) = pair().await;
    drop(client);
    let res = decide(&server, MAX).await;
    assert_eq!(res, Err(Reason::SniffEof));
}

#[tokio::test]
async fn silence_is_sniff_timeout() {
    const SHORT: Duration = Duration::from_millis(200);
    let hello = istio_hello();
    // Nothing at all, and half a hello: both wait out the timeout, then give up.
    for sent in [&[][..], &hello[..hello.len() / 2]] {
        let (mut client, server) = pair().await;
        client.write_all(sent).await.unwrap();
        let start = Instant::now();
        let res = timeout(BOUND, sniff(&server, MAX, SHORT)).await.unwrap();
        assert_eq!(res, Err(Reason::SniffTimeout), "{} bytes sent", sent.len());
        assert!(start.elapsed() >= SHORT);
    }
}

#[tokio::test]
async fn hello_over_max_len_is_too_large() {
    // A real hello of about 2 KiB: many ALPN protocols, as a padded or post-quantum hello is big.
    let names: Vec<Vec<u8>> = (0..80)
        .map(|i| format!("x-padding-protocol-{i:05}").into_bytes())
        .collect();
    let alpn: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let hello = rustls_hello(&alpn);
    assert!(hello.len() > 2000, "{} bytes", hello.len());
    let (_client, res) = sniff_after(&hello, 1024).await;
    assert_eq!(res, Err(Reason::ClientHelloTooLarge));
    // The cap is inclusive: a hello of exactly `max_len` bytes fits, one byte less does not.
    let (_client, res) = sniff_after(&hello, hello.len()).await;
    assert_eq!(res.map(|h| h.wire_len), Ok(hello.len()));
    let (_client, res) = sniff_after(&hello, hello.len() - 1).await;
    assert_eq!(res, Err(Reason::ClientHelloTooLarge));
}

/// CPU time used by the calling thread (user + system); the syscall lives in `sys`, the crate's
/// one module with `unsafe`.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    crate::sys::thread_cpu_time().expect("clock_gettime")
}

/// The client sends half a hello, then nothing for `WAIT`, then the rest. The sniff runs alone
/// on its own thread (a current-thread runtime), and that thread's CPU time over the whole sniff
/// must stay far below `WAIT`.
///
/// Why this cannot flake: CPU time accrues only while the thread runs. An idle sniff sleeps in
/// epoll_wait for the whole wait, and its few syscalls cost microseconds, so a slow or loaded
/// machine stretches the wall time, not this thread's CPU time; and the wall time is at least
/// `WAIT` by construction (the rest is sent `WAIT` after the sniff started). A sniff that spins
/// on queued bytes burns about `WAIT` of CPU (1.5 s against a 100 ms budget); only starving it of
/// CPU for over 93% of the wait could hide that, never make a correct sniff fail.
#[cfg(target_os = "linux")]
#[test]
fn waiting_for_the_rest_of_a_hello_uses_no_cpu() {
    use std::io::Write;

    const WAIT: Duration = Duration::from_millis(1500);
    const CPU_BUDGET: Duration = Duration::from_millis(100);
    let hello = istio_hello();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_nodelay(true).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();

    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let sniffer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = TcpStream::from_std(server).unwrap();
            let (cpu, wall) = (thread_cpu_time(), Instant::now());
            started_tx.send(()).unwrap();
            let res = sniff(&server, MAX, NO_TIMEOUT).await;
            (res, thread_cpu_time() - cpu, wall.elapsed())
        })
    });

    started_rx.recv().unwrap();
    let (head, tail) = hello.split_at(hello.len() / 2);
    client.write_all(head).unwrap();
    // The slow client of this scenario (the stimulus, not synchronisation).
    std::thread::sleep(WAIT);
    client.write_all(tail).unwrap();

    let (res, cpu, wall) = sniffer.join().unwrap();
    eprintln!("sniff waited {wall:?} using {cpu:?} of CPU");
    assert_eq!(res.unwrap().sni.as_str(), ISTIO_SNI);
    assert!(
        wall >= WAIT,
        "the sniff returned before the hello was complete"
    );
    assert!(
        cpu < CPU_BUDGET,
        "sniff used {cpu:?} of CPU while idle for {wall:?}"
    );
}
