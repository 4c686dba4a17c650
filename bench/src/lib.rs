//! eastwest's benchmarks. `benches/data_path.rs` holds the criterion micro-benchmarks of the
//! per-connection work (ClientHello parse, Istio naming, exposure check, route lookup, snapshot
//! build), `benches/kube_sync.rs` the Kubernetes source at 10,000 services, and [`load`] the
//! load harness against haproxy, nginx and sniproxy (`src/bin/load.rs`).

pub mod load;
