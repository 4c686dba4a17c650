//! Sniffing: waits, without consuming anything, until the client's first bytes hold a complete
//! ClientHello (or prove they never will), bounded by a byte cap and a timeout.
//!
//! tokio's readiness stays set while bytes are queued, so peeking in a loop would spin a core
//! while a slow client trickles its hello. Each peek therefore runs inside `try_io` and reports
//! `WouldBlock` when it shows nothing new, which clears readiness until more bytes (or EOF)
//! arrive. Peeks land in one buffer per worker thread: the parser is stateless and re-reads from
//! byte 0, so no connection needs a buffer of its own.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::reason::Reason;
use crate::sni::{self, ClientHello};
use crate::sys;

thread_local! {
    /// This worker's peek buffer, grown once to the configured ClientHello cap.
    static PEEK_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What one peek decided.
#[allow(
    clippy::large_enum_variant,
    reason = "the SNI is held inline so a connection never allocates for it; Step lives on the stack for one call"
)]
enum Step {
    Found(ClientHello),
    Refused(Reason),
    /// More bytes are needed: `.0` are in view, and nothing can be decided before `.1`.
    More(usize, usize),
}

/// Waits for a complete ClientHello on `stream`, at most `max_len` bytes and `timeout` long.
pub async fn sniff(
    stream: &TcpStream,
    max_len: usize,
    timeout: Duration,
) -> Result<ClientHello, Reason> {
    match tokio::time::timeout(timeout, sniff_untimed(stream, max_len)).await {
        Ok(res) => res,
        Err(_) => Err(Reason::SniffTimeout),
    }
}

async fn sniff_untimed(stream: &TcpStream, max_len: usize) -> Result<ClientHello, Reason> {
    let mut seen = 0usize;
    let mut want = 1usize;
    let mut lowat = Lowat::new(stream);
    loop {
        let ready = stream
            .ready(Interest::READABLE)
            .await
            .map_err(|_| Reason::SniffEof)?;
        match stream.try_io(Interest::READABLE, || {
            peek_and_parse(stream, max_len, seen, want)
        }) {
            Ok(Step::Found(hello)) => {
                // Forwarding needs every byte to wake it again.
                lowat.set(1);
                return Ok(hello);
            }
            Ok(Step::Refused(reason)) => return Err(reason),
            Ok(Step::More(n, next)) => {
                seen = n;
                want = next;
                lowat.set(want);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing new. If the client has also closed its side, nothing ever will be.
                if ready.is_read_closed() {
                    return Err(Reason::SniffEof);
                }
            }
            Err(_) => return Err(Reason::SniffEof),
        }
    }
}

fn peek_and_parse(
    stream: &TcpStream,
    max_len: usize,
    seen: usize,
    want: usize,
) -> io::Result<Step> {
    // Under memory pressure the kernel wakes us per segment whatever the low-water mark, so
    // check the queue length (O(1)) before peeking (O(segments)): short of the next record
    // boundary there is nothing new to learn. An empty queue still peeks, to see EOF. The
    // first look peeks at once: nothing has been seen yet, so any byte is news.
    if seen > 0 {
        let queued = sys::bytes_queued(stream.as_raw_fd())?;
        if queued != 0 && queued < want && queued < max_len {
            return Err(io::ErrorKind::WouldBlock.into());
        }
    }
    PEEK_BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < max_len {
            buf.resize(max_len, 0);
        }
        let n = sys::peek(stream.as_raw_fd(), &mut buf[..max_len])?;
        if n == 0 {
            return Ok(Step::Refused(Reason::SniffEof));
        }
        if n == seen {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(match sni::parse(&buf[..n], max_len) {
            Ok(Ok(hello)) => Step::Found(hello),
            Ok(Err(e)) => Step::Refused(e.into()),
            Err(sni::Incomplete) if n >= max_len => Step::Refused(Reason::ClientHelloTooLarge),
            Err(sni::Incomplete) => Step::More(n, sni::next_boundary(&buf[..n]).min(max_len)),
        })
    })
}

/// The socket's receive low-water mark while sniffing. Every wake-up re-peeks the whole queue
/// (the kernel walks every queued segment to copy it), so a client trickling tiny segments would
/// cost CPU quadratic in the hello's size. With `SO_RCVLOWAT` at the end of the record being
/// received, the kernel wakes us once per record instead of once per segment; EOF and errors
/// still wake at once.
struct Lowat<'a> {
    stream: &'a TcpStream,
    current: usize,
}

impl<'a> Lowat<'a> {
    fn new(stream: &'a TcpStream) -> Self {
        Lowat { stream, current: 1 }
    }

    fn set(&mut self, want: usize) {
        let want = want.max(1);
        // A failure only costs extra wake-ups, so it is not an error.
        if want != self.current && sys::set_rcvlowat(self.stream.as_raw_fd(), want).is_ok() {
            self.current = want;
        }
    }
}

#[cfg(test)]
mod tests;
