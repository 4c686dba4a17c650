//! The crate's one error type. Messages name the certificate or file involved and, where there is
//! one, the fix.

use crate::KeyType;

/// Everything that can go wrong issuing, loading or using certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("could not generate a {key_type} key pair: {source}")]
    KeyGeneration {
        key_type: KeyType,
        #[source]
        source: rcgen::Error,
    },

    #[error("could not {context}: {reason}")]
    RsaKey { context: String, reason: String },

    #[error("could not sign the certificate for {subject}: {source}")]
    Signing {
        subject: String,
        #[source]
        source: rcgen::Error,
    },

    #[error("{what} {value:?} cannot be written into a certificate: {source}")]
    InvalidName {
        what: &'static str,
        value: String,
        #[source]
        source: rcgen::Error,
    },

    #[error(
        "invalid SPIFFE ID {id:?}: {reason} \
         (expected spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>)"
    )]
    InvalidSpiffeId { id: String, reason: &'static str },

    #[error(
        "a validity of {days} days starting now ends after the year 9999, \
         which X.509 cannot express; choose fewer days"
    )]
    ValidityOutOfRange { days: u32 },

    #[error(
        "{subject} expired at {not_after}; issue a new one (a new intermediate from the root, \
         or a new root) before issuing from it"
    )]
    IssuerExpired {
        subject: String,
        not_after: time::OffsetDateTime,
    },

    #[error(
        "{subject} has pathlen:0, so it may issue workload certificates but no further CA; \
         issue the intermediate from the root CA instead"
    )]
    PathLenExhausted { subject: String },

    #[error(
        "{namespace:?} is not a valid namespace name: use 1-63 lowercase letters, digits and \
         '-', starting and ending with a letter or digit"
    )]
    InvalidNamespace { namespace: String },

    #[error(
        "no certificate found in the PEM input; expected at least one \
         -----BEGIN CERTIFICATE----- block"
    )]
    NoCertificate,

    #[error(
        "no private key found in the PEM input; expected a PRIVATE KEY, EC PRIVATE KEY \
         or RSA PRIVATE KEY block"
    )]
    NoPrivateKey,

    #[error("malformed PEM while reading {what}: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    #[error("could not parse {what} as an X.509 certificate: {reason}")]
    ParseCertificate { what: String, reason: String },

    #[error(
        "the CA private key could not be loaded ({source}); PKCS#8 keys \
         (-----BEGIN PRIVATE KEY-----) and RSA PKCS#1 keys are supported, convert others with \
         `openssl pkcs8 -topk8 -nocrypt -in ca-key.pem -out ca-key.pk8.pem`"
    )]
    UnsupportedKey {
        #[source]
        source: rcgen::Error,
    },

    #[error(
        "the private key does not belong to the certificate {subject}; \
         each CA certificate must come with its own key"
    )]
    KeyMismatch { subject: String },

    #[error(
        "{subject} is not a CA certificate (no basicConstraints CA:true or no keyCertSign); \
         the chain must start with the CA's own certificate"
    )]
    NotACa { subject: String },

    #[error(
        "the certificate chain is broken: {child} was not issued by {parent}; list the CA's \
         certificate first, then each issuer in order, ending with the root (Istio's cert-chain.pem)"
    )]
    BrokenChain { child: String, parent: String },

    #[error(
        "the certificate chain ends at {subject}, which is not a self-signed root; \
         append the root certificate (root-cert.pem) to the chain"
    )]
    NoRootInChain { subject: String },

    #[error("the root certificate {subject} is not usable as a rustls trust anchor: {source}")]
    TrustAnchor {
        subject: String,
        #[source]
        source: rustls::Error,
    },

    #[error(
        "could not build the verifier for {side} certificates: {source}; \
         is the trust store (root-cert.pem) empty?"
    )]
    Verifier {
        side: &'static str,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },

    #[error("could not build the rustls {side} configuration: {source}")]
    Tls {
        side: &'static str,
        #[source]
        source: rustls::Error,
    },
}
