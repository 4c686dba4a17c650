//! The load harness: eastwest against haproxy, nginx and sniproxy on identical routing, one
//! proxy at a time, each with one worker pinned to core 0 while this process (load generator
//! and backends) runs on core 1. It checks each proxy (right backend, unknown name refused, a
//! real mTLS handshake), then measures bulk throughput, new connections, round trips, idle
//! memory and the proxy's own CPU time per operation. `report` turns the figures into
//! `BENCHMARKS.md` and SVG charts. Run by `src/bin/load.rs`.

pub mod mtls;
pub mod peers;
pub mod procs;
pub mod report;
pub mod syscalls;
pub mod traffic;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use peers::{Kind, Route, Running};
use traffic::{Backend, Role};

/// Workload sizes. `quick` is CI's smoke run: every path once, figures meaningless.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub runs: usize,
    pub bulk_bytes: u64,
    pub conn_count: u64,
    pub conn_concurrency: usize,
    pub rr_conns: usize,
    pub rr_count: u64,
    pub idle_conns: usize,
    pub limit: Duration,
}

impl Sizes {
    pub fn full(runs: usize) -> Sizes {
        Sizes {
            runs,
            bulk_bytes: 4 << 30,
            conn_count: 40_000,
            conn_concurrency: 16,
            rr_conns: 16,
            rr_count: 320_000,
            idle_conns: 10_000,
            limit: Duration::from_secs(8),
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            runs: 1,
            bulk_bytes: 64 << 20,
            conn_count: 300,
            conn_concurrency: 4,
            rr_conns: 16,
            rr_count: 1_600,
            idle_conns: 200,
            limit: Duration::from_secs(5),
        }
    }
}

/// Every figure of one proxy, one sample per run.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub bulk1_gbit: Vec<f64>,
    pub bulk8_gbit: Vec<f64>,
    pub cpu_s_per_gib1: Vec<f64>,
    pub cpu_s_per_gib8: Vec<f64>,
    pub conns_per_s: Vec<f64>,
    pub cpu_us_per_conn: Vec<f64>,
    pub rr_per_s: Vec<f64>,
    pub rr_p50_us: Vec<f64>,
    pub rr_p99_us: Vec<f64>,
    pub rr_p999_us: Vec<f64>,
    pub cpu_us_per_rt: Vec<f64>,
    pub idle_kib_per_conn: Vec<f64>,
    pub idle_held: usize,
    pub syscalls: Option<syscalls::Counts>,
}

/// One proxy's results, or why it was not measured.
pub struct Outcome {
    pub kind: Kind,
    pub result: Result<Figures, String>,
    pub checks: Vec<String>,
}

/// The shared routing table's backends.
pub struct World {
    pub echo_a: Backend,
    pub echo_b: Backend,
    pub sink: Backend,
    pub mtls: Option<mtls::Server>,
    pub routes: Vec<Route>,
}

pub const UNKNOWN: &str = "outbound_.8080_._.nobody.bench.svc.cluster.local";

impl World {
    /// Backends on distinct loopback addresses (127.0.0.2, .3 ...), as distinct hosts.
    pub async fn start(dir: &Path) -> Result<World, String> {
        let e = |e: std::io::Error| e.to_string();
        let echo_a = Backend::start([127, 0, 0, 2], Role::Echo)
            .await
            .map_err(e)?;
        let echo_b = Backend::start([127, 0, 0, 3], Role::Echo)
            .await
            .map_err(e)?;
        let sink = Backend::start([127, 0, 0, 2], Role::Sink)
            .await
            .map_err(e)?;
        let mtls = mtls::Server::start(dir);
        let mut routes = vec![
            Route::new("echo-a", 8080, echo_a.addr),
            Route::new("echo-b", 8080, echo_b.addr),
            Route::new("sink", 9000, sink.addr),
        ];
        let mtls = match mtls {
            Ok(m) => {
                routes.push(Route::new("mtls", 8443, m.addr));
                Some(m)
            }
            Err(e) => {
                eprintln!("no mTLS check: {e}");
                None
            }
        };
        Ok(World {
            echo_a,
            echo_b,
            sink,
            mtls,
            routes,
        })
    }

    pub fn sni(&self, service: &str) -> &str {
        self.routes
            .iter()
            .find(|r| r.host.starts_with(&format!("{service}.")))
            .map_or("", |r| r.sni.as_str())
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn addr(p: &Running, sni: &str) -> Result<SocketAddr, String> {
    p.addr_for(sni)
        .ok_or_else(|| format!("no address for {sni}"))
}

/// Correctness through one proxy: each name reaches its own backend and only it, an unknown
/// name is refused (nothing echoed, no backend reached), mutual TLS completes end to end.
pub async fn check(p: &Running, w: &World) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for (svc, mine, other) in [
        ("echo-a", &w.echo_a, &w.echo_b),
        ("echo-b", &w.echo_b, &w.echo_a),
    ] {
        let sni = w.sni(svc);
        let (m0, o0) = (mine.accepted(), other.accepted());
        let got = traffic::probe(
            addr(p, sni)?,
            &traffic::client_hello(sni),
            Duration::from_secs(5),
        )
        .await
        .map_err(io("probe"))?;
        if !got.ends_with(b"probe") || mine.accepted() != m0 + 1 || other.accepted() != o0 {
            return Err(format!(
                "{svc}: did not reach its backend (got {} bytes)",
                got.len()
            ));
        }
    }
    done.push("right backend".to_string());
    if p.kind != Kind::Direct {
        let before = w.echo_a.accepted() + w.echo_b.accepted() + w.sink.accepted();
        let got = traffic::probe(
            p.addr_for(UNKNOWN).ok_or("no listener")?,
            &traffic::client_hello(UNKNOWN),
            Duration::from_secs(5),
        )
        .await
        .map_err(io("probe"))?;
        let after = w.echo_a.accepted() + w.echo_b.accepted() + w.sink.accepted();
        if got.ends_with(b"probe") || after != before {
            return Err("an unknown name reached a backend".into());
        }
        done.push("unknown name refused".to_string());
    }
    if let Some(m) = &w.mtls {
        let sni = w.sni("mtls").to_string();
        let via = addr(p, &sni)?;
        // Blocking is fine here: s_server is its own process, not on this runtime.
        m.check(via, &sni)?;
        done.push("mTLS handshake".to_string());
    }
    Ok(done)
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

fn cpu_of(p: &Running) -> u64 {
    p.pid().map_or(0, procs::cpu_ns)
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// Every workload `sizes.runs` times through one proxy.
pub async fn measure(p: &Running, w: &World, s: &Sizes) -> Result<Figures, String> {
    let mut f = Figures::default();
    let sink = w.sni("sink");
    let echo = w.sni("echo-a");
    let (sink_hello, echo_hello) = (traffic::client_hello(sink), traffic::client_hello(echo));
    let (sink_at, echo_at) = (addr(p, sink)?, addr(p, echo)?);
    // Warm-up: the first connections fault in code and buffers in every proxy.
    traffic::connection_rate(echo_at, &echo_hello, 4, 500, s.limit)
        .await
        .map_err(io("connection rate"))?;
    for _ in 0..s.runs {
        for conns in [1usize, 8] {
            let per = s.bulk_bytes / conns as u64;
            let c0 = cpu_of(p);
            let t = traffic::bulk(sink_at, &sink_hello, conns, per)
                .await
                .map_err(io("bulk"))?;
            let cpu = (cpu_of(p) - c0) as f64 / 1e9;
            let total = per * conns as u64;
            let gbit = total as f64 * 8.0 / 1e9 / t.as_secs_f64();
            let (g, c) = if conns == 1 {
                (&mut f.bulk1_gbit, &mut f.cpu_s_per_gib1)
            } else {
                (&mut f.bulk8_gbit, &mut f.cpu_s_per_gib8)
            };
            g.push(gbit);
            c.push(cpu / gib(total));
        }
        let c0 = cpu_of(p);
        let (n, t) = traffic::connection_rate(
            echo_at,
            &echo_hello,
            s.conn_concurrency,
            s.conn_count,
            s.limit,
        )
        .await
        .map_err(io("connection rate"))?;
        f.conns_per_s.push(n as f64 / t.as_secs_f64());
        f.cpu_us_per_conn
            .push((cpu_of(p) - c0) as f64 / 1e3 / n.max(1) as f64);

        let c0 = cpu_of(p);
        let t0 = std::time::Instant::now();
        let mut lat = traffic::round_trips(echo_at, &echo_hello, s.rr_conns, s.rr_count, s.limit)
            .await
            .map_err(io("round trips"))?;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (cpu_of(p) - c0) as f64;
        lat.sort_unstable();
        f.rr_per_s.push(lat.len() as f64 / secs);
        f.rr_p50_us.push(percentile(&lat, 0.50));
        f.rr_p99_us.push(percentile(&lat, 0.99));
        f.rr_p999_us.push(percentile(&lat, 0.999));
        f.cpu_us_per_rt.push(cpu / 1e3 / lat.len().max(1) as f64);
    }
    if let Some(pid) = p.pid() {
        let before = procs::rss_bytes(pid);
        let fds_before = procs::fds(pid);
        let held = traffic::hold_idle(echo_at, &echo_hello, s.idle_conns)
            .await
            .map_err(io("hold idle"))?;
        let after = procs::rss_bytes(pid);
        f.idle_held = held.len();
        f.idle_kib_per_conn
            .push(after.saturating_sub(before) as f64 / 1024.0 / held.len().max(1) as f64);
        drop(held);
        // The proxy closes its ends after this returns; wait for that, so the closes are not
        // counted in whatever is measured next (the strace run would see 2 closes, 2 epoll_ctl
        // and more per held connection otherwise).
        let deadline = std::time::Instant::now() + s.limit;
        while procs::fds(pid) > fds_before + 16 {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "the proxy still has {} fds open {:?} after the idle connections closed (had {fds_before})",
                    procs::fds(pid),
                    s.limit
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(f)
}

/// System calls per connection and per MiB through `p`, with strace on every proxy thread:
/// `conns` connections, then `bytes` over one connection.
pub async fn count_syscalls(
    p: &Running,
    w: &World,
    dir: &Path,
    conns: u64,
    bytes: u64,
) -> Result<syscalls::Counts, String> {
    let pid = p.pid().ok_or("no proxy process")?;
    let (echo, sink) = (w.sni("echo-a"), w.sni("sink"));
    let out = dir.join(format!("strace-{}.txt", p.kind.name()));
    let trace = syscalls::Trace::attach(pid, &out)?;
    let hello = traffic::client_hello(echo);
    let (n, _) =
        traffic::connection_rate(addr(p, echo)?, &hello, 4, conns, Duration::from_secs(120))
            .await
            .map_err(io("connection rate"))?;
    let (total, rows) = trace.finish()?;
    let per = |v: Vec<(String, u64)>, d: f64| {
        v.into_iter()
            .take(6)
            .map(|(k, c)| (k, c as f64 / d))
            .collect()
    };
    let n = n.max(1) as f64;
    let mut c = syscalls::Counts {
        per_conn: total as f64 / n,
        conn_top: per(rows, n),
        ..Default::default()
    };
    let out = dir.join(format!("strace-{}-bulk.txt", p.kind.name()));
    let trace = syscalls::Trace::attach(pid, &out)?;
    traffic::bulk(addr(p, sink)?, &traffic::client_hello(sink), 1, bytes)
        .await
        .map_err(io("bulk"))?;
    let (total, rows) = trace.finish()?;
    let mib = (bytes >> 20).max(1) as f64;
    c.per_mib = total as f64 / mib;
    c.bulk_top = per(rows, mib);
    Ok(c)
}

/// Median of the samples (NaN when there are none).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// (max − min) / median of the samples, as a fraction.
pub fn spread(v: &[f64]) -> f64 {
    let m = median(v);
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
    if v.len() < 2 || m == 0.0 {
        0.0
    } else {
        (hi - lo) / m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert!((spread(&[9.0, 10.0, 11.0]) - 0.2).abs() < 1e-9);
        assert_eq!(spread(&[5.0]), 0.0);
    }

    #[test]
    fn percentiles_of_sorted_latencies() {
        let v: Vec<u32> = (1..=1000).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 501.0);
        assert_eq!(percentile(&v, 0.99), 990.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }
}
