//! The Kubernetes source at scale, against the API server double on loopback: how long the
//! initial sync of 10,000 Services × 3 endpoints takes (list over HTTPS, decode, reduce, build,
//! publish), how long one snapshot rebuild takes, and the delay from an API change to the new
//! route being published (what the next connection's one atomic load sees).
//!
//! ```text
//! cargo bench -p eastwest-bench --bench kube_sync            # 10,000 services, 200 changes
//! cargo bench -p eastwest-bench --bench kube_sync -- 2000 50 # SERVICES CHANGES
//! ```
//!
//! Not criterion: the figures wanted are percentiles of one long run (p99 of event → route),
//! not the mean of a repeated closure. `cargo test --benches` runs it once, small.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eastwest_control::kube::{Connection, KubeOptions, KubeSource, Published};
use eastwest_kube_double::fixtures::{self, Endpoint};
use eastwest_kube_double::{ApiServer, ApiServerOptions};
use eastwest_proxy::metrics::Metrics;
use eastwest_proxy::routes::Routes;
use serde_json::Value;
use tokio::sync::mpsc;

const ENDPOINTS: usize = 3;
/// The initial sync is timed this many times, each with a fresh client and source.
const SYNC_RUNS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (services, changes, sync_runs) = match (full, numbers.as_slice()) {
        (_, [s, c, ..]) => (*s, *c, SYNC_RUNS),
        (true, _) => (10_000, 200, SYNC_RUNS),
        (false, _) => (200, 10, 1),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(services, changes, sync_runs));
}

/// Service `svc-<i>` in namespace `ns-<i % 20>`, one slice of three ready endpoints.
fn objects(i: usize) -> [Value; 2] {
    let (ns, name) = (format!("ns-{}", i % 20), format!("svc-{i}"));
    let svc = fixtures::service(&ns, &name)
        .tcp_port("http", 80, 8080)
        .build();
    let mut slice = fixtures::endpoint_slice(&ns, &name, &format!("{name}-abcde"));
    for e in 0..ENDPOINTS {
        slice = slice.endpoint(Endpoint::new(&pod_ip(i, e)));
    }
    [svc, slice.tcp_port("http", 8080).build()]
}

/// A pod address, never dialled: the bench publishes routes, it sends no traffic.
fn pod_ip(i: usize, e: usize) -> String {
    format!("10.{}.{}.{}", (i >> 8) & 0xff, i & 0xff, 10 + e)
}

async fn run(services: usize, changes: usize, sync_runs: usize) {
    let server = ApiServer::start(ApiServerOptions::default())
        .await
        .expect("api server");
    let loading = Instant::now();
    server
        .apply_all((0..services).flat_map(objects))
        .await
        .expect("apply");
    println!(
        "kube_sync: {services} services × {ENDPOINTS} endpoints ({} objects) loaded into the API \
         double in {:.1} s",
        2 * services,
        loading.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig, "bench")
        .expect("kubeconfig");
    let connection = Connection {
        kubeconfig: Some(kubeconfig),
        context: None,
    };

    let rss_before = rss_kib();
    let mut syncs = Vec::new();
    let mut source = None;
    for _ in 0..sync_runs {
        // The previous source (and its watches) goes away before the next is timed.
        drop(source.take());
        let (running, first, elapsed) = start(&connection).await;
        syncs.push((elapsed, first.build));
        source = Some(running);
    }
    let Some(mut running) = source else { return };
    syncs.sort();
    let (median, build) = syncs[syncs.len() / 2];
    println!(
        "initial sync (start → first snapshot, {} runs): median {:.0} ms, min {:.0} ms, max {:.0} \
         ms; of which table build {:.1} ms",
        syncs.len(),
        ms(median),
        ms(syncs[0].0),
        ms(syncs[syncs.len() - 1].0),
        ms(build),
    );
    println!(
        "resident memory after {} syncs: {} MiB (was {} MiB before the first; includes the API \
         double's own copy of every object)",
        syncs.len(),
        rss_kib() / 1024,
        rss_before / 1024
    );

    // Event → route: change one service's endpoints, wait for the snapshot that has the new
    // address, one change at a time so each delay is its own.
    let mut delays = Vec::with_capacity(changes);
    let mut builds = Vec::with_capacity(changes);
    for c in 0..changes {
        let i = (c * 7919) % services;
        let [_, mut slice] = objects(i);
        let new_ip = format!("10.250.{}.{}", (c >> 8) & 0xff, c & 0xff);
        slice["endpoints"][0]["addresses"][0] = Value::String(new_ip.clone());
        let want: SocketAddr = format!("{new_ip}:8080").parse().expect("addr");
        let host = format!("svc-{i}.ns-{}.svc.cluster.local", i % 20);
        let sent = Instant::now();
        server.apply(slice).await.expect("apply");
        loop {
            let published = running.events.recv().await.expect("source stopped");
            builds.push(published.build);
            let table = running.routes.load_full().expect("loaded");
            let routed = table
                .lookup(&host, 80, "")
                .is_some_and(|r| r.endpoints.iter().any(|e| e.addr == want));
            if routed {
                delays.push(sent.elapsed());
                break;
            }
        }
    }
    println!(
        "event → route published ({} changes, one at a time): {}",
        delays.len(),
        percentiles(&mut delays)
    );
    println!(
        "snapshot rebuild ({} rebuilds of the full table): {}",
        builds.len(),
        percentiles(&mut builds)
    );
    running.task.abort();
}

struct Running {
    routes: Arc<Routes>,
    events: mpsc::UnboundedReceiver<Published>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a source and waits for its first snapshot.
async fn start(connection: &Connection) -> (Running, Published, Duration) {
    let started = Instant::now();
    let (client, _) = connection
        .client(eastwest_control::kube::DEFAULT_WATCH_TIMEOUT)
        .await
        .expect("client");
    let routes = Routes::new();
    let metrics = Metrics::new().source("bench", "", "cluster.local");
    let source = KubeSource::new(
        client,
        KubeOptions::new("bench"),
        Vec::new(),
        routes.clone(),
        metrics,
    );
    let (tx, mut events) = mpsc::unbounded_channel();
    let task = tokio::spawn(source.run(move |p| {
        let _ = tx.send(*p);
    }));
    let first = events.recv().await.expect("first snapshot");
    let elapsed = started.elapsed();
    assert!(first.first, "the first snapshot is the initial sync");
    (
        Running {
            routes,
            events,
            task,
        },
        first,
        elapsed,
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentiles(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(v[v.len() - 1])
    )
}

/// This process's resident set, KiB (0 where /proc is not there).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
