//! Certificate authorities in Istio's plug-in layout: one root, one intermediate per cluster
//! (`pathlen:0`), both able to issue workload certificates. Names and extensions follow Istio's
//! `tools/certs/common.mk` so a mesh built here looks like one built with `Makefile.selfsigned.mk`.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, string::Ia5String,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::pem::CertPem;
use crate::{CertError, CertOptions, Leaf, PluginFiles, pem, spiffe};

/// Common name of a root, as Istio's `ROOTCA_CN`.
pub const ROOT_CN: &str = "Root CA";
/// Common name of a per-cluster intermediate, as Istio's `INTERMEDIATE_CN`; the cluster goes in
/// `L` so that two clusters' intermediates have distinct subjects.
pub const INTERMEDIATE_CN: &str = "Intermediate CA";
/// DNS SAN that Istio's Makefile puts on every intermediate (`INTERMEDIATE_SAN_DNS`).
pub const INTERMEDIATE_SAN_DNS: &str = "istiod.istio-system.svc";
/// Organisation used when a loaded CA certificate has no `O`.
const DEFAULT_ORG: &str = "Istio";

/// A CA (root or intermediate): issues intermediates and workload certificates.
///
/// A root is self-signed with `CA:true` and no path length limit (as Istio's root), so any
/// number of per-cluster intermediates can hang below it. An intermediate has `pathlen:0`: it
/// issues workload certificates only. Both carry `keyCertSign`, `cRLSign` and
/// `digitalSignature` (Istio's CA key usages minus the RSA-only `keyEncipherment`) and a
/// Subject Key Identifier; intermediates and leaves carry an Authority Key Identifier
/// pointing at their issuer's SKI.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// `O` of this CA, inherited by the intermediates it issues.
    org: String,
    /// Human-readable subject, for error messages and `Debug`.
    subject: String,
    cert: CertPem,
    /// This CA's issuers, nearest first, ending at the root. Empty for a root.
    parents: Vec<CertPem>,
    /// `None`: unconstrained.
    path_len: Option<u8>,
    not_after: OffsetDateTime,
    /// Trusts the root at the top of this chain; built once because adding can fail.
    roots: RootCertStore,
}

impl Ca {
    /// A new self-signed root CA: `O=<org>, CN=Root CA`, valid for [`Validity::ROOT`].
    ///
    /// [`Validity::ROOT`]: crate::Validity::ROOT
    pub fn new_root(org: &str) -> Result<Ca, CertError> {
        Ca::new_root_with(org, CertOptions::ROOT)
    }

    pub fn new_root_with(org: &str, options: CertOptions) -> Result<Ca, CertError> {
        let key = options.key_type.generate()?;
        let (not_before, not_after) = options.validity.window(None)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = names(&[
            (DnType::OrganizationName, org),
            (DnType::CommonName, ROOT_CN),
        ]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = ca_key_usages();
        params.not_before = not_before;
        params.not_after = not_after;

        let subject = format!("O={org}, CN={ROOT_CN}");
        let cert = params.self_signed(&key).map_err(signing(&subject))?;
        let cert = CertPem::from_der(cert.der().clone());
        let roots = root_store(&cert, &subject)?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            org: org.to_owned(),
            subject,
            cert,
            parents: Vec::new(),
            path_len: None,
            not_after,
            roots,
        })
    }

    /// A new intermediate CA for `cluster`: `O=<this CA's O>, CN=Intermediate CA, L=<cluster>`,
    /// `pathlen:0`, DNS SAN [`INTERMEDIATE_SAN_DNS`], valid for [`Validity::INTERMEDIATE`]
    /// (capped at this CA's own expiry).
    ///
    /// [`Validity::INTERMEDIATE`]: crate::Validity::INTERMEDIATE
    pub fn intermediate(&self, cluster: &str) -> Result<Ca, CertError> {
        self.intermediate_with(cluster, CertOptions::INTERMEDIATE)
    }

    pub fn intermediate_with(&self, cluster: &str, options: CertOptions) -> Result<Ca, CertError> {
        if self.path_len == Some(0) {
            return Err(CertError::PathLenExhausted {
                subject: self.subject.clone(),
            });
        }
        let key = options.key_type.generate()?;
        let (not_before, not_after) = options
            .validity
            .window(Some((&self.subject, self.not_after)))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = names(&[
            (DnType::OrganizationName, &self.org),
            (DnType::CommonName, INTERMEDIATE_CN),
            (DnType::LocalityName, cluster),
        ]);
        params.subject_alt_names = vec![SanType::DnsName(ia5("DNS name", INTERMEDIATE_SAN_DNS)?)];
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = ca_key_usages();
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;

        let subject = format!("O={}, CN={INTERMEDIATE_CN}, L={cluster}", self.org);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(signing(&subject))?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            org: self.org.clone(),
            subject,
            cert: CertPem::from_der(cert.der().clone()),
            parents: self.chain().cloned().collect(),
            path_len: Some(0),
            not_after,
            roots: self.roots.clone(),
        })
    }

    /// A workload certificate for `spiffe_id` (the URI SAN), plus `dns_names` as DNS SANs,
    /// valid for [`Validity::WORKLOAD`] (capped at this CA's own expiry).
    ///
    /// Like the certificates istiod issues: empty subject (so the SAN extension is critical),
    /// `CA:false`, EKU serverAuth + clientAuth (a sidecar is both), key usage
    /// digitalSignature (+ keyEncipherment for RSA keys), SKI and AKI.
    ///
    /// [`Validity::WORKLOAD`]: crate::Validity::WORKLOAD
    pub fn workload(&self, spiffe_id: &str, dns_names: &[&str]) -> Result<Leaf, CertError> {
        self.workload_with(spiffe_id, dns_names, CertOptions::WORKLOAD)
    }

    pub fn workload_with(
        &self,
        spiffe_id: &str,
        dns_names: &[&str],
        options: CertOptions,
    ) -> Result<Leaf, CertError> {
        spiffe::validate(spiffe_id)?;
        let mut sans = vec![SanType::URI(ia5("SPIFFE ID", spiffe_id)?)];
        for name in dns_names {
            sans.push(SanType::DnsName(ia5("DNS name", name)?));
        }
        let key = options.key_type.generate()?;
        let (not_before, not_after) = options
            .validity
            .window(Some((&self.subject, self.not_after)))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = options.key_type.leaf_key_usages();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;

        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(signing(spiffe_id))?;
        let mut chain: Vec<CertPem> = self.chain().cloned().collect();
        // `chain()` always yields at least this CA's own certificate.
        let root = chain.pop().unwrap_or_else(|| self.cert.clone());
        Ok(Leaf::new(
            spiffe_id.to_owned(),
            key,
            CertPem::from_der(cert.der().clone()),
            chain,
            root,
            self.roots.clone(),
        ))
    }

    /// This CA's certificate (Istio `ca-cert.pem`; `root-cert.pem` for a root).
    pub fn cert_pem(&self) -> &str {
        &self.cert.pem
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der.clone()
    }

    /// This CA's private key, PKCS#8 PEM (Istio `ca-key.pem`).
    pub fn key_pem(&self) -> String {
        pem::encode("PRIVATE KEY", self.issuer.key().serialized_der())
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            self.issuer.key().serialized_der().to_vec(),
        ))
    }

    /// The root at the top of this CA's chain (Istio `root-cert.pem`); this CA's own
    /// certificate if it is the root.
    pub fn root_cert_pem(&self) -> &str {
        &self.root().pem
    }

    pub fn root_cert_der(&self) -> CertificateDer<'static> {
        self.root().der.clone()
    }

    /// This CA's certificate, then its issuers up to and including the root (Istio
    /// `cert-chain.pem`: intermediate then root). Just the certificate for a root.
    pub fn chain_pem(&self) -> String {
        pem::concat(self.chain())
    }

    /// [`Ca::chain_pem`] as DER.
    pub fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        self.chain().map(|c| c.der.clone()).collect()
    }

    /// A rustls trust store holding the root at the top of this CA's chain.
    pub fn root_store(&self) -> RootCertStore {
        self.roots.clone()
    }

    /// The four files of Istio's `cacerts` secret for this CA.
    pub fn plugin_files(&self) -> PluginFiles {
        PluginFiles {
            ca_cert: self.cert.pem.clone(),
            ca_key: self.key_pem(),
            cert_chain: self.chain_pem(),
            root_cert: self.root().pem.clone(),
        }
    }

    /// The subject in `O=…, CN=…, L=…` form.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn is_root(&self) -> bool {
        self.parents.is_empty()
    }

    /// `pathlen` of this CA's basicConstraints; `None` when unconstrained.
    pub fn path_len(&self) -> Option<u8> {
        self.path_len
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    fn chain(&self) -> impl Iterator<Item = &CertPem> {
        std::iter::once(&self.cert).chain(&self.parents)
    }

    fn root(&self) -> &CertPem {
        self.parents.last().unwrap_or(&self.cert)
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("path_len", &self.path_len)
            .field("not_after", &self.not_after)
            .field("chain_len", &(1 + self.parents.len()))
            .finish_non_exhaustive()
    }
}

fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ]
}

fn names(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (ty, value) in entries {
        dn.push(ty.clone(), *value);
    }
    dn
}

fn ia5(what: &'static str, value: &str) -> Result<Ia5String, CertError> {
    Ia5String::try_from(value).map_err(|source| CertError::InvalidName {
        what,
        value: value.to_owned(),
        source,
    })
}

fn signing(subject: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |source| CertError::Signing {
        subject: subject.to_owned(),
        source,
    }
}

fn root_store(root: &CertPem, subject: &str) -> Result<RootCertStore, CertError> {
    let mut store = RootCertStore::empty();
    store
        .add(root.der.clone())
        .map_err(|source| CertError::TrustAnchor {
            subject: subject.to_owned(),
            source,
        })?;
    Ok(store)
}

mod load;
#[cfg(test)]
mod tests;
