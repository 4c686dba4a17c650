//! Istio's plug-in CA layout: the four files of the `cacerts` secret in `istio-system` that
//! istiod signs workload certificates with. Writing them to disk is the caller's job.

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
