//! rustls configurations for mesh-style mutual TLS, as two sidecars speak it through an
//! east-west gateway. Both pin the `ring` provider instead of relying on a process-wide
//! default, so they work in any binary or test regardless of what else installed one.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{CertError, Leaf};

/// A server that presents `leaf` and requires every client to present a certificate chaining
/// to `roots`, as a sidecar's inbound listener does. ALPN is left empty; set
/// `alpn_protocols` on the result if needed.
pub fn server_config(leaf: &Leaf, roots: RootCertStore) -> Result<ServerConfig, CertError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|source| CertError::Verifier {
            side: "client",
            source,
        })?;
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error("server"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(leaf.cert_chain_der(), leaf.key_der())
        .map_err(tls_error("server"))
}

/// A client that presents `leaf`, offers `alpn`, and accepts only a server whose certificate
/// chains to `roots` and is valid for `expected_server` — whatever SNI the connection uses.
///
/// Through an east-west gateway a sidecar sends the SNI that names the Istio cluster
/// (`outbound_.8080_._.west.west.svc.cluster.local`) so that the gateway, which never
/// terminates TLS, can route on it. No server certificate carries that name, so rustls'
/// ordinary check of the certificate against the SNI would always fail. Like a sidecar, which
/// checks the peer against the identity it expects for the service rather than against the
/// SNI, this client checks the server's chain with webpki as usual but against
/// `expected_server` (e.g. the DNS name `west.west.svc.cluster.local`, which the server's
/// leaf must carry as a DNS SAN).
pub fn client_config(
    leaf: &Leaf,
    roots: RootCertStore,
    alpn: &[&[u8]],
    expected_server: ServerName<'static>,
) -> Result<ClientConfig, CertError> {
    let provider = provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|source| CertError::Verifier {
            side: "server",
            source,
        })?;
    let verifier = Arc::new(ExpectedServerVerifier {
        webpki,
        expected: expected_server,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error("client"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(leaf.cert_chain_der(), leaf.key_der())
        .map_err(tls_error("client"))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// webpki's server verification with the name fixed in advance instead of taken from the SNI
/// (see [`client_config`]). Everything else, signatures included, is webpki's.
#[derive(Debug)]
struct ExpectedServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    expected: ServerName<'static>,
}

impl ServerCertVerifier for ExpectedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(side: &'static str) -> impl FnOnce(rustls::Error) -> CertError {
    move |source| CertError::Tls { side, source }
}
