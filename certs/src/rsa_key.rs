//! RSA keys: generated with the `rsa` crate (ring cannot generate them), handed to rcgen as
//! PKCS#8 so that ring does all the signing. Also turns a PKCS#1 key (`RSA PRIVATE KEY`, what
//! OpenSSL 1.1's `genrsa` writes) into the PKCS#8 that ring loads.

use rcgen::KeyPair;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::{CertError, KeyType};

/// A new RSA key of `bits` with public exponent 65537, signing with SHA-256.
pub(crate) fn generate(key_type: KeyType, bits: usize) -> Result<KeyPair, CertError> {
    let failed = |reason: String| CertError::RsaKey {
        context: format!("generate a {key_type} key"),
        reason,
    };
    let key =
        rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits).map_err(|e| failed(e.to_string()))?;
    let pkcs8 = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
    KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|source| CertError::KeyGeneration { key_type, source })
}

/// The PKCS#8 encoding of a PKCS#1 RSA private key.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Result<PrivatePkcs8KeyDer<'static>, CertError> {
    let failed = |reason: String| CertError::RsaKey {
        context: "read the RSA PRIVATE KEY (PKCS#1)".to_owned(),
        reason,
    };
    let key = rsa::RsaPrivateKey::from_pkcs1_der(pkcs1).map_err(|e| failed(e.to_string()))?;
    let pkcs8 = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
    Ok(PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()))
}
