//! eastwest's data path: accept, sniff the ClientHello, name the service, check exposure, look
//! up the route snapshot, balance, connect, forward with splice(2). Also the admin HTTP server.
//! This crate knows nothing of Kubernetes; sources of routes live in `eastwest-control`.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
pub mod hosts;
pub mod routes;
pub mod sni;
pub mod admin;
pub mod balance;
pub mod clock;
pub mod conn;
pub mod forward;
pub mod metrics;
pub mod name;
pub mod reason;
pub mod server;
pub mod sniff;
mod sys;
