//! eastwest's benchmarks. `benches/data_path.rs` holds the criterion micro-benchmarks of the
//! per-connection work (ClientHello parse, Istio naming, exposure check, route lookup, snapshot
//! build); the load harness against peer proxies is tracked separately (see `bench/README.md`).
