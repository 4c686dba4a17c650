//! The load harness: `cargo run --release -p eastwest-bench --bin load` (after
//! `bench/install-peers` and `cargo build --release`). See `bench/README.md` and
//! `src/load/mod.rs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use eastwest_bench::load::{self, Outcome, Sizes, peers::Kind, procs, report};

#[derive(Parser)]
#[command(about = "eastwest against haproxy, nginx and sniproxy, side by side")]
struct Args {
    /// Every path once with tiny sizes (CI's smoke run); writes target/load-quick.md.
    #[arg(long)]
    quick: bool,
    /// Repeat runs of each workload per proxy (medians and spread are over these).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only these proxies (eastwest, haproxy, haproxy-splice, nginx, sniproxy, direct).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The report [default: BENCHMARKS.md, or target/load-quick.md with --quick].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The eastwest binary under test.
    #[arg(long, default_value = "target/release/eastwest")]
    eastwest: String,
    /// Skip the strace system-call counts.
    #[arg(long)]
    no_syscalls: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let kinds: Vec<Kind> = if args.only.is_empty() {
        Kind::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|n| Kind::parse(n).ok_or_else(|| format!("unknown proxy {n:?}")))
            .collect::<Result<_, _>>()?
    };
    if !Path::new(&args.eastwest).exists() && kinds.contains(&Kind::Eastwest) {
        return Err(format!(
            "{} not found: run `cargo build --release` first",
            args.eastwest
        ));
    }
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full(args.runs.max(1))
    };
    let syscalls =
        !args.no_syscalls && !args.quick && procs::version("strace", "-V") != "not installed";
    let fd_limit = procs::raise_fd_limit().map_err(|e| format!("raising the fd limit: {e}"))?;
    // The proxy holds two fds per idle connection (client and upstream) under the same limit.
    let mut sizes = sizes;
    let most = usize::try_from(fd_limit.saturating_sub(1000) / 2).unwrap_or(usize::MAX);
    if sizes.idle_conns > most {
        eprintln!(
            "holding {most} idle connections, not {}: the open-file limit is {fd_limit}",
            sizes.idle_conns
        );
        sizes.idle_conns = most;
    }
    // The proxy gets core 0; this process (load generator and backends) core 1.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let (proxy_cpu, load_cpu) = if cpus >= 2 { (0, 1) } else { (0, 0) };
    procs::pin_self(load_cpu).map_err(|e| format!("pinning to core {load_cpu}: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    if std::env::var_os("LOAD_KEEP").is_some() {
        eprintln!("keeping configs and logs in {}", dir.path().display());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let outcomes = rt.block_on(async {
        let world = load::World::start(dir.path()).await?;
        let mut outcomes = Vec::new();
        for kind in kinds {
            eprintln!("== {}", kind.name());
            let outcome = one(kind, args, &world, &sizes, dir.path(), proxy_cpu, syscalls).await;
            match &outcome.result {
                Ok(f) => eprintln!(
                    "   checks: {}; bulk {:.1} Gbit/s, {:.0} conn/s, p99 {:.0} µs",
                    outcome.checks.join(", "),
                    load::median(&f.bulk1_gbit),
                    load::median(&f.conns_per_s),
                    load::median(&f.rr_p99_us)
                ),
                Err(e) => eprintln!("   not measured: {e}"),
            }
            outcomes.push(outcome);
        }
        Ok::<_, String>(outcomes)
    })?;
    write_report(args, &outcomes, &sizes)?;
    if std::env::var_os("LOAD_KEEP").is_some() {
        let _ = dir.keep();
    }
    // A proxy that is installed but fails its checks (or eastwest failing at all) fails the
    // run: figures of a proxy that routes wrongly mean nothing. Not installed is only a skip.
    Ok(outcomes.iter().all(|o| match &o.result {
        Ok(_) => true,
        Err(e) => o.kind != Kind::Eastwest && e.starts_with("not installed"),
    }))
}

async fn one(
    kind: Kind,
    args: &Args,
    world: &load::World,
    sizes: &Sizes,
    dir: &Path,
    cpu: usize,
    syscalls: bool,
) -> Outcome {
    let mut checks = Vec::new();
    let result = async {
        if let Some(p) = kind.program(&args.eastwest)
            && procs::version(&p, "-v") == "not installed"
        {
            return Err(format!("not installed ({p}): run bench/install-peers"));
        }
        let running = load::peers::start(kind, &args.eastwest, &world.routes, dir, cpu)?;
        checks = load::check(&running, world).await?;
        let mut f = load::measure(&running, world, sizes).await?;
        if syscalls && running.pid().is_some() {
            f.syscalls = Some(load::count_syscalls(&running, world, dir, 2_000, 1 << 30).await?);
        }
        Ok(f)
    }
    .await;
    Outcome {
        kind,
        result,
        checks,
    }
}

fn write_report(args: &Args, outcomes: &[Outcome], sizes: &Sizes) -> Result<(), String> {
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.quick {
            "target/load-quick.md"
        } else {
            "BENCHMARKS.md"
        })
    });
    let base = out.parent().unwrap_or(Path::new("")).to_path_buf();
    let chart_dir = base.join(if args.quick {
        "load-quick-charts"
    } else {
        "docs/bench"
    });
    std::fs::create_dir_all(&chart_dir).map_err(|e| format!("{}: {e}", chart_dir.display()))?;
    let mut charts = Vec::new();
    for m in &report::METRICS {
        let file = chart_dir.join(format!("{}.svg", m.key));
        std::fs::write(&file, report::bar_chart(outcomes, m))
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let rel = file.strip_prefix(&base).unwrap_or(&file);
        charts.push((rel.display().to_string(), m.label.to_string()));
    }
    let machine = vec![
        ("kernel".into(), procs::version("uname", "-r")),
        ("cpu".into(), cpu_model()),
        (
            "cores".into(),
            // Online CPUs, not available_parallelism(): the harness has pinned itself to one.
            // SAFETY: sysconf only reads a system value.
            unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.to_string(),
        ),
        (
            "eastwest".into(),
            format!(
                "{} (commit {})",
                procs::version(&args.eastwest, "--version"),
                git_rev()
            ),
        ),
        ("rustc".into(), procs::version("rustc", "-V")),
        ("haproxy".into(), procs::version("haproxy", "-v")),
        ("nginx".into(), procs::version("nginx", "-v")),
        ("sniproxy".into(), procs::version("sniproxy", "-V")),
        ("openssl".into(), procs::version("openssl", "version")),
    ];
    let mut command = String::from(
        "bash bench/install-peers && cargo build --release && cargo run --release -p eastwest-bench --bin load",
    );
    if args.quick {
        command.push_str(" -- --quick");
    } else if args.runs != 3 {
        command.push_str(&format!(" -- --runs {}", args.runs));
    }
    let meta = report::Meta {
        date: procs::version("date", "-u"),
        command,
        machine,
        sizes: sizes.clone(),
    };
    let md = report::markdown(outcomes, &meta, &charts);
    std::fs::write(&out, md).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("wrote {} and {}", out.display(), chart_dir.display());
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
