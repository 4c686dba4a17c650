//! The pure ClientHello parser: given the bytes peeked so far, say "found (SNI, ALPN, wire
//! length)", "refused (why)" or "need more bytes". No sockets, no state: the caller re-parses
//! from byte 0 whenever more bytes are in view. Record framing, reassembly and the
//! fixed fields of the hello body are ours; `tls-parser` decodes the extension headers. A
//! hello in one record is decoded in place with no heap allocation; only a hello fragmented
//! over several records is copied once, into one buffer.

use std::fmt;

use tls_parser::{TlsExtension, TlsExtensionType, parse_tls_extension_unknown};

/// Longest host name we accept in SNI (DNS limit).
pub const MAX_HOST_LEN: usize = 253;
/// Longest DNS label (RFC 1035 section 2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// TLS record header: content type (1), legacy version (2), length (2). RFC 8446 section 5.1.
const RECORD_HEADER_LEN: usize = 5;
/// Offset of the record length field inside the record header.
const RECORD_LEN_OFFSET: usize = 3;
/// Content type of handshake records.
const CONTENT_TYPE_HANDSHAKE: u8 = 0x16;
/// Every TLS/SSLv3 record version is 3.x; SSLv2-style hellos fail the content type check first.
const RECORD_VERSION_MAJOR: u8 = 3;
/// "The length MUST NOT exceed 2^14 bytes" (RFC 8446 section 5.1).
const MAX_RECORD_PAYLOAD: usize = 1 << 14;
/// Most records a ClientHello may span. Real clients use one, or a few once a hello passes
/// 16 KiB; tiny records only serve to make the caller re-walk them on every peek (this parser
/// is stateless), which at the 64 KiB cap in 1-byte records costs ~57 µs per call. 1,024
/// records keeps the worst case near a millisecond per connection and still admits any hello
/// split into records of 64 bytes or more.
const MAX_RECORDS: usize = 1024;
/// Handshake message header: type (1), length (3).
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Handshake type of a ClientHello.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// One bit per possible extension type, to refuse duplicates (RFC 8446 section 4.2) in O(n):
/// 8 KiB on the stack for the one call per connection that gets this far, and no heap.
const EXTENSION_TYPE_WORDS: usize = (u16::MAX as usize + 1) / 64;

/// A lower-cased ASCII host name held inline (no heap), at most [`MAX_HOST_LEN`] bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HostName {
    len: u8,
    /// `buf[..len]` is the name; the rest stays zero so the derived `Eq` is by name.
    buf: [u8; MAX_HOST_LEN],
}

impl HostName {
    /// Validates `name` exactly as the parser validates an SNI, and lower-cases it.
    pub fn new(name: &str) -> Option<HostName> {
        host_name(name.as_bytes()).ok()
    }

    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..usize::from(self.len)).unwrap_or_default();
        std::str::from_utf8(bytes).expect("HostName holds only ASCII checked by host_name()")
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// ALPN protocols offered by the client that matter to Istio (a small bit set).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Alpn(u8);

impl Alpn {
    pub const ISTIO: Alpn = Alpn(1 << 0);
    pub const ISTIO_PEER_EXCHANGE: Alpn = Alpn(1 << 1);
    pub const ISTIO_HTTP10: Alpn = Alpn(1 << 2);
    pub const ISTIO_HTTP11: Alpn = Alpn(1 << 3);
    pub const ISTIO_H2: Alpn = Alpn(1 << 4);

    /// Whether every protocol in `other` is offered.
    pub fn contains(self, other: Alpn) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any Istio protocol is offered (the client is a mesh sidecar).
    pub fn any_istio(self) -> bool {
        self.0 != 0
    }

    fn from_protocol(name: &[u8]) -> Alpn {
        match name {
            b"istio" => Alpn::ISTIO,
            b"istio-peer-exchange" => Alpn::ISTIO_PEER_EXCHANGE,
            b"istio-http/1.0" => Alpn::ISTIO_HTTP10,
            b"istio-http/1.1" => Alpn::ISTIO_HTTP11,
            b"istio-h2" => Alpn::ISTIO_H2,
            _ => Alpn::default(),
        }
    }
}

impl std::ops::BitOr for Alpn {
    type Output = Alpn;
    fn bitor(self, other: Alpn) -> Alpn {
        Alpn(self.0 | other.0)
    }
}

/// What a complete ClientHello told us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello {
    pub sni: HostName,
    pub alpn: Alpn,
    /// Bytes from the first record header to the end of the last record holding the hello.
    pub wire_len: usize,
}

/// Why a connection's first bytes are refused. Closed set: becomes a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("the first bytes are not a TLS handshake record")]
    NotTls,
    #[error("the first handshake message is not a ClientHello")]
    NotClientHello,
    #[error("the ClientHello is larger than the configured maximum")]
    TooLarge,
    #[error("the ClientHello is malformed")]
    Malformed,
    #[error("the ClientHello has no server_name (SNI)")]
    NoSni,
    #[error("the SNI is not a valid host name")]
    BadSni,
}

/// More bytes are needed before anything can be decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incomplete;

/// Parses the ClientHello at the start of `buf` (TLS records as they came off the wire).
/// `Ok(Ok(hello))` found; `Ok(Err(e))` refused; `Err(Incomplete)` need more bytes.
/// `max_len` bounds the whole hello on the wire (record headers included); a hello that cannot
/// complete within it is refused as soon as that is known, not after buffering it.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Result<ClientHello, HelloError>, Incomplete> {
    Ok(match frame(buf, max_len)? {
        Ok(framed) => hello(buf, &framed),
        Err(e) => Err(e),
    })
}

fn hello(buf: &[u8], framed: &Framed) -> Result<ClientHello, HelloError> {
    let (sni, alpn) = if framed.records == 1 {
        // The common case: one record, decoded in place.
        let message = buf.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + framed.message_len);
        decode(message.ok_or(HelloError::Malformed)?)?
    } else {
        // Fragmented hellos are rare (a > 16 KiB hello, or an odd client). The copy happens once
        // per connection, only when every record is in view, and is bounded by `buf`; a stack
        // buffer big enough for any allowed `max_len` would cost far more on every call.
        let mut message = Vec::with_capacity(framed.message_len);
        let mut pos = 0;
        for _ in 0..framed.records {
            let len = record_len(buf, pos).ok_or(HelloError::Malformed)?;
            let payload = buf.get(pos + RECORD_HEADER_LEN..pos + RECORD_HEADER_LEN + len);
            message.extend_from_slice(payload.ok_or(HelloError::Malformed)?);
            pos += RECORD_HEADER_LEN + len;
        }
        decode(&message)?
    };
    let wire_len = framed.wire_len;
    Ok(ClientHello {
        sni,
        alpn,
        wire_len,
    })
}

/// Where the hello lies on the wire, once all its records are in view.
struct Framed {
    records: usize,
    /// Handshake header plus body.
    message_len: usize,
    wire_len: usize,
}

fn record_len(buf: &[u8], pos: usize) -> Option<usize> {
    let at = pos + RECORD_LEN_OFFSET;
    Some(usize::from(u16::from_be_bytes(
        buf.get(at..at + 2)?.try_into().ok()?,
    )))
}

/// How many bytes must be in view before [`parse`] can say anything new about `buf`: the end of
/// the record being received, or, between records, the end of the next record header. The
/// socket side waits for that many (`SO_RCVLOWAT`) instead of waking for every segment.
pub fn next_boundary(buf: &[u8]) -> usize {
    let mut pos = 0;
    while let Some(len) = record_len(buf, pos) {
        let end = pos + RECORD_HEADER_LEN + len;
        if end > buf.len() {
            return end;
        }
        pos = end;
    }
    pos + RECORD_HEADER_LEN
}

/// Walks the handshake records at the start of `buf`, deciding as early as the bytes allow.
fn frame(buf: &[u8], max_len: usize) -> Result<Result<Framed, HelloError>, Incomplete> {
    let mut pos = 0; // start of the current record
    let mut reassembled = 0; // handshake bytes in the records before `pos`
    let mut header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut header_seen = 0;
    let mut records = 0;
    loop {
        records += 1;
        if records > MAX_RECORDS {
            return Ok(Err(HelloError::Malformed));
        }
        let record = buf.get(pos..).unwrap_or_default();
        let content_type = *record.first().ok_or(Incomplete)?;
        if content_type != CONTENT_TYPE_HANDSHAKE
            || *record.get(1).ok_or(Incomplete)? != RECORD_VERSION_MAJOR
        {
            // Wrong in the first record header: not TLS at all; in a later one: malformed.
            return Ok(Err(if pos == 0 {
                HelloError::NotTls
            } else {
                HelloError::Malformed
            }));
        }
        let len = record_len(buf, pos).ok_or(Incomplete)?;
        if len == 0 || len > MAX_RECORD_PAYLOAD {
            // RFC 8446 section 5.1: no zero-length handshake fragments, none over 2^14.
            return Ok(Err(HelloError::Malformed));
        }
        let record_end = pos + RECORD_HEADER_LEN + len;
        let payload = record.get(RECORD_HEADER_LEN..).unwrap_or_default();
        let payload = payload.get(..len).unwrap_or(payload);
        for &byte in payload.iter().take(HANDSHAKE_HEADER_LEN - header_seen) {
            if header_seen == 0 && byte != HANDSHAKE_CLIENT_HELLO {
                return Ok(Err(HelloError::NotClientHello));
            }
            header[header_seen] = byte;
            header_seen += 1;
        }
        let carried = reassembled + len;
        let message_len = (header_seen == HANDSHAKE_HEADER_LEN).then(|| {
            HANDSHAKE_HEADER_LEN
                + (usize::from(header[1]) << 16 | usize::from(header[2]) << 8)
                + usize::from(header[3])
        });
        // The least the hello can take on the wire: any bytes still missing after this record
        // need more records of at most MAX_RECORD_PAYLOAD, each with its own header.
        let min_wire_len = match message_len {
            Some(message_len) if message_len > carried => {
                let missing = message_len - carried;
                record_end + missing + RECORD_HEADER_LEN * missing.div_ceil(MAX_RECORD_PAYLOAD)
            }
            _ => record_end,
        };
        if min_wire_len > max_len {
            return Ok(Err(HelloError::TooLarge));
        }
        if let Some(message_len) = message_len
            && message_len < carried
        {
            // A client sends nothing after its hello until the server answers, and in TLS 1.3
            // the hello must end on a record boundary (RFC 8446 section 5.1).
            return Ok(Err(HelloError::Malformed));
        }
        if buf.len() < record_end {
            return Err(Incomplete);
        }
        if message_len == Some(carried) {
            let (message_len, wire_len) = (carried, record_end);
            return Ok(Ok(Framed {
                records,
                message_len,
                wire_len,
            }));
        }
        reassembled = carried;
        pos = record_end;
    }
}

/// Legacy version (2) and random (32) open every ClientHello body (RFC 8446 section 4.1.2).
const VERSION_AND_RANDOM_LEN: usize = 2 + 32;
/// `legacy_session_id<0..32>`.
const MAX_SESSION_ID_LEN: usize = 32;
/// `NameType` of a host name entry in server_name (RFC 6066 section 3).
const SNI_HOST_NAME: u8 = 0;

/// Reads the length-prefixed fields of a handshake body in place. tls-parser's ClientHello
/// parser collects the cipher suites, compression methods and name lists into `Vec`s: three
/// heap allocations per connection for lists we never read. Walking the fixed layout here
/// keeps a connection allocation-free (`tests/alloc.rs`); tls-parser still decodes the
/// extension headers.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(HelloError::Malformed)?;
        self.0 = rest;
        Ok(head)
    }

    /// An opaque vector with a one-byte length (`opaque x<0..2^8-1>`).
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let len = self.take(1)?.first().copied().unwrap_or_default();
        self.take(usize::from(len))
    }

    /// An opaque vector with a two-byte length (`opaque x<0..2^16-1>`).
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let len = self.take(2)?;
        let len = len.iter().fold(0usize, |n, &b| n << 8 | usize::from(b));
        self.take(len)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decodes one whole ClientHello handshake message (header included) into SNI and ALPN.
fn decode(message: &[u8]) -> Result<(HostName, Alpn), HelloError> {
    let body = message
        .get(HANDSHAKE_HEADER_LEN..)
        .ok_or(HelloError::Malformed)?;
    let mut hello = Cursor(body);
    hello.take(VERSION_AND_RANDOM_LEN)?;
    if hello.vec8()?.len() > MAX_SESSION_ID_LEN {
        return Err(HelloError::Malformed);
    }
    if hello.vec16()?.len() % 2 != 0 {
        // Cipher suites are two bytes each.
        return Err(HelloError::Malformed);
    }
    hello.vec8()?; // compression methods
    if hello.is_empty() {
        // A hello without extensions (TLS 1.0 style) cannot name a server.
        return Err(HelloError::NoSni);
    }
    let mut extensions = hello.vec16()?;
    if !hello.is_empty() {
        return Err(HelloError::Malformed);
    }
    let mut seen = [0u64; EXTENSION_TYPE_WORDS];
    let mut sni = None;
    let mut alpn = Alpn::default();
    while !extensions.is_empty() {
        // Only the header is decoded here: no allocation for the extensions we do not read.
        let (rest, extension) =
            parse_tls_extension_unknown(extensions).map_err(|_| HelloError::Malformed)?;
        extensions = rest;
        let TlsExtension::Unknown(TlsExtensionType(kind), data) = extension else {
            return Err(HelloError::Malformed);
        };
        let (word, bit) = (usize::from(kind) / 64, 1u64 << (kind % 64));
        let slot = seen.get_mut(word).ok_or(HelloError::Malformed)?;
        if *slot & bit != 0 {
            return Err(HelloError::Malformed);
        }
        *slot |= bit;
        match TlsExtensionType(kind) {
            TlsExtensionType::ServerName => sni = Some(server_name(data)?),
            TlsExtensionType::ApplicationLayerProtocolNegotiation => alpn = protocols(data)?,
            _ => {}
        }
    }
    Ok((sni.ok_or(HelloError::NoSni)?, alpn))
}

/// A length-prefixed list that must fill `data` exactly: trailing bytes after the list are
/// malformed (some parsers, tls-parser included, ignore them).
fn whole_list(data: &[u8]) -> Result<Cursor<'_>, HelloError> {
    let mut outer = Cursor(data);
    let list = outer.vec16()?;
    if !outer.is_empty() {
        return Err(HelloError::Malformed);
    }
    Ok(Cursor(list))
}

/// The one host_name of a server_name extension (RFC 6066 section 3).
fn server_name(data: &[u8]) -> Result<HostName, HelloError> {
    let mut entries = whole_list(data)?;
    let mut host = None;
    while !entries.is_empty() {
        let kind = entries.take(1)?;
        let name = entries.vec16()?;
        if kind == [SNI_HOST_NAME] && host.replace(name).is_some() {
            // "The ServerNameList MUST NOT contain more than one name of the same name_type."
            return Err(HelloError::Malformed);
        }
    }
    host_name(host.ok_or(HelloError::Malformed)?)
}

/// The Istio protocols among the ALPN protocol names (RFC 7301 section 3.1).
fn protocols(data: &[u8]) -> Result<Alpn, HelloError> {
    let mut names = whole_list(data)?;
    let mut alpn = Alpn::default();
    while !names.is_empty() {
        alpn = alpn | Alpn::from_protocol(names.vec8()?);
    }
    Ok(alpn)
}

/// Validates and lower-cases a host name: ASCII letters, digits, '-' and '_' (Istio SNIs such
/// as `outbound_.8080_._.west.west.svc.cluster.local`), non-empty labels of at most 63 bytes,
/// at most 253 bytes without the one trailing dot it may carry, and not an IP literal.
fn host_name(name: &[u8]) -> Result<HostName, HelloError> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return Err(HelloError::BadSni);
    }
    let mut buf = [0u8; MAX_HOST_LEN];
    let mut last_label_numeric = true;
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(HelloError::BadSni);
        }
        let valid = |&b: &u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if !label.iter().all(valid) {
            // Also refuses IPv6 literals (':'), non-ASCII and control bytes.
            return Err(HelloError::BadSni);
        }
        last_label_numeric = label.iter().all(u8::is_ascii_digit);
    }
    if last_label_numeric {
        // An IPv4 literal, or a name that resolvers and URL parsers would read as one
        // (no top-level domain is all digits, RFC 3696 section 2).
        return Err(HelloError::BadSni);
    }
    for (to, from) in buf.iter_mut().zip(name) {
        *to = from.to_ascii_lowercase();
    }
    let len = u8::try_from(name.len()).map_err(|_| HelloError::BadSni)?;
    Ok(HostName { len, buf })
}

#[cfg(test)]
pub(crate) mod tests;
