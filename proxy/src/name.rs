//! Naming: what an SNI asks for. An Istio SNI `outbound_.<port>_.<subset>_.<host>` names a
//! service port (and subset) directly, as istiod's `BuildDNSSrvSubsetKey` writes it and its
//! `ParseSubsetKey` reads it; any other name is a plain DNS name, routed to the listener's
//! target port (TLS `PASSTHROUGH` style).

/// The SNI prefix of Istio's outbound cluster names in their DNS (SNI) form.
pub const ISTIO_OUTBOUND_PREFIX: &str = "outbound_.";
/// Istio's separator in the DNS form of a cluster name.
const SEP: &str = "_.";

/// The service port an SNI asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    /// Istio subset; empty for the whole service.
    pub subset: &'a str,
    /// Whether the SNI was an Istio cluster name (rather than a plain DNS name).
    pub istio: bool,
}

/// Why an SNI that looks like an Istio cluster name is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "Istio SNI has no port, subset and host parts (want outbound_.<port>_.<subset>_.<host>)"
    )]
    MissingParts,
    #[error("Istio SNI port is not a number from 1 to 65535")]
    BadPort,
    #[error("Istio SNI host is empty")]
    EmptyHost,
    #[error("Istio SNI host still contains the `_.` separator")]
    SeparatorInHost,
}

/// Resolves a (lower-case) SNI into the service port it asks for.
pub fn resolve(sni: &str, target_port: u16) -> Result<Target<'_>, NameError> {
    let Some(rest) = sni.strip_prefix(ISTIO_OUTBOUND_PREFIX) else {
        return Ok(Target {
            host: sni,
            port: target_port,
            subset: "",
            istio: false,
        });
    };
    let (port, rest) = rest.split_once(SEP).ok_or(NameError::MissingParts)?;
    let (subset, host) = rest.split_once(SEP).ok_or(NameError::MissingParts)?;
    let port = parse_port(port).ok_or(NameError::BadPort)?;
    if host.is_empty() {
        return Err(NameError::EmptyHost);
    }
    if host.contains(SEP) {
        return Err(NameError::SeparatorInHost);
    }
    Ok(Target {
        host,
        port,
        subset,
        istio: true,
    })
}

/// Digits only (no sign, no spaces), 1..=65535.
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Some(p as u16),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_names() {
        let t = resolve("outbound_.8080_._.west.west.svc.cluster.local", 443).unwrap();
        assert_eq!(
            t,
            Target {
                host: "west.west.svc.cluster.local",
                port: 8080,
                subset: "",
                istio: true
            }
        );
        let t = resolve("outbound_.9080_.v1_.reviews.default.svc.cluster.local", 443).unwrap();
        assert_eq!((t.port, t.subset), (9080, "v1"));
        assert_eq!(t.host, "reviews.default.svc.cluster.local");
    }

    #[test]
    fn plain_dns_names_use_the_target_port() {
        let t = resolve("west.west.svc.cluster.local", 8443).unwrap();
        assert_eq!(
            (t.host, t.port, t.subset, t.istio),
            ("west.west.svc.cluster.local", 8443, "", false)
        );
    }

    #[test]
    fn bad_istio_names() {
        for (sni, err) in [
            ("outbound_.0_._.a.local", NameError::BadPort),
            ("outbound_.65536_._.a.local", NameError::BadPort),
            ("outbound_.http_._.a.local", NameError::BadPort),
            ("outbound_.+80_._.a.local", NameError::BadPort),
            ("outbound_._._.a.local", NameError::BadPort),
            ("outbound_.8080_._.", NameError::EmptyHost),
            ("outbound_.8080", NameError::MissingParts),
            ("outbound_.8080_.v1", NameError::MissingParts),
            ("outbound_.8080_.v1_.a_.b.local", NameError::SeparatorInHost),
        ] {
            assert_eq!(resolve(sni, 443), Err(err), "{sni}");
        }
    }
}
