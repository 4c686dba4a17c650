//! `forward` and `forward_copy` end to end: exact bytes and counts both ways over in-memory
//! streams, an adversarial partial-IO stream and real loopback sockets (splice and copy);
//! half-close; resets; the idle timeout (in paused time); and the size of a connection's future.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use tokio::io::ReadBuf;
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

use super::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Failure bound only: a passing test never waits this long.
const BOUND: Duration = Duration::from_secs(60);
/// An idle timeout the non-idle tests never reach.
const NO_IDLE: Duration = Duration::from_secs(3600);
/// In-memory pipe capacity: small enough that every transfer fills it many times.
const DUPLEX_CAP: usize = 64 * KIB;

/// Length of the repeating test pattern. Prime and about 1 MB, so it lines up with no buffer,
/// pipe or socket size: a chunk lost, repeated or reordered shows as a mismatch, and whole
/// periods lost show in the byte count.
const PERIOD: usize = 1_000_003;

/// Pseudo-random bytes (xorshift64), the same on every run.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        (0..PERIOD).map(|_| rng.next() as u8).collect()
    })
}

/// Writes `len` pattern bytes starting at pattern offset `seed`.
async fn send<W: AsyncWrite + Unpin>(w: &mut W, seed: usize, len: usize) {
    let mut sent = 0;
    while sent < len {
        let at = (seed + sent) % PERIOD;
        let n = (len - sent).min(PERIOD - at).min(64 * KIB);
        w.write_all(&pattern()[at..at + n]).await.unwrap();
        sent += n;
    }
    w.flush().await.unwrap();
}

/// Reads exactly `len` bytes and checks each against the pattern sent from offset `seed`: the
/// comparison is exact, which a checksum only approximates.
async fn recv<R: AsyncRead + Unpin>(r: &mut R, seed: usize, len: usize) {
    let mut buf = vec![0u8; 64 * KIB];
    let mut got = 0;
    while got < len {
        let n = r.read(&mut buf[..(len - got).min(64 * KIB)]).await.unwrap();
        assert!(n > 0, "EOF after {got} of {len} bytes");
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let at = (seed + got) % PERIOD;
            let k = chunk.len().min(PERIOD - at);
            assert!(
                chunk[..k] == pattern()[at..at + k],
                "bytes differ at offset {got}"
            );
            chunk = &chunk[k..];
            got += k;
        }
    }
}

/// Asserts the stream is at EOF (the sender shut down and nothing more is queued).
async fn eof<R: AsyncRead + Unpin>(r: &mut R) {
    let mut byte = [0u8; 1];
    assert_eq!(r.read(&mut byte).await.unwrap(), 0, "expected EOF");
}

/// xorshift64: cheap, deterministic randomness for patterns and for `Weird`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An adversarial stream (ztunnel's `WeirdIO`): each read or write moves 1..=`max` bytes, the
/// number chosen pseudo-randomly, and every few calls returns `Pending` (waking itself at once),
/// so the copy sees every short-read, short-write and spurious-pending case.
struct Weird<S> {
    inner: S,
    rng: XorShift,
    max: usize,
}

impl<S> Weird<S> {
    fn new(inner: S, seed: u64, max: usize) -> Self {
        Weird {
            inner,
            rng: XorShift(seed),
            max,
        }
    }

    /// `Some(n)`: go ahead with at most n bytes; `None`: return Pending this time.
    fn roll(&mut self, cx: &Context<'_>, len: usize) -> Option<usize> {
        let r = self.rng.next();
        if r.is_multiple_of(4) {
            cx.waker().wake_by_ref();
            return None;
        }
        Some(len.min(1 + (r >> 8) as usize % self.max))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Weird<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(n) = this.roll(cx, buf.remaining()) else {
            return Poll::Pending;
        };
        let mut small = ReadBuf::new(buf.initialize_unfilled_to(n));
        let res = Pin::new(&mut this.inner).poll_read(cx, &mut small);
        let filled = small.filled().len();
        buf.advance(filled);
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Weird<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(n) = this.roll(cx, buf.len()) else {
            return Poll::Pending;
        };
        Pin::new(&mut this.inner).poll_write(cx, &buf[..n])
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.roll(cx, 0).is_none() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.roll(cx, 0).is_none() {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The four sockets around a gateway, `(client, a, b, upstream)`: `client` ↔ `a` and
/// `b` ↔ `upstream` are loopback connections, and `forward` joins `a` and `b`.
async fn sockets() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
    let (client, a) = tcp_pair().await;
    let (b, upstream) = tcp_pair().await;
    (client, a, b, upstream)
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (connected.unwrap(), accepted.unwrap().0)
}

/// (upstream, downstream) bytes as a connection counted them.
fn counted(t: &Transferred) -> (u64, u64) {
    (
        t.upstream.load(Ordering::Relaxed),
        t.downstream.load(Ordering::Relaxed),
    )
}

/// A connection's counts and its listener's metrics, as `forward` receives them.
#[derive(Default)]
struct Counts {
    conn: Transferred,
    up: Counter,
    down: Counter,
}

impl Counts {
    /// Forwards, then closes both sockets as the gateway does: the last direction to end
    /// leaves its FIN to that close.
    async fn forward(
        &self,
        mut a: TcpStream,
        mut b: TcpStream,
        mode: ForwardMode,
        idle: Duration,
    ) -> Reason {
        forward(&mut a, &mut b, mode, idle, &self.conn, &self.up, &self.down).await
    }

    /// (upstream, downstream) bytes, after checking that the listener metrics agree.
    fn bytes(&self) -> (u64, u64) {
        let conn = counted(&self.conn);
        assert_eq!(
            (self.up.get(), self.down.get()),
            conn,
            "metrics differ from the connection's counts"
        );
        conn
    }
}

/// Both modes on Linux; elsewhere `Auto` is the copy too, so testing it is still meaningful.
const MODES: [ForwardMode; 2] = [ForwardMode::Auto, ForwardMode::Copy];

/// One side sends and half-closes; the other reads to EOF and only then answers and closes.
/// The answer arriving proves that the first EOF ended one direction, not the connection.
async fn half_close_script<F, S>(first: &mut F, second: &mut S)
where
    F: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    first.write_all(b"request").await.unwrap();
    first.shutdown().await.unwrap();
    let mut got = Vec::new();
    second.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"request");
    second
        .write_all(b"answer sent after the EOF")
        .await
        .unwrap();
    second.shutdown().await.unwrap();
    let mut got = Vec::new();
    first.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"answer sent after the EOF");
}

/// `up` pattern bytes client → upstream and `down` bytes back, at the same time; each sender
/// then shuts down and each receiver checks every byte and then the EOF.
async fn both_ways<C, U>(client: C, upstream: U, up: usize, down: usize)
where
    C: AsyncRead + AsyncWrite,
    U: AsyncRead + AsyncWrite,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut up_r, mut up_w) = tokio::io::split(upstream);
    tokio::join!(
        async {
            send(&mut client_w, 0, up).await;
            client_w.shutdown().await.unwrap();
        },
        async {
            recv(&mut up_r, 0, up).await;
            eof(&mut up_r).await;
        },
        async {
            send(&mut up_w, 7, down).await;
            up_w.shutdown().await.unwrap();
        },
        async {
            recv(&mut client_r, 7, down).await;
            eof(&mut client_r).await;
        },
    );
}

// --- forward_copy over in-memory streams -------------------------------------------------------

#[tokio::test]
async fn copy_moves_bytes_both_ways_exactly() {
    const UP: usize = 4 * MIB + 17;
    const DOWN: usize = 3 * MIB + 5; // differs from UP, so swapped counts would show
    let (client, a) = tokio::io::duplex(DUPLEX_CAP);
    let (b, upstream) = tokio::io::duplex(DUPLEX_CAP);
    let counts = Transferred::default();
    let (reason, ()) = timeout(BOUND, async {
        tokio::join!(
            forward_copy(a, b, NO_IDLE, &counts),
            both_ways(client, upstream, UP, DOWN)
        )
    })
    .await
    .unwrap();
    assert_eq!(reason, Reason::Closed);
    assert_eq!(counted(&counts), (UP as u64, DOWN as u64));
}

#[tokio::test]
async fn copy_half_close_keeps_the_other_direction_open() {
    for client_first in [true, false] {
        let (mut client, a) = tokio::io::duplex(DUPLEX_CAP);
        let (b, mut upstream) = tokio::io::duplex(DUPLEX_CAP);
        let counts = Transferred::default();
        let script = async {
            if client_first {
                half_close_script(&mut client, &mut upstream).await;
            } else {
                half_close_script(&mut upstream, &mut client).await;
            }
        };
        let (reason, ()) = timeout(BOUND, async {
            tokio::join!(forward_copy(a, b, NO_IDLE, &counts), script)
        })
        .await
        .unwrap();
        assert_eq!(reason, Reason::Closed);
        let expected = if client_first { (7, 25) } else { (25, 7) };
        assert_eq!(counted(&counts), expected, "client first: {client_first}");
    }
}

#[tokio::test]
async fn copy_survives_partial_io_and_spurious_pending() {
    const UP: usize = 300 * KIB + 3;
    const DOWN: usize = 200 * KIB + 11;
    for seed in [1u64, 0xdead_beef, 0x1234_5678_9abc_def1] {
        // Every stream in the path is weird: the proxy's two ends and the test's two peers,
        // each with its own largest step.
        let (client, a) = tokio::io::duplex(DUPLEX_CAP);
        let (b, upstream) = tokio::io::duplex(DUPLEX_CAP);
        let a = Weird::new(a, seed, 97);
        let b = Weird::new(b, seed.rotate_left(17), 1500);
        let client = Weird::new(client, seed ^ 0x55, 4096);
        let upstream = Weird::new(upstream, seed ^ 0xaa, 13);
        let counts = Transferred::default();
        let (reason, ()) = timeout(BOUND, async {
            tokio::join!(
                forward_copy(a, b, NO_IDLE, &counts),
                both_ways(client, upstream, UP, DOWN)
            )
        })
        .await
        .unwrap();
        assert_eq!(reason, Reason::Closed, "seed {seed:#x}");
        assert_eq!(counted(&counts), (UP as u64, DOWN as u64), "seed {seed:#x}");
    }
}

// --- forward over real sockets -----------------------------------------------------------------

/// Pipes in this thread's pool: after a clean splice forward every pipe it took is back, empty.
#[cfg(target_os = "linux")]
fn pooled() -> usize {
    crate::sys::pooled_pipes()
}

#[tokio::test]
async fn forward_moves_64_mib_each_way() {
    const LEN: usize = 64 * MIB;
    for mode in MODES {
        let (mut client, a, b, mut upstream) = sockets().await;
        let counts = Counts::default();
        #[cfg(target_os = "linux")]
        let pooled_before = pooled();
        let script = async {
            // One way, then the other, then each side half-closes in turn.
            tokio::join!(send(&mut client, 0, LEN), recv(&mut upstream, 0, LEN));
            tokio::join!(send(&mut upstream, 5, LEN), recv(&mut client, 5, LEN));
            client.shutdown().await.unwrap();
            eof(&mut upstream).await;
            upstream.shutdown().await.unwrap();
            eof(&mut client).await;
        };
        let (reason, ()) = timeout(BOUND, async {
            tokio::join!(counts.forward(a, b, mode, NO_IDLE), script)
        })
        .await
        .unwrap();
        assert_eq!(reason, Reason::Closed, "{mode:?}");
        assert_eq!(counts.bytes(), (LEN as u64, LEN as u64), "{mode:?}");
        #[cfg(target_os = "linux")]
        match mode {
            // splice ran: each burst took a pipe and gave it back empty, so the pool holds at
            // least one (the directions ran one after the other, so one pipe could serve both).
            ForwardMode::Auto => assert!(pooled() >= pooled_before.max(1), "{mode:?}"),
            ForwardMode::Copy => assert_eq!(pooled(), pooled_before),
        }
    }
}

/// A small burst that the destination cannot take yet is kept whole and sent on once it can,
/// whatever pipe the pool hands out: one with room (the bytes wait in it) or one smaller than
/// the burst, as the kernel gives an unprivileged user past `fs.pipe-user-pages-soft` (they
/// wait on the heap). A short pipe write used to end the connection.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_small_burst_the_destination_refuses_is_sent_later() {
    use crate::sys::{PIPE_SIZE, Pipe};
    const LEN: usize = splice::SMALL - 1;
    for pipe_bytes in [PIPE_SIZE, 4 * KIB] {
        // The next pipe this thread's pool hands out.
        let pipe = Pipe::get().unwrap();
        pipe.resize(pipe_bytes).unwrap();
        pipe.put(true);
        let (mut client, a, b, mut upstream) = sockets().await;
        // Fill the path to upstream (b's send buffer, upstream's receive buffer) so that the
        // burst's write takes nothing.
        let zeros = [0u8; 64 * KIB];
        let mut filler = 0;
        loop {
            match b.try_write(&zeros) {
                Ok(n) => filler += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        // The whole burst is queued on `a` before forwarding starts, so the first read takes it.
        send(&mut client, 0, LEN).await;
        let mut peeked = vec![0u8; LEN];
        timeout(BOUND, async {
            while a.peek(&mut peeked).await.unwrap() < LEN {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        let counts = Counts::default();
        let script = async {
            let mut skipped = vec![0u8; filler];
            upstream.read_exact(&mut skipped).await.unwrap();
            recv(&mut upstream, 0, LEN).await;
            client.shutdown().await.unwrap();
            eof(&mut upstream).await;
            upstream.shutdown().await.unwrap();
            eof(&mut client).await;
        };
        let (reason, ()) = timeout(BOUND, async {
            tokio::join!(counts.forward(a, b, ForwardMode::Auto, NO_IDLE), script)
        })
        .await
        .unwrap();
        assert_eq!(reason, Reason::Closed, "pipe of {pipe_bytes} bytes");
        assert_eq!(
            counts.bytes(),
            (LEN as u64, 0),
            "pipe of {pipe_bytes} bytes"
        );
    }
}

#[tokio::test]
async fn forward_half_close_keeps_the_other_direction_open() {
    for mode in MODES {
        for client_first in [true, false] {
            let (mut client, a, b, mut upstream) = sockets().await;
            let counts = Counts::default();
            let script = async {
                if client_first {
                    half_close_script(&mut client, &mut upstream).await;
                } else {
                    half_close_script(&mut upstream, &mut client).await;
                }
            };
            let (reason, ()) = timeout(BOUND, async {
                tokio::join!(counts.forward(a, b, mode, NO_IDLE), script)
            })
            .await
            .unwrap();
            let what = format!("{mode:?}, client first: {client_first}");
            assert_eq!(reason, Reason::Closed, "{what}");
            let expected = if client_first { (7, 25) } else { (25, 7) };
            assert_eq!(counts.bytes(), expected, "{what}");
        }
    }
}

/// Closes `s` with a TCP reset instead of a FIN.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

#[tokio::test]
async fn forward_reset_is_a_normal_end_and_bytes_are_counted() {
    const LEN: usize = 300 * KIB + 1;
    for mode in MODES {
        for client_resets in [true, false] {
            let (mut client, a, b, mut upstream) = sockets().await;
            let counts = Counts::default();
            let script = async {
                // The resetting side sends, waits until every byte is delivered (a reset
                // discards unread bytes), then resets.
                if client_resets {
                    send(&mut client, 0, LEN).await;
                    recv(&mut upstream, 0, LEN).await;
                    reset(client);
                } else {
                    send(&mut upstream, 0, LEN).await;
                    recv(&mut client, 0, LEN).await;
                    reset(upstream);
                }
            };
            let (reason, ()) = timeout(BOUND, async {
                tokio::join!(counts.forward(a, b, mode, NO_IDLE), script)
            })
            .await
            .unwrap();
            let what = format!("{mode:?}, client resets: {client_resets}");
            assert_eq!(reason, Reason::Closed, "{what}");
            let expected = if client_resets {
                (LEN as u64, 0)
            } else {
                (0, LEN as u64)
            };
            assert_eq!(counts.bytes(), expected, "{what}");
        }
    }
}

/// A side that half-closes and then aborts (a reset) while the other side stays silent and
/// open: nothing reads the half-closed socket any more, so without a watch on it the connection
/// would wait for the idle timeout (an hour here) holding both sockets.
#[tokio::test]
async fn a_reset_after_half_close_ends_the_connection() {
    for mode in MODES {
        for client_side in [true, false] {
            let (mut client, a, b, mut upstream) = sockets().await;
            let counts = Counts::default();
            let script = async {
                let (aborts, silent) = if client_side {
                    (&mut client, &mut upstream)
                } else {
                    (&mut upstream, &mut client)
                };
                send(aborts, 0, 10 * KIB).await;
                aborts.shutdown().await.unwrap();
                recv(silent, 0, 10 * KIB).await;
                eof(silent).await;
                // `silent` stays open and sends nothing; `aborts` resets.
                let aborts = std::mem::replace(aborts, tcp_pair().await.0);
                reset(aborts);
            };
            let (reason, ()) = timeout(BOUND, async {
                tokio::join!(counts.forward(a, b, mode, NO_IDLE), script)
            })
            .await
            .unwrap_or_else(|_| panic!("{mode:?}: a reset after half-close went unnoticed"));
            assert_eq!(
                reason,
                Reason::Closed,
                "{mode:?}, client side: {client_side}"
            );
        }
    }
}

// --- idle timeout, in paused time --------------------------------------------------------------
//
// Paused time: when no task can run, the runtime jumps the clock to the next timer, so these
// tests take no wall time and their timings are exact. Real sockets work with it because loopback
// delivery completes inside the sending syscall: a byte written wakes its reader at the IO
// driver's next poll, and a wake-up of the test's own future stops the clock from jumping. The
// sockets are set up before any timer exists, so the clock cannot jump during a connect.
// Failure bounds (`VIRTUAL_BOUND`) wrap only `forward` itself: while it runs its watchdog always
// has an earlier timer, so the bound fires only when that much virtual time has passed, never
// because the test is waiting on a socket.

const IDLE: Duration = Duration::from_millis(200);
/// Virtual time: reaching it costs a few thousand clock jumps, not an hour.
const VIRTUAL_BOUND: Duration = Duration::from_secs(3600);

/// Documented: a silent connection closes between 1× and 1.5× the idle timeout.
fn assert_idle_window(waited: Duration) {
    assert!(
        waited >= IDLE && waited <= IDLE * 3 / 2,
        "closed after {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn copy_silent_connection_times_out() {
    let (_client, a) = tokio::io::duplex(DUPLEX_CAP);
    let (b, _upstream) = tokio::io::duplex(DUPLEX_CAP);
    let counts = Transferred::default();
    let start = Instant::now();
    let reason = timeout(VIRTUAL_BOUND, forward_copy(a, b, IDLE, &counts)).await;
    assert_eq!(reason.unwrap(), Reason::IdleTimeout);
    assert_idle_window(start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn forward_silent_connection_times_out() {
    for mode in MODES {
        let (_client, a, b, _upstream) = sockets().await;
        let counts = Counts::default();
        let start = Instant::now();
        let reason = timeout(VIRTUAL_BOUND, counts.forward(a, b, mode, IDLE)).await;
        assert_eq!(reason.unwrap(), Reason::IdleTimeout, "{mode:?}");
        assert_idle_window(start.elapsed());
        assert_eq!(counts.bytes(), (0, 0), "{mode:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn forward_traffic_keeps_the_connection_open() {
    const BYTES: usize = 20;
    // One byte every half timeout, and every 3/4 timeout: the watchdog then sees some quiet
    // half-periods, which it must forget when the next byte moves. The first byte comes a
    // quarter period in, so no byte lands on the same instant as a watchdog check.
    for spacing in [IDLE / 2, IDLE * 3 / 4] {
        for mode in MODES {
            let (mut client, a, b, mut upstream) = sockets().await;
            let counts = Counts::default();
            let writer = async {
                let mut ticks = tokio::time::interval_at(Instant::now() + IDLE / 8, spacing);
                for _ in 0..BYTES {
                    ticks.tick().await;
                    client.write_all(b"x").await.unwrap();
                }
                Instant::now()
            };
            let forward = timeout(VIRTUAL_BOUND, counts.forward(a, b, mode, IDLE));
            let (reason, last_write) = tokio::join!(forward, writer);
            let reason = reason.unwrap();
            let what = format!("{mode:?}, a byte every {spacing:?}");
            // Open through all the traffic (BYTES × spacing, many timeouts), closed only once
            // it stopped. The close is due by 1.5× the timeout after the last byte; 2× leaves
            // room for a kernel that delivers a loopback segment late (the clock may then jump
            // to the next check before the byte moves).
            assert_eq!(reason, Reason::IdleTimeout, "{what}");
            assert_eq!(counts.bytes(), (BYTES as u64, 0), "{what}");
            let quiet = last_write.elapsed();
            assert!(
                quiet >= IDLE && quiet <= IDLE * 2,
                "{what}: closed {quiet:?} after the last byte"
            );
            let mut got = [0u8; BYTES];
            upstream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [b'x'; BYTES], "{what}");
        }
    }
}

// --- per-connection memory -----------------------------------------------------------------------

/// A connection's task holds this future for its whole life; the copy buffers (16-256 KiB) must
/// be on the heap, not in it. Measured (debug and release, x86_64, tokio 1.54): `forward`
/// 800 bytes (1072 while each direction was an async fn, 1896 before the two directions shared
/// one error watch and the rare paths were boxed), `forward_copy` over duplex streams 1016
/// bytes (printed with `--nocapture`). A 16 KiB buffer in either would exceed its bound
/// fifteen times over.
const MAX_FORWARD_FUTURE: usize = 896;
const MAX_COPY_FUTURE: usize = 1152;

#[tokio::test]
async fn forward_future_is_small() {
    let (_client, mut a, mut b, _upstream) = sockets().await;
    let counts = Transferred::default();
    let metric = Counter::default();
    let fut = forward(
        &mut a,
        &mut b,
        ForwardMode::Auto,
        NO_IDLE,
        &counts,
        &metric,
        &metric,
    );
    let forward_size = std::mem::size_of_val(&fut);
    drop(fut);
    let (_client, a) = tokio::io::duplex(DUPLEX_CAP);
    let (b, _upstream) = tokio::io::duplex(DUPLEX_CAP);
    let fut = forward_copy(a, b, NO_IDLE, &counts);
    let copy_size = std::mem::size_of_val(&fut);
    drop(fut);
    eprintln!("forward future: {forward_size} bytes; forward_copy future: {copy_size} bytes");
    assert!(
        forward_size < MAX_FORWARD_FUTURE,
        "forward future is {forward_size} bytes"
    );
    assert!(
        copy_size < MAX_COPY_FUTURE,
        "forward_copy future is {copy_size} bytes"
    );
}
