//! A Kubernetes API server test double that speaks the real wire protocol: HTTPS with a fresh
//! CA, bearer tokens, discovery, list with `limit`/`continue` and selectors, and watch streams
//! with resourceVersion replay, bookmarks and 410 expiry. Real `kubectl` and kube-rs's runtime
//! watcher talk to it as to a cluster; tests drive its objects and its faults in-process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), eastwest_kube_double::Error> {
//! use eastwest_kube_double::{ApiServer, ApiServerOptions, fixtures};
//!
//! let server = ApiServer::start(ApiServerOptions::default()).await?;
//! server.apply_all(fixtures::mesh()).await?;
//! server.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), "east")?;
//! // ... start the client, then:
//! server.wait_for_request(|r| r.is_open_watch_of("endpointslices")).await;
//! server.apply(fixtures::service("bookinfo", "new").tcp_port("http", 80, 8080).build()).await?;
//! # Ok(()) }
//! ```
//!
//! Modules, each owning one part:
//! - `server`: [`ApiServer`], the test-facing API; `options`: [`ApiServerOptions`].
//! - `conn`: the listener, TLS, HTTP/1.1 connections and the "unavailable" fault.
//! - `body`: whole and streaming response bodies; `shared`: the state connections share.
//! - `handler`: one request: auth, routing, denials, injected failures, the request log line.
//! - `route`: URL paths to discovery documents or resource targets.
//! - `discovery`: `/version`, `/api`, `/apis`, APIGroup and APIResourceList documents.
//! - `list`: GET of collections and objects, pagination and continue tokens.
//! - `watch`: watch streams, replay, bookmarks, expiry.
//! - `store`: objects, resourceVersions, history, the watch broadcast.
//! - `select`: label and field selectors; `query`: query-string decoding.
//! - `status`: `Status` error bodies in the real server's words.
//! - `controls`: tokens, forbidden verbs, injected failures, delay, availability.
//! - `log`: the request log and awaiting requests.
//! - `registry`: resource types ([`ResourceType`]).
//! - `kubeconfig`: kubeconfig files ([`Kubeconfig`]).
//! - `tls`: the CA and serving certificate; `meta`: timestamps and uids.
//! - [`fixtures`]: realistic Service / EndpointSlice / Namespace objects.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod body;
mod conn;
mod controls;
mod discovery;
mod error;
pub mod fixtures;
mod handler;
mod kubeconfig;
mod list;
mod log;
mod meta;
mod options;
mod query;
mod registry;
mod route;
mod select;
mod server;
mod shared;
mod status;
mod store;
mod tls;
mod watch;

pub use error::Error;
pub use kubeconfig::{Kubeconfig, KubeconfigContext};
pub use log::RequestRecord;
pub use options::{ApiServerOptions, DEFAULT_USER};
pub use registry::{ResourceType, STANDARD_VERBS};
pub use server::ApiServer;
