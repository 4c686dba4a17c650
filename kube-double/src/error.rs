//! What can go wrong when a test starts the double, writes a kubeconfig or stores an object.
//! Errors a client sees travel as `Status` objects instead (`status.rs`).

use std::path::PathBuf;

/// An error from the double's test-facing API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bind 127.0.0.1:0 for the API server double: {0}")]
    Bind(#[source] std::io::Error),
    #[error("start the API server double's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("generate the API server double's certificates: {0}")]
    Certificate(#[source] rcgen::Error),
    #[error("build the API server double's TLS config: {0}")]
    Tls(#[source] rustls::Error),
    #[error("write kubeconfig {}: {source}", path.display())]
    WriteKubeconfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no resource type is registered for apiVersion {api_version:?} kind {kind:?}; \
         register it with ApiServer::register"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error(
        "no resource type is registered as {0:?}; use a plural (services), plural.group \
         (endpointslices.discovery.k8s.io) or short name (svc), or register it"
    )]
    UnknownResource(String),
    #[error("{name:?} names several resource types ({candidates}); use plural.group")]
    AmbiguousResource { name: String, candidates: String },
    #[error("cannot store this object: {reason}")]
    InvalidObject { reason: String },
}
