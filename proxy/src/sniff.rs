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
    /// More bytes are needed; this many are in view.
    More(usize),
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
    loop {
        let ready = stream
            .ready(Interest::READABLE)
            .await
            .map_err(|_| Reason::SniffEof)?;
        match stream.try_io(Interest::READABLE, || peek_and_parse(stream, max_len, seen)) {
            Ok(Step::Found(hello)) => return Ok(hello),
            Ok(Step::Refused(reason)) => return Err(reason),
            Ok(Step::More(n)) => seen = n,
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

fn peek_and_parse(stream: &TcpStream, max_len: usize, seen: usize) -> io::Result<Step> {
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
            Err(sni::Incomplete) => Step::More(n),
        })
    })
}

#[cfg(test)]
mod tests;
