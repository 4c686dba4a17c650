//! Loading an existing CA from PEM (Istio's `cert-chain.pem` + `ca-key.pem`, or a root's
//! `root-cert.pem` + `root-key.pem`), checking that the pieces belong together first.

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;

use super::{Ca, DEFAULT_ORG, root_store};
use crate::pem::{CertPem, certs_from_pem, key_from_pem};
use crate::{CertError, rsa_key};

impl Ca {
    /// Loads an existing CA, e.g. one made with Istio's `Makefile.selfsigned.mk`.
    ///
    /// `cert_chain_pem` is this CA's certificate followed by its issuers up to and including
    /// the root: Istio's `cert-chain.pem` for an intermediate, `root-cert.pem` for a root.
    /// `key_pem` is the CA's private key, PKCS#8 or (RSA) PKCS#1 (`ca-key.pem`, `root-key.pem`); any algorithm
    /// `ring` signs with works, including the RSA keys Istio's Makefile generates.
    pub fn from_pem(cert_chain_pem: &str, key_pem: &str) -> Result<Ca, CertError> {
        let ders = certs_from_pem(cert_chain_pem)?;
        let parsed = ders
            .iter()
            .enumerate()
            .map(|(i, der)| parse(der, &format!("certificate #{} of the chain", i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        // `certs_from_pem` returns at least one certificate.
        let (Some(own_der), Some(own), Some(top)) = (ders.first(), parsed.first(), parsed.last())
        else {
            return Err(CertError::NoCertificate);
        };
        let subject = own.subject().to_string();

        let constraints = own
            .basic_constraints()
            .ok()
            .flatten()
            .map(|bc| bc.value.clone());
        let key_usage = own.key_usage().ok().flatten().map(|ku| *ku.value);
        let is_ca = constraints.as_ref().is_some_and(|bc| bc.ca);
        if !is_ca || key_usage.is_some_and(|ku| !ku.key_cert_sign()) {
            return Err(CertError::NotACa { subject });
        }
        for pair in parsed.windows(2) {
            let (child, parent) = (&pair[0], &pair[1]);
            if child.issuer().as_raw() != parent.subject().as_raw()
                || child.verify_signature(Some(parent.public_key())).is_err()
            {
                return Err(CertError::BrokenChain {
                    child: child.subject().to_string(),
                    parent: parent.subject().to_string(),
                });
            }
        }
        if top.subject().as_raw() != top.issuer().as_raw() || top.verify_signature(None).is_err() {
            return Err(CertError::NoRootInChain {
                subject: top.subject().to_string(),
            });
        }
        // rcgen re-encodes this subject as the issuer of everything we sign; it keeps string
        // types and order but cannot express multi-valued RDNs or repeated attribute types, and
        // a re-encoded name that differs by one byte would break every chain we issue.
        let mut seen = Vec::new();
        for rdn in own.subject().iter() {
            let mut attrs = rdn.iter();
            let (Some(attr), None) = (attrs.next(), attrs.next()) else {
                return Err(unsupported_name(&subject, "multi-valued or empty RDN"));
            };
            if seen.contains(attr.attr_type()) {
                return Err(unsupported_name(&subject, "a repeated attribute type"));
            }
            seen.push(attr.attr_type().clone());
        }

        let pkcs8 = match key_from_pem(key_pem)? {
            PrivateKeyDer::Pkcs8(pkcs8) => pkcs8,
            PrivateKeyDer::Pkcs1(pkcs1) => rsa_key::pkcs1_to_pkcs8(pkcs1.secret_pkcs1_der())?,
            _ => {
                return Err(CertError::UnsupportedKey {
                    source: rcgen::Error::CouldNotParseKeyPair,
                });
            }
        };
        let key =
            KeyPair::try_from(&pkcs8).map_err(|source| CertError::UnsupportedKey { source })?;
        if key.public_key_raw() != own.public_key().subject_public_key.data.as_ref() {
            return Err(CertError::KeyMismatch { subject });
        }

        let org = own
            .subject()
            .iter_organization()
            .find_map(|o| o.as_str().ok())
            .unwrap_or(DEFAULT_ORG)
            .to_owned();
        let path_len = constraints
            .and_then(|bc| bc.path_len_constraint)
            .map(|n| u8::try_from(n).unwrap_or(u8::MAX));
        let not_after = own.validity().not_after.to_datetime();
        let root_subject = top.subject().to_string();
        let issuer =
            Issuer::from_ca_cert_der(own_der, key).map_err(|e| CertError::ParseCertificate {
                what: subject.clone(),
                reason: e.to_string(),
            })?;

        let mut certs = ders.into_iter().map(CertPem::from_der);
        let Some(cert) = certs.next() else {
            return Err(CertError::NoCertificate);
        };
        let parents: Vec<CertPem> = certs.collect();
        let root = parents.last().unwrap_or(&cert);
        let roots = root_store(root, &root_subject)?;
        Ok(Ca {
            issuer,
            org,
            subject,
            cert,
            parents,
            path_len,
            not_after,
            roots,
        })
    }
}

fn parse<'a>(der: &'a CertificateDer<'_>, what: &str) -> Result<X509Certificate<'a>, CertError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| CertError::ParseCertificate {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}

fn unsupported_name(subject: &str, why: &str) -> CertError {
    CertError::ParseCertificate {
        what: subject.to_owned(),
        reason: format!(
            "its subject has {why}, which cannot be reproduced exactly as the issuer of the \
             certificates it signs"
        ),
    }
}
