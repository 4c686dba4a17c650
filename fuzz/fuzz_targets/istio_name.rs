//! SNI validation and Istio name parsing on arbitrary bytes: neither may panic; a name that
//! validates stays within the limits the gateway relies on, and an Istio target rebuilt in
//! istiod's form (`BuildDNSSrvSubsetKey`) parses back to the same target.
#![no_main]

use eastwest_proxy::name::resolve;
use eastwest_proxy::sni::{HostName, MAX_HOST_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(name) = HostName::new(text) else {
        return;
    };
    let sni = name.as_str();
    assert!(!sni.is_empty() && sni.len() <= MAX_HOST_LEN);
    assert!(sni.bytes().all(|b| !b.is_ascii_uppercase()));
    if let Ok(t) = resolve(sni, 443) {
        if t.istio {
            assert!(t.port >= 1 && !t.host.is_empty() && !t.host.contains("_."));
            let rebuilt = format!("outbound_.{}_.{}_.{}", t.port, t.subset, t.host);
            assert_eq!(resolve(&rebuilt, 443), Ok(t));
        } else {
            assert_eq!((t.host, t.port), (sni, 443));
        }
    }
});
