//! Certificates for a multi-cluster mesh, built in memory: one root CA, one intermediate CA per
//! cluster in Istio's plug-in layout (`root-cert.pem`, `ca-cert.pem`, `ca-key.pem`,
//! `cert-chain.pem`), SPIFFE workload certificates issued by a cluster's intermediate, and the
//! rustls configurations two sidecars use for mutual TLS through an east-west gateway.
//!
//! Every certificate and key is available as PEM text and as DER, so writing the files is the
//! caller's one-liner. The gateway itself never uses this crate: it does not terminate TLS. The
//! demo and the integration tests do, to build a world the gateway can be tested in.
//!
//! ```
//! # fn main() -> Result<(), eastwest_certs::CertError> {
//! use eastwest_certs::{Ca, istio_spiffe_id};
//!
//! let root = Ca::new_root("Istio")?;
//! let east = root.intermediate("east")?;
//! let west = root.intermediate("west")?;
//! let client = east.workload(&istio_spiffe_id("cluster.local", "east", "default"), &[])?;
//! let server = west.workload(
//!     "spiffe://cluster.local/ns/west/sa/default",
//!     &["west.west.svc.cluster.local"],
//! )?;
//! assert_eq!(client.root_cert_pem(), server.root_cert_pem());
//! for (name, contents) in west.plugin_files().files() {
//!     // std::fs::write(dir.join(name), contents)?;
//! #   let _ = (name, contents);
//! }
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod ca;
mod error;
pub mod files;
mod leaf;
mod options;
mod pem;
mod plugin;
mod rsa_key;
mod spiffe;
mod tls;

pub use ca::{Ca, INTERMEDIATE_CN, INTERMEDIATE_SAN_DNS, ROOT_CN};
pub use error::CertError;
pub use leaf::Leaf;
pub use options::{CertOptions, KeyType, Validity};
pub use pem::{certs_from_pem, key_from_pem};
pub use plugin::PluginFiles;
pub use spiffe::{istio_spiffe_id, spiffe_id};
pub use tls::{client_config, server_config};

/// Re-exported so callers name the same versions this crate's signatures use.
pub use rustls;
pub use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
