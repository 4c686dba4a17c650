//! SPIFFE IDs: Istio's `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` form,
//! validated before it goes into a certificate and read back out of one.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::CertError;

const SCHEME: &str = "spiffe://";

/// The SPIFFE ID Istio gives a workload: `spiffe://<trust_domain>/ns/<namespace>/sa/<sa>`.
/// Istio's default trust domain is `cluster.local`.
pub fn istio_spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// Reads the SPIFFE ID (the first `spiffe://` URI SAN) from a DER certificate. `None` if the
/// certificate does not parse or carries no such SAN.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with(SCHEME) => Some((*uri).to_owned()),
        _ => None,
    })
}

/// Checks `id` against the SPIFFE ID rules (SPIFFE-ID spec §2) that matter for a workload
/// certificate: lowercase trust domain, a non-empty path of non-empty segments, nothing else.
pub(crate) fn validate(id: &str) -> Result<(), CertError> {
    let invalid = |reason| CertError::InvalidSpiffeId {
        id: id.to_owned(),
        reason,
    };
    let rest = id
        .strip_prefix(SCHEME)
        .ok_or_else(|| invalid("it must start with spiffe://"))?;
    let (trust_domain, path) = rest
        .split_once('/')
        .ok_or_else(|| invalid("a workload ID needs a path after the trust domain"))?;
    if trust_domain.is_empty() {
        return Err(invalid("the trust domain is empty"));
    }
    if !trust_domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
    {
        return Err(invalid(
            "the trust domain may only contain lowercase letters, digits, '-', '.' and '_' \
             (no port, user info or uppercase)",
        ));
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err(invalid(
                "the path has an empty segment (\"//\" or a trailing '/')",
            ));
        }
        if segment == "." || segment == ".." {
            return Err(invalid("the path may not contain '.' or '..' segments"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(invalid(
                "path segments may only contain letters, digits, '-', '.' and '_' \
                 (no query, fragment or percent-encoding)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_istio_ids() {
        for id in [
            "spiffe://cluster.local/ns/east/sa/default",
            "spiffe://example.org/ns/my-ns/sa/bookinfo_productpage.v1",
            &istio_spiffe_id("cluster.local", "west", "default"),
        ] {
            validate(id).unwrap();
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for id in [
            "cluster.local/ns/east/sa/default",
            "https://cluster.local/ns/east/sa/default",
            "spiffe://",
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe:///ns/east",
            "spiffe://Cluster.Local/ns/east",
            "spiffe://cluster.local:8080/ns/east",
            "spiffe://cluster.local/ns//sa/default",
            "spiffe://cluster.local/ns/../sa/default",
            "spiffe://cluster.local/ns/east?x=1",
        ] {
            let err = validate(id).unwrap_err();
            assert!(
                matches!(err, CertError::InvalidSpiffeId { .. }),
                "{id}: {err}"
            );
        }
    }

    #[test]
    fn spiffe_id_of_garbage_is_none() {
        assert_eq!(
            spiffe_id(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])),
            None
        );
    }
}
