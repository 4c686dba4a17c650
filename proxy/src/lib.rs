//! eastwest's data path: accept, sniff the ClientHello, name the service, check exposure, look
//! up the route snapshot, balance, connect, forward with splice(2). Also the admin HTTP server.
//! This crate knows nothing of Kubernetes; sources of routes live in `eastwest-control`.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
mod backoff;
pub mod balance;
pub mod clock;
pub mod config;
pub mod conn;
pub mod forward;
pub mod hosts;
pub mod metrics;
pub mod name;
pub mod reason;
pub mod routes;
pub mod server;
pub mod sni;
pub mod sniff;
mod sys;

pub use sys::raise_fd_limit;
