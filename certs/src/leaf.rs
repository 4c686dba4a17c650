//! A workload certificate with its key and the chain a TLS peer needs to verify it.

use std::fmt;

use rcgen::KeyPair;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::pem::{self, CertPem};

/// A workload (SPIFFE) certificate issued by a [`Ca`](crate::Ca), with its private key.
///
/// The chain is the leaf followed by its intermediates, without the root: what a TLS peer
/// sends (RFC 8446 §4.4.2 lets the root be omitted, since the verifier must already have it)
/// and what Envoy's `cert_chain` holds. The root travels separately, as in Istio, where SDS
/// delivers it as the `ROOTCA` secret.
pub struct Leaf {
    spiffe_id: String,
    key: KeyPair,
    cert: CertPem,
    /// Issuers below the root, nearest first.
    intermediates: Vec<CertPem>,
    root: CertPem,
    roots: RootCertStore,
}

impl Leaf {
    pub(crate) fn new(
        spiffe_id: String,
        key: KeyPair,
        cert: CertPem,
        intermediates: Vec<CertPem>,
        root: CertPem,
        roots: RootCertStore,
    ) -> Leaf {
        Leaf {
            spiffe_id,
            key,
            cert,
            intermediates,
            root,
            roots,
        }
    }

    /// The SPIFFE ID in this certificate's URI SAN.
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// The leaf certificate alone.
    pub fn cert_pem(&self) -> &str {
        &self.cert.pem
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der.clone()
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        pem::encode("PRIVATE KEY", self.key.serialized_der())
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialized_der().to_vec()))
    }

    /// The leaf then its intermediates, no root (see the type's docs).
    pub fn chain_pem(&self) -> String {
        pem::concat(self.chain())
    }

    /// The leaf then its intermediates, no root: what this workload presents in a handshake.
    pub fn cert_chain_der(&self) -> Vec<CertificateDer<'static>> {
        self.chain().map(|c| c.der.clone()).collect()
    }

    /// The root this certificate chains to.
    pub fn root_cert_pem(&self) -> &str {
        &self.root.pem
    }

    pub fn root_cert_der(&self) -> CertificateDer<'static> {
        self.root.der.clone()
    }

    /// A rustls trust store holding this certificate's root: the mesh's trust bundle.
    pub fn root_store(&self) -> RootCertStore {
        self.roots.clone()
    }

    fn chain(&self) -> impl Iterator<Item = &CertPem> {
        std::iter::once(&self.cert).chain(&self.intermediates)
    }
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("spiffe_id", &self.spiffe_id)
            .field("intermediates", &self.intermediates.len())
            .finish_non_exhaustive()
    }
}
