//! `eastwest-control` turns sources of endpoints into route-table snapshots for the proxy.
//!
//! It owns the gateway's YAML config file ([`config`]), the services file and `--endpoints`
//! values ([`services`]), the file source that reloads the services file when it changes
//! ([`file`]), and the Kubernetes source that watches Services and EndpointSlices ([`kube`]). It builds [`eastwest_proxy::routes::RouteTable`]s and publishes them; it knows no
//! sockets.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
mod error;
pub mod file;
#[cfg(feature = "kube")]
pub mod kube;
pub mod services;
mod value;

pub use config::{ClusterSpec, Config, LimitsSpec, ListenerSpec, LogFormat, TimeoutsSpec};
pub use error::{ConfigError, Position};
pub use file::{FileSource, ReloadEvent, publish_static};
pub use services::{EndpointSpec, ServiceSpec, build_table, parse_endpoints_flag, parse_services};
pub use value::{
    check_cluster_id, check_dns_name, check_namespace, parse_duration, parse_watch_timeout,
};
