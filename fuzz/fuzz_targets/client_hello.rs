//! The ClientHello parser on arbitrary bytes: it must not panic, and a hello it finds must lie
//! within the input and be found again from exactly its own bytes.
#![no_main]

use eastwest_proxy::sni::{Incomplete, parse};
use libfuzzer_sys::fuzz_target;

/// The cap the gateway uses by default (rustls caps handshake reassembly at 64 KiB too).
const MAX_LEN: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(Ok(hello)) = parse(data, MAX_LEN) {
        assert!(hello.wire_len <= data.len());
        assert_eq!(parse(&data[..hello.wire_len], MAX_LEN), Ok(Ok(hello)));
        assert_eq!(parse(&data[..hello.wire_len - 1], MAX_LEN), Err(Incomplete));
    }
});
