//! The `eastwest` package's library side: the pieces of a mesh that the demo and the
//! integration tests build on loopback (mTLS backends and sidecar-like clients). The gateway
//! itself is `eastwest-proxy`; its sources of routes are `eastwest-control`.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod world;
