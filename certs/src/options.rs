//! What a new certificate is made of besides its names: the key algorithm and how long it lives.
//! The defaults follow Istio's `tools/certs/common.mk`, so our CAs look like the ones operators
//! already make with `Makefile.selfsigned.mk`.

use std::fmt;

use rcgen::{KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

use crate::{CertError, rsa_key};

/// The key algorithm of a newly generated key.
///
/// Loaded keys ([`Ca::from_pem`](crate::Ca::from_pem)) may be anything `ring` can sign with
/// (ECDSA P-256/P-384, Ed25519, RSA 2048-4096 in PKCS#8 or PKCS#1); this only chooses what we
/// *generate*. RSA keys sign with SHA-256 (`sha256WithRSAEncryption`), as Istio's Makefile does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 signatures: small, fast, accepted by Envoy, ztunnel and istiod.
    #[default]
    EcdsaP256,
    /// RSA, 2048-bit modulus: istiod's default for the workload certificates it issues.
    Rsa2048,
    /// RSA, 4096-bit modulus: Istio's `ROOTCA_KEYSZ` and `INTERMEDIATE_KEYSZ`. Generating one
    /// takes about a second (0.7-3.5 s seen in a release build here).
    Rsa4096,
}

impl KeyType {
    /// Every key type, in the order `--help` lists them.
    pub const ALL: [KeyType; 3] = [KeyType::EcdsaP256, KeyType::Rsa2048, KeyType::Rsa4096];

    /// The command-line spelling: `ecdsa-p256`, `rsa-2048`, `rsa-4096`.
    pub const fn name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    pub(crate) fn generate(self) -> Result<KeyPair, CertError> {
        match self {
            KeyType::EcdsaP256 => {
                KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
                    CertError::KeyGeneration {
                        key_type: self,
                        source,
                    }
                })
            }
            KeyType::Rsa2048 => rsa_key::generate(self, 2048),
            KeyType::Rsa4096 => rsa_key::generate(self, 4096),
        }
    }

    /// Key usages of a workload certificate. keyEncipherment only means something for RSA key
    /// transport (RFC 5480 forbids it on ECDSA keys), so an ECDSA leaf gets digitalSignature only;
    /// an RSA leaf gets both, like the ones istiod issues.
    pub(crate) fn leaf_key_usages(self) -> Vec<KeyUsagePurpose> {
        match self {
            KeyType::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
            KeyType::Rsa2048 | KeyType::Rsa4096 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::EcdsaP256 => "ECDSA P-256",
            KeyType::Rsa2048 => "RSA 2048",
            KeyType::Rsa4096 => "RSA 4096",
        })
    }
}

impl std::str::FromStr for KeyType {
    type Err = String;

    /// Parses [`KeyType::name`].
    fn from_str(s: &str) -> Result<KeyType, String> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = KeyType::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown key type {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// How long a certificate is valid, in whole days from the moment it is issued.
///
/// `notBefore` is set [`Validity::BACKDATE`] in the past so that a peer whose clock runs a
/// little behind ours (another cluster, another host) does not reject a certificate issued a
/// moment ago. A child's `notAfter` is capped at its issuer's: a certificate that outlives
/// its CA would only fail later and more confusingly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Validity {
    pub days: u32,
}

impl Validity {
    /// Root CA: 10 years (Istio `ROOTCA_DAYS`).
    pub const ROOT: Validity = Validity { days: 3650 };
    /// Per-cluster intermediate CA: 2 years (Istio `INTERMEDIATE_DAYS`).
    pub const INTERMEDIATE: Validity = Validity { days: 730 };
    /// Workload certificate: 1 day, like istiod's default workload certificate TTL (24h) and
    /// Istio `WORKLOAD_DAYS`.
    pub const WORKLOAD: Validity = Validity { days: 1 };
    /// How far `notBefore` lies in the past, to absorb clock skew between clusters.
    pub const BACKDATE: Duration = Duration::minutes(5);

    pub const fn days(days: u32) -> Validity {
        Validity { days }
    }

    /// `(notBefore, notAfter)` for a certificate issued now by `issuer` (subject, `notAfter`),
    /// capped at the issuer's `notAfter`; `None` for a self-signed root.
    pub(crate) fn window(
        self,
        issuer: Option<(&str, OffsetDateTime)>,
    ) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
        let now = OffsetDateTime::now_utc();
        let out_of_range = CertError::ValidityOutOfRange { days: self.days };
        let not_after = now
            .checked_add(Duration::days(i64::from(self.days)))
            .filter(|t| t.year() <= 9999)
            .ok_or(out_of_range)?;
        let not_after = match issuer {
            Some((subject, cap)) if cap <= now => {
                return Err(CertError::IssuerExpired {
                    subject: subject.to_owned(),
                    not_after: cap,
                });
            }
            Some((_, cap)) if cap < not_after => cap,
            _ => not_after,
        };
        Ok((now - Validity::BACKDATE, not_after))
    }
}

/// Key algorithm and lifetime for one certificate. [`CertOptions::ROOT`],
/// [`CertOptions::INTERMEDIATE`] and [`CertOptions::WORKLOAD`] are what the plain constructors
/// ([`Ca::new_root`](crate::Ca::new_root), [`Ca::intermediate`](crate::Ca::intermediate),
/// [`Ca::workload`](crate::Ca::workload)) use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CertOptions {
    pub key_type: KeyType,
    pub validity: Validity,
}

impl CertOptions {
    pub const ROOT: CertOptions = CertOptions::new(Validity::ROOT);
    pub const INTERMEDIATE: CertOptions = CertOptions::new(Validity::INTERMEDIATE);
    pub const WORKLOAD: CertOptions = CertOptions::new(Validity::WORKLOAD);

    const fn new(validity: Validity) -> CertOptions {
        CertOptions {
            key_type: KeyType::EcdsaP256,
            validity,
        }
    }

    /// The same options with another key type.
    pub const fn with_key_type(self, key_type: KeyType) -> CertOptions {
        CertOptions { key_type, ..self }
    }

    /// The same options with another lifetime.
    pub const fn with_validity(self, validity: Validity) -> CertOptions {
        CertOptions { validity, ..self }
    }
}
