//! Forwarding: moves bytes both ways between the client and the upstream until both directions
//! end, with half-close propagated, an idle timeout, and byte counts kept even when a stream
//! ends in a reset. On Linux each direction uses splice(2) (socket → pipe → socket, no copy
//! through user space); where splice is unavailable it falls back to a buffered copy.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::config::ForwardMode;
use crate::reason::Reason;

/// First buffer size for the buffered copy: most east-west connections are small RPCs.
const COPY_BUF_START: usize = 16 * 1024;
/// The buffered copy grows its buffer to this when reads keep filling it (bulk transfers);
/// ztunnel found 256 KiB the point of diminishing returns for its copy loop.
const COPY_BUF_MAX: usize = 256 * 1024;

/// Byte counts of one connection. `upstream` is client → endpoint, `downstream` endpoint →
/// client. Atomics only because the idle watchdog reads them while the directions write them;
/// they are local to the connection, so the adds are uncontended.
#[derive(Debug, Default)]
pub struct Transferred {
    pub upstream: AtomicU64,
    pub downstream: AtomicU64,
    /// Set when a direction used the buffered copy rather than splice(2) (the access log's
    /// `forward` field says which path moved the bytes).
    pub copied: AtomicBool,
    /// Set by the first splice-path direction to read EOF from its source; see [`Tally::end`].
    /// (The buffered copy always half-closes: it is rare, and its writer is any stream.)
    one_ended: AtomicBool,
}

impl Transferred {
    /// `"splice"` or `"copy"`: the path that moved this connection's bytes.
    pub fn path(&self) -> &'static str {
        if self.copied.load(Ordering::Relaxed) {
            "copy"
        } else {
            "splice"
        }
    }

    fn total(&self) -> u64 {
        self.upstream.load(Ordering::Relaxed) + self.downstream.load(Ordering::Relaxed)
    }
}

/// Where one direction's bytes are counted: the connection's own count and the listener's
/// (pre-resolved) metric.
#[derive(Clone, Copy)]
struct Tally<'a> {
    conn: &'a AtomicU64,
    metric: &'a Counter,
    copied: &'a AtomicBool,
    one_ended: &'a AtomicBool,
}

impl Tally<'_> {
    fn add(&self, n: usize) {
        self.conn.fetch_add(n as u64, Ordering::Relaxed);
        self.metric.inc_by(n as u64);
    }

    /// This direction read EOF from `src`: half-closes `dst` so its peer sees the EOF, unless
    /// the other direction already ended. Then both sockets have been read to their EOF and
    /// are about to be closed, and close(2) of a socket with nothing unread sends the same FIN
    /// the shutdown(2) would have: one system call per connection saved.
    fn end(&self, dst: &TcpStream) -> io::Result<()> {
        if self.one_ended.swap(true, Ordering::Relaxed) {
            Ok(())
        } else {
            shutdown_write(dst)
        }
    }
}

/// Forwards until both directions end, the idle timeout passes with no bytes moving, or an
/// error other than a reset ends the connection. Returns the reason to record. The caller
/// closes both sockets next: the direction that ends last does not half-close its
/// destination, and that peer's FIN comes from the close.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    mode: ForwardMode,
    idle: Duration,
    counts: &Transferred,
    up_metric: &Counter,
    down_metric: &Counter,
) -> Reason {
    let (client, upstream) = (&*client, &*upstream);
    let up = Tally {
        conn: &counts.upstream,
        metric: up_metric,
        copied: &counts.copied,
        one_ended: &counts.one_ended,
    };
    let down = Tally {
        conn: &counts.downstream,
        metric: down_metric,
        copied: &counts.copied,
        one_ended: &counts.one_ended,
    };
    tokio::select! {
        res = both_ways(client, upstream, mode, up, down) => ending(res),
        () = idle_watch(counts, idle) => Reason::IdleTimeout,
    }
}

/// Joins the two directions (not a race: a half-closed connection keeps its other direction).
/// A direction that finished has read EOF from its source, and nothing reads that socket again,
/// so a reset arriving there later (a client that half-closes, then aborts) would go unnoticed
/// while the other direction waits on a silent peer, until the idle timeout. So the source of a
/// finished direction is watched for a socket error, which ends the connection.
///
/// Both directions are plain state ([`Way`]) polled from one `poll_fn`, not two futures: an
/// async fn's state keeps every local alive across its awaits, and this state is most of what
/// an open connection costs in memory (512 bytes here, 784 as two async-fn directions).
async fn both_ways<'a>(
    client: &'a TcpStream,
    upstream: &'a TcpStream,
    mode: ForwardMode,
    up: Tally<'a>,
    down: Tally<'a>,
) -> io::Result<()> {
    let mut ups = Way::new(mode, client, upstream, up);
    let mut downs = Way::new(mode, upstream, client, down);
    // The two take turns at going first, so a direction that always has data cannot spend the
    // task's whole cooperative budget before the other is polled.
    let mut up_first = false;
    let up_ended = std::future::poll_fn(|cx| {
        up_first = !up_first;
        for is_up in [up_first, !up_first] {
            let r = if is_up {
                ups.poll(cx, client, upstream, up)
            } else {
                downs.poll(cx, upstream, client, down)
            };
            if let Poll::Ready(r) = r {
                return Poll::Ready(r.map(|()| is_up));
            }
        }
        Poll::Pending
    })
    .await?;
    let (rest, src, dst, tally, finished) = if up_ended {
        (&mut downs, upstream, client, down, client)
    } else {
        (&mut ups, client, upstream, up, upstream)
    };
    tokio::select! {
        r = std::future::poll_fn(|cx| rest.poll(cx, src, dst, tally)) => r,
        r = finished.ready(Interest::ERROR) => Err(socket_error(finished, r)),
    }
}

/// One direction of a connection: the splice path's state, or the buffered copy it fell back
/// to (boxed: the fallback is rare and allocates its buffer anyway, so every connection holds a
/// pointer rather than room for the copy loop's state), or finished.
enum Way<'a> {
    #[cfg(target_os = "linux")]
    Splice(splice::Dir),
    Copy(Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'a>>),
    Done,
}

impl<'a> Way<'a> {
    fn new(mode: ForwardMode, src: &'a TcpStream, dst: &'a TcpStream, tally: Tally<'a>) -> Self {
        #[cfg(target_os = "linux")]
        if mode == ForwardMode::Auto {
            return Way::Splice(splice::Dir::default());
        }
        #[cfg(not(target_os = "linux"))]
        let _ = mode;
        Way::copy(src, dst, tally)
    }

    fn copy(src: &'a TcpStream, dst: &'a TcpStream, tally: Tally<'a>) -> Self {
        tally.copied.store(true, Ordering::Relaxed);
        Way::Copy(Box::pin(copy_one_way(Shared(src), Shared(dst), tally)))
    }

    /// Moves bytes from `src` to `dst` until `src` ends (Ready(Ok)) or an error; the same
    /// sockets and tally on every call.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &'a TcpStream,
        dst: &'a TcpStream,
        tally: Tally<'a>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self {
                #[cfg(target_os = "linux")]
                Way::Splice(dir) => match ready!(dir.poll(cx, src, dst, &tally)) {
                    Ok(splice::Outcome::Done) => {
                        *self = Way::Done;
                        return Poll::Ready(Ok(()));
                    }
                    // Nothing is left in the splice state (no byte in a pipe): the copy takes
                    // over from here without losing one.
                    Ok(splice::Outcome::Unsupported) => *self = Way::copy(src, dst, tally),
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Way::Copy(copy) => {
                    let r = ready!(copy.as_mut().poll(cx));
                    *self = Way::Done;
                    return Poll::Ready(r);
                }
                Way::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// The pending error of a socket whose readiness reported one.
fn socket_error(s: &TcpStream, ready: io::Result<tokio::io::Ready>) -> io::Error {
    match (ready, s.take_error()) {
        (Err(e), _) | (Ok(_), Ok(Some(e))) | (Ok(_), Err(e)) => e,
        (Ok(_), Ok(None)) => io::ErrorKind::ConnectionReset.into(),
    }
}

/// Forwards over any pair of byte streams with the buffered copy: what `forward` does where
/// splice is not available, exposed for tests over in-memory and adversarial streams.
pub async fn forward_copy<A, B>(a: A, b: B, idle: Duration, counts: &Transferred) -> Reason
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let sink = Counter::default();
    let up = copy_one_way(
        ar,
        bw,
        Tally {
            conn: &counts.upstream,
            metric: &sink,
            copied: &counts.copied,
            one_ended: &counts.one_ended,
        },
    );
    let down = copy_one_way(
        br,
        aw,
        Tally {
            conn: &counts.downstream,
            metric: &sink,
            copied: &counts.copied,
            one_ended: &counts.one_ended,
        },
    );
    tokio::select! {
        res = async { tokio::try_join!(up, down) } => ending(res.map(|_| ())),
        () = idle_watch(counts, idle) => Reason::IdleTimeout,
    }
}

/// Resolves once no byte has moved for the idle timeout (checked every half timeout, so a
/// connection is closed between 1× and 1.5× the timeout after its last byte). A zero timeout
/// disables the check.
async fn idle_watch(counts: &Transferred, idle: Duration) {
    if idle.is_zero() {
        return std::future::pending().await;
    }
    let period = idle / 2;
    let mut last = counts.total();
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(period).await;
        let now = counts.total();
        if now == last {
            quiet += period;
            if quiet >= idle {
                return;
            }
        } else {
            quiet = Duration::ZERO;
            last = now;
        }
    }
}

/// How forwarding ended, as the connection's reason.
fn ending(res: io::Result<()>) -> Reason {
    match res {
        Ok(()) => Reason::Closed,
        Err(e) if is_stream_end(&e) => Reason::Closed,
        Err(_) => Reason::ForwardError,
    }
}

/// A reset or broken pipe at the end of a stream is how many peers close: a normal ending.
fn is_stream_end(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
    )
}

/// A shared `&TcpStream` as a byte stream, so both directions and the error watch of
/// [`both_ways`] can use the same two sockets at once (tokio's own split halves would hold them
/// exclusively). Reads and writes go through the socket's readiness like tokio's own.
struct Shared<'a>(&'a TcpStream);

impl AsyncRead for Shared<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Shared<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                res => return Poll::Ready(res),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(shutdown_write(self.0))
    }
}

/// The portable direction: read into a heap buffer (not the future, which would make every
/// connection's task large), write it all, shut the writer down at EOF.
async fn copy_one_way<R, W>(mut src: R, mut dst: W, tally: Tally<'_>) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUF_START];
    loop {
        let n = src.read(&mut buf).await?;
        if n == 0 {
            return match dst.shutdown().await {
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
                other => other,
            };
        }
        // Count each write as it lands, so a reset half-way still leaves an exact count.
        let mut written = 0;
        while written < n {
            let k = dst.write(&buf[written..n]).await?;
            if k == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            written += k;
            tally.add(k);
        }
        dst.flush().await?;
        if n == buf.len() && buf.len() < COPY_BUF_MAX {
            buf.resize((buf.len() * 4).min(COPY_BUF_MAX), 0);
        }
    }
}

/// Shuts down the write side of `s`, so the peer sees EOF (half-close). A peer that is already
/// gone is not an error here.
fn shutdown_write(s: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(s).shutdown(Shutdown::Write) {
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        other => other,
    }
}

#[cfg(target_os = "linux")]
mod splice {
    use std::io;
    use std::os::fd::AsRawFd;

    use std::task::{Context, Poll, ready};

    use tokio::io::Interest;
    use tokio::net::TcpStream;

    use super::Tally;
    use crate::sys::{PIPE_SIZE, Pipe};

    pub enum Outcome {
        Done,
        /// splice(2) refused before any byte moved: use the buffered copy instead.
        Unsupported,
    }

    /// haproxy's table (src/raw_sock.c): these mean "no splice for this pair of fds".
    fn unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::EBADF)
        )
    }

    /// Bursts up to this size are read into the worker's scratch buffer and written straight
    /// on: for the small messages of RPC traffic one read(2) and one write(2) cost less than
    /// splicing through a pipe (socket → pipe, pipe → socket, and a third splice to learn the
    /// socket is empty; the kernel takes the socket lock twice per splice read). A read that
    /// fills the buffer means bulk data is flowing, and the direction switches to splice(2)
    /// until a splice burst comes back smaller than this (haproxy's `splice-auto` idea).
    /// At most the capacity of a pipe the kernel will give us, so a backlog always fits in one.
    pub const SMALL: usize = 16 * 1024;

    thread_local! {
        /// The worker's scratch buffer for small bursts: connections take turns, and no byte
        /// stays in it across an await.
        static SCRATCH: std::cell::RefCell<Box<[u8]>> =
            std::cell::RefCell::new(vec![0u8; SMALL].into_boxed_slice());
    }

    /// What one small burst did.
    enum Small {
        /// The source had nothing after all (its readiness is cleared).
        Empty,
        Eof,
        /// Every byte read was written on; `full` when the read filled the buffer.
        Moved {
            full: bool,
        },
        /// The destination took only part: the rest (`.1` bytes) waits in the pipe.
        Backlog(Pipe, usize),
        /// The destination took only part and no pipe could hold the rest (none to be had, or
        /// one smaller than the rest): the rest waits on the heap.
        Stuck(Vec<u8>),
    }

    /// One read into the scratch buffer and one write of it, both without waiting.
    fn small_burst(src: &TcpStream, dst: &TcpStream, tally: &Tally<'_>) -> io::Result<Small> {
        SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            let n = match src.try_read(&mut buf[..]) {
                Ok(0) => return Ok(Small::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Small::Empty),
                Err(e) => return Err(e),
            };
            if n < buf.len() {
                // A short read from a TCP socket emptied its receive queue (tokio's own reads
                // rely on this too): clear the readiness now instead of paying a read that
                // says EAGAIN. Bytes or a FIN arriving later raise a new edge; a FIN already
                // seen stays in tokio's readiness, which never clears "closed".
                let _ = src.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
            let written = match dst.try_write(&buf[..n]) {
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            tally.add(written);
            if written == n {
                return Ok(Small::Moved {
                    full: n == buf.len(),
                });
            }
            // The destination is full: the rest must outlive this buffer, which the next
            // connection will use. A pooled pipe holds it without an allocation. Pipes can
            // be smaller than asked (past `fs.pipe-user-pages-soft`) or unavailable (out of
            // fds); then the rest goes to the heap, the one allocation of this rare case.
            let rest = &buf[written..n];
            match Pipe::get() {
                // An empty pipe with room for all of it takes it in the one write(2).
                Ok(pipe) if pipe.capacity() >= rest.len() => match pipe.push(rest)? {
                    pushed if pushed == rest.len() => Ok(Small::Backlog(pipe, pushed)),
                    _ => Err(io::Error::other("an empty pipe took part of a small burst")),
                },
                Ok(small) => {
                    small.put(true);
                    Ok(Small::Stuck(rest.to_vec()))
                }
                Err(_) => Ok(Small::Stuck(rest.to_vec())),
            }
        })
    }

    /// One direction on the splice path, as plain data polled by [`Dir::poll`]: small bursts
    /// until one fills the scratch buffer, then splice until a burst is small.
    #[derive(Default)]
    pub struct Dir {
        bulk: bool,
        /// A burst moved since the last look at the task's cooperative budget.
        moved: bool,
        /// Holds `in_pipe` bytes read from the source and not yet written on.
        pipe: Option<Pipe>,
        in_pipe: usize,
        /// Bytes no pipe could hold (rare), and how many of them are written already.
        stuck: Option<(Vec<u8>, usize)>,
    }

    /// The pipe goes back to the pool when the direction ends or is cancelled (idle timeout,
    /// drain), pooled only if it is empty.
    impl Drop for Dir {
        fn drop(&mut self) {
            if let Some(p) = self.pipe.take() {
                p.put(self.in_pipe == 0);
            }
        }
    }

    impl Dir {
        pub fn poll(
            &mut self,
            cx: &mut Context<'_>,
            src: &TcpStream,
            dst: &TcpStream,
            tally: &Tally<'_>,
        ) -> Poll<io::Result<Outcome>> {
            loop {
                if self.moved {
                    // Bound the burst: a connection that always has data must still let the
                    // worker's other connections run.
                    ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
                    self.moved = false;
                }
                if let Some((rest, sent)) = &mut self.stuck {
                    ready!(dst.poll_write_ready(cx))?;
                    match dst.try_write(&rest[*sent..]) {
                        Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Ok(k) => {
                            tally.add(k);
                            *sent += k;
                            if *sent == rest.len() {
                                self.stuck = None;
                                self.moved = true;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                    continue;
                }
                if self.in_pipe > 0 {
                    // Drain everything before filling again; EAGAIN here means "socket full".
                    // Readiness through the socket's own waker slot (one reader and one writer
                    // per socket here), not a `writable()` future with its waiter node.
                    ready!(dst.poll_write_ready(cx))?;
                    let Some(pipe) = self.pipe.as_ref() else {
                        return Poll::Ready(Err(io::Error::other("bytes counted in no pipe")));
                    };
                    let left = self.in_pipe;
                    match dst.try_io(Interest::WRITABLE, || pipe.drain_to(dst.as_raw_fd(), left)) {
                        Ok(m) => {
                            self.in_pipe -= m;
                            tally.add(m);
                            if self.in_pipe == 0 {
                                // Give the pipe back once it is empty (haproxy does the same):
                                // an idle connection holds no pipe, so pipes (two fds and up to
                                // PIPE_SIZE of kernel memory each) scale with transfers in
                                // flight, not with open connections.
                                if let Some(p) = self.pipe.take() {
                                    p.put(true);
                                }
                                self.moved = true;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                    continue;
                }
                ready!(src.poll_read_ready(cx))?;
                if !self.bulk {
                    match small_burst(src, dst, tally)? {
                        Small::Empty => {}
                        Small::Eof => {
                            tally.end(dst)?;
                            return Poll::Ready(Ok(Outcome::Done));
                        }
                        Small::Moved { full } => {
                            self.bulk = full;
                            self.moved = true;
                        }
                        Small::Backlog(pipe, left) => {
                            self.pipe = Some(pipe);
                            self.in_pipe = left;
                        }
                        Small::Stuck(rest) => self.stuck = Some((rest, 0)),
                    }
                    continue;
                }
                // Take a pipe only now that there is something to move.
                let Ok(pipe) = Pipe::get() else {
                    // Out of fds for a pipe: the buffered copy still works with the sockets we
                    // have, and nothing is in a pipe, so switching loses nothing.
                    return Poll::Ready(Ok(Outcome::Unsupported));
                };
                // The pipe is empty, so EAGAIN from the fill can only mean "socket empty"
                // (haproxy: EAGAIN is ambiguous between socket empty and pipe full otherwise).
                let filled = src.try_io(Interest::READABLE, || {
                    pipe.fill_from(src.as_raw_fd(), PIPE_SIZE)
                });
                match filled {
                    Ok(0) => {
                        pipe.put(true);
                        tally.end(dst)?;
                        return Poll::Ready(Ok(Outcome::Done));
                    }
                    Ok(n) => {
                        self.bulk = n >= SMALL;
                        self.pipe = Some(pipe);
                        self.in_pipe = n;
                    }
                    Err(e) => {
                        pipe.put(true);
                        // splice(2) refusing this pair of fds: the pipe is empty, so the
                        // buffered copy can take over from here without losing a byte.
                        if unsupported(&e) {
                            return Poll::Ready(Ok(Outcome::Unsupported));
                        }
                        if e.kind() != io::ErrorKind::WouldBlock {
                            return Poll::Ready(Err(e));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
