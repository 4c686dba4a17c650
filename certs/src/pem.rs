//! PEM in and out. Reading uses rustls-pki-types' `PemObject` (the successor of the retired
//! rustls-pemfile); writing uses the `pem` crate, always with `\n` line endings so that the
//! files we write are byte-identical on every platform.

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

/// Every certificate in `pem`, in order. Other PEM sections (keys, CRLs) are skipped.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CertError::Pem {
            what: "certificates",
            source,
        })?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key in `pem`: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1
/// (`RSA PRIVATE KEY`).
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|source| match source {
        pem::Error::NoItemsFound => CertError::NoPrivateKey,
        source => CertError::Pem {
            what: "a private key",
            source,
        },
    })
}

/// A certificate in both encodings, so neither is recomputed on every call.
#[derive(Clone, Debug)]
pub(crate) struct CertPem {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) pem: String,
}

impl CertPem {
    pub(crate) fn from_der(der: CertificateDer<'static>) -> CertPem {
        let pem = encode("CERTIFICATE", &der);
        CertPem { der, pem }
    }
}

/// Concatenated PEM of `certs`, in order.
pub(crate) fn concat<'a>(certs: impl IntoIterator<Item = &'a CertPem>) -> String {
    certs.into_iter().map(|c| c.pem.as_str()).collect()
}

pub(crate) fn encode(tag: &str, der: &[u8]) -> String {
    ::pem::encode_config(
        &::pem::Pem::new(tag, der),
        ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF),
    )
}
