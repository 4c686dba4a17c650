//! The soak: `cargo run --release -p eastwest-bench --bin soak -- --minutes 5` (after
//! `cargo build --release`). One eastwest process under steady load for a bounded time:
//! connection churn (short connections opened, echoed and closed back to back), long-lived
//! connections that each do a round trip every interval, and a trickle of refused names.
//! Every interval it records the gateway's RSS, open fds and counters; at the end it closes
//! everything and checks that fds return to where they started and that RSS stayed flat.
//! Prints a markdown table (and writes it to `--out`); exits 1 if a check fails.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use eastwest_bench::load::{self, procs, traffic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(about = "eastwest under steady load and churn for minutes: RSS, fds, errors over time")]
struct Args {
    /// How long the load runs.
    #[arg(long, default_value_t = 5)]
    minutes: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Concurrent churning clients.
    #[arg(long, default_value_t = 8)]
    churn: usize,
    /// Long-lived connections held for the whole run.
    #[arg(long, default_value_t = 500)]
    held: usize,
    /// The eastwest binary under test.
    #[arg(long, default_value = "target/release/eastwest")]
    eastwest: String,
    /// The report.
    #[arg(long, default_value = "target/soak.md")]
    out: PathBuf,
}

/// RSS may grow this much from the first sample taken under load to the last (allocator
/// pools settle in the first interval; a leak of even 100 B per connection churned would be
/// several MiB over a run).
const RSS_SLACK: u64 = 1024 * 1024;

/// Connections the gateway holds open (its single `--listen` listener is named `tls`).
const ACTIVE: &str = "eastwest_connections_active{listener=\"tls\"}";

struct Sample {
    at: Duration,
    rss: u64,
    fds: usize,
    churned: u64,
    refused: u64,
    errors: u64,
    active: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    if !std::path::Path::new(&args.eastwest).exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            args.eastwest
        ));
    }
    procs::raise_fd_limit().map_err(|e| format!("raising the fd limit: {e}"))?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let (proxy_cpu, load_cpu) = if cpus >= 2 { (0, 1) } else { (0, 0) };
    procs::pin_self(load_cpu).map_err(|e| format!("pinning to core {load_cpu}: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let world = load::World::start(dir.path()).await?;
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let mut gw_args: Vec<String> = [
            "run", "--workers", "1", "--listen", &listen.to_string(), "--admin",
            &admin.to_string(), "--hosts", "*.local",
        ]
        .map(String::from)
        .to_vec();
        for r in &world.routes {
            gw_args.push("--endpoints".into());
            gw_args.push(format!("{}:{}={}", r.host, r.port, r.backend));
        }
        let log = dir.path().join("eastwest.log");
        let mut proc = procs::Proc::spawn_pinned(proxy_cpu, &args.eastwest, &gw_args, &log)
            .map_err(|e| format!("starting {}: {e}", args.eastwest))?;
        procs::wait_listening(&mut proc, listen, Duration::from_secs(10))?;
        let pid = proc.pid();
        let fds_before = procs::fds(pid);
        let rss_before = procs::rss_bytes(pid);

        let good = traffic::client_hello(world.sni("echo-a"));
        let unknown = traffic::client_hello(load::UNKNOWN);
        let mut held = traffic::hold_idle(listen, &good, args.held)
            .await
            .map_err(|e| format!("opening the held connections: {e}"))?;

        let mut samples = Vec::new();
        let (mut churned, mut refused, mut errors) = (0u64, 0u64, 0u64);
        let t0 = Instant::now();
        let interval = Duration::from_secs(args.interval.max(1));
        while t0.elapsed() < Duration::from_secs(args.minutes * 60) {
            match traffic::connection_rate(listen, &good, args.churn, u64::MAX, interval).await {
                Ok((n, _)) => churned += n,
                Err(e) => {
                    eprintln!("churn: {e}");
                    errors += 1;
                }
            }
            // Ten names that route nowhere: each must come back empty (refused).
            for _ in 0..10 {
                match traffic::probe(listen, &unknown, Duration::from_secs(1)).await {
                    Ok(got) if got.is_empty() => refused += 1,
                    Ok(got) => {
                        eprintln!("an unknown name got {} bytes back", got.len());
                        errors += 1;
                    }
                    Err(e) => {
                        eprintln!("probe: {e}");
                        errors += 1;
                    }
                }
            }
            // Every held connection still forwards.
            for s in &mut held {
                let mut b = [0u8; 1];
                let ok = s.write_all(b"?").await.is_ok()
                    && s.read_exact(&mut b).await.is_ok()
                    && b == *b"?";
                if !ok {
                    errors += 1;
                }
            }
            let sample = Sample {
                at: t0.elapsed(),
                rss: procs::rss_bytes(pid),
                fds: procs::fds(pid),
                churned,
                refused,
                errors,
                active: metric(admin, ACTIVE),
            };
            eprintln!(
                "{:>5.0} s  rss {:>7.2} MiB  fds {:>5}  churned {:>8}  refused {:>5}  errors {}",
                sample.at.as_secs_f64(),
                mib(sample.rss),
                sample.fds,
                sample.churned,
                sample.refused,
                sample.errors
            );
            samples.push(sample);
        }
        drop(held);
        // Closed on our side: the gateway sees every EOF and closes its ends.
        let settle = Instant::now();
        while metric(admin, ACTIVE) > 0.0
            && settle.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fds_after = procs::fds(pid);
        let rss_after = procs::rss_bytes(pid);
        let refused_metric = metric(
            admin,
            "eastwest_connections_refused_total{listener=\"tls\",reason=\"no_route\"}",
        );
        drop(proc);

        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Err("no sample taken: --minutes 0?".into());
        };
        let mut checks = Vec::new();
        checks.push((
            format!("no client error ({errors})"),
            errors == 0,
        ));
        checks.push((
            format!(
                "refusals counted by the gateway ({refused_metric}) = refusals seen ({refused})"
            ),
            refused_metric == refused as f64,
        ));
        checks.push((
            format!("open fds back to the start or below once idle ({fds_before} -> {fds_after})"),
            fds_after <= fds_before,
        ));
        let growth = last.rss.saturating_sub(first.rss);
        checks.push((
            format!(
                "RSS flat under load: {:.2} MiB at the first sample, {:.2} MiB at the last (+{} KiB, allowed {} KiB)",
                mib(first.rss),
                mib(last.rss),
                growth / 1024,
                RSS_SLACK / 1024
            ),
            growth <= RSS_SLACK,
        ));
        let report = markdown(args, &samples, rss_before, rss_after, fds_before, &checks);
        print!("{report}");
        if let Some(parent) = args.out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&args.out, &report).map_err(|e| format!("{}: {e}", args.out.display()))?;
        eprintln!("written to {}", args.out.display());
        Ok(checks.iter().all(|(_, ok)| *ok))
    })
}

fn markdown(
    args: &Args,
    samples: &[Sample],
    rss_before: u64,
    rss_after: u64,
    fds_before: usize,
    checks: &[(String, bool)],
) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "Soak: {} min, {} churning clients, {} held connections, 10 refused names per {} s \
         interval. Idle before: RSS {:.2} MiB, {} fds; after, all closed: RSS {:.2} MiB.\n",
        args.minutes,
        args.churn,
        args.held,
        args.interval,
        mib(rss_before),
        fds_before,
        mib(rss_after)
    );
    let _ = writeln!(
        m,
        "| t (s) | RSS (MiB) | open fds | active | churned (total) | refused | errors |"
    );
    let _ = writeln!(m, "|---:|---:|---:|---:|---:|---:|---:|");
    for s in samples {
        let _ = writeln!(
            m,
            "| {:.0} | {:.2} | {} | {} | {} | {} | {} |",
            s.at.as_secs_f64(),
            mib(s.rss),
            s.fds,
            s.active,
            s.churned,
            s.refused,
            s.errors
        );
    }
    let _ = writeln!(m);
    for (what, ok) in checks {
        let _ = writeln!(m, "- {} {what}", if *ok { "PASS" } else { "FAIL" });
    }
    m
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn free_port() -> Result<u16, String> {
    procs::free_port().map_err(|e| e.to_string())
}

/// One series from the admin port's Prometheus text; 0 when absent or unreadable.
fn metric(admin: SocketAddr, series: &str) -> f64 {
    let Ok(mut s) = StdStream::connect(admin) else {
        return 0.0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /stats/prometheus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(request.as_bytes()).is_err() {
        return 0.0;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
