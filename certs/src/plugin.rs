//! Istio's plug-in CA layout: the four files of the `cacerts` secret in `istio-system` that
//! istiod signs workload certificates with, and the Secret manifest that carries them.

use crate::CertError;

/// The contents of Istio's plug-in CA files for one CA (see [`Ca::plugin_files`]).
///
/// [`Ca::plugin_files`]: crate::Ca::plugin_files
#[derive(Clone, PartialEq, Eq)]
pub struct PluginFiles {
    /// `ca-cert.pem`: the cluster's intermediate.
    pub ca_cert: String,
    /// `ca-key.pem`: its private key (PKCS#8).
    pub ca_key: String,
    /// `cert-chain.pem`: the intermediate, then its issuers up to and including the root.
    pub cert_chain: String,
    /// `root-cert.pem`: the mesh root, the same file in every cluster.
    pub root_cert: String,
}

impl PluginFiles {
    pub const CA_CERT: &'static str = "ca-cert.pem";
    pub const CA_KEY: &'static str = "ca-key.pem";
    pub const CERT_CHAIN: &'static str = "cert-chain.pem";
    pub const ROOT_CERT: &'static str = "root-cert.pem";
    /// Name of the Kubernetes secret istiod reads them from (`kubectl create secret generic
    /// cacerts -n istio-system --from-file=...`).
    pub const SECRET_NAME: &'static str = "cacerts";

    /// `(file name, contents)` for each file, in a stable order.
    pub fn files(&self) -> [(&'static str, &str); 4] {
        [
            (Self::CA_CERT, &self.ca_cert),
            (Self::CA_KEY, &self.ca_key),
            (Self::CERT_CHAIN, &self.cert_chain),
            (Self::ROOT_CERT, &self.root_cert),
        ]
    }
}

impl PluginFiles {
    /// Namespace istiod runs in, and reads [`PluginFiles::SECRET_NAME`] from, by default.
    pub const DEFAULT_NAMESPACE: &'static str = "istio-system";

    /// Fails unless `namespace` is a valid namespace name (an RFC 1123 label).
    pub fn check_namespace(namespace: &str) -> Result<(), CertError> {
        if valid_namespace(namespace) {
            Ok(())
        } else {
            Err(CertError::InvalidNamespace {
                namespace: namespace.to_owned(),
            })
        }
    }

    /// The `cacerts` Secret as a Kubernetes manifest: what `kubectl create secret generic
    /// cacerts -n <namespace> --from-file=ca-cert.pem --from-file=ca-key.pem
    /// --from-file=root-cert.pem --from-file=cert-chain.pem --dry-run=client -o yaml` prints,
    /// byte for byte, minus its `creationTimestamp: null` line. Apply it with `kubectl apply -f`.
    ///
    /// Fails if `namespace` is not a valid namespace name (an RFC 1123 label).
    pub fn secret_yaml(&self, namespace: &str) -> Result<String, CertError> {
        Self::check_namespace(namespace)?;
        use base64::Engine as _;
        // kubectl's layout: top-level keys sorted, data keys sorted.
        let mut yaml = String::from("apiVersion: v1\ndata:\n");
        let mut files = self.files();
        files.sort_by_key(|(name, _)| *name);
        for (name, contents) in files {
            let encoded = base64::engine::general_purpose::STANDARD.encode(contents);
            yaml.push_str(&format!("  {name}: {encoded}\n"));
        }
        yaml.push_str("kind: Secret\nmetadata:\n");
        yaml.push_str(&format!("  name: {}\n", Self::SECRET_NAME));
        yaml.push_str(&format!("  namespace: {namespace}\n"));
        Ok(yaml)
    }
}

/// A namespace name as Kubernetes accepts it: an RFC 1123 label.
fn valid_namespace(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (1..=63).contains(&bytes.len())
        && edge_ok(bytes.first())
        && edge_ok(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Leaves the private key out, so that logging the struct leaks nothing.
impl std::fmt::Debug for PluginFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginFiles")
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &"[elided]")
            .field("cert_chain", &self.cert_chain)
            .field("root_cert", &self.root_cert)
            .finish()
    }
}
