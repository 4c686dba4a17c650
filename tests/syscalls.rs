//! The system calls a short connection costs the gateway, counted by strace on the real binary:
//! a budget per call, so a change that adds one to every connection fails here rather than
//! only showing as a worse figure in BENCHMARKS.md. Counts, not timings: a slow machine makes
//! the same calls. Connections run one after another, the case where every connection finds
//! the worker idle (an empty timer wheel, no other events to share an `epoll_wait` with).

mod support;

use std::process::Command;
use std::time::Duration;

use eastwest_bench::load::syscalls::Trace;
use eastwest_bench::load::traffic::{self, Backend, Role};
use support::{Gateway, WEST_SNI, bin};

/// Connections traced (after a warm-up of [`WARM_UP`]).
const TRACED: u64 = 400;
const WARM_UP: u64 = 50;
/// Slack per call and connection: a few calls the runtime makes now and then.
const SLACK: f64 = 0.05;

/// What one connection (hello + 64 B echoed + close, both sides half-closing in turn) may
/// cost, per call. Calls not named here may not appear on every connection at all.
const BUDGET: &[(&str, f64)] = &[
    // accept, and the EAGAIN that ends each accept batch.
    ("accept4", 2.0),
    // One peek of the hello; client: hello + 64 B, EOF; upstream: 64 B, EOF.
    ("recvfrom", 5.0),
    // Hello + 64 B upstream, 64 B back.
    ("sendto", 2.0),
    // Register and deregister both sockets (tokio's I/O driver).
    ("epoll_ctl", 4.0),
    // The first direction to end half-closes; the second leaves the FIN to close(2).
    ("shutdown", 1.0),
    ("close", 2.0),
    ("socket", 1.0),
    // Non-blocking connect (EINPROGRESS), then its result.
    ("connect", 1.0),
    ("getsockopt", 1.0),
    // TCP_NODELAY on the upstream socket (the client's is inherited from the listener).
    ("setsockopt", 1.0),
    // tokio's debug builds check that each socket it adopts is non-blocking (F_GETFL); the
    // tests run the debug binary. Release builds make no fcntl call.
    ("fcntl", if cfg!(debug_assertions) { 2.0 } else { 0.0 }),
    // Between connections the worker sleeps: a few wake-ups each (about 3.2 when measured),
    // how many depends on how the events of one connection fall together, so a wide bound.
    ("epoll_wait", 7.0),
];

#[test]
fn a_short_connection_stays_within_its_system_call_budget() {
    let have_strace = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        have_strace,
        "this test needs strace: `apt-get install strace` (bash bench/install-peers installs it)"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let echo = rt
        .block_on(Backend::start([127, 0, 0, 1], Role::Echo))
        .expect("echo backend");
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--workers", "1", "--log-format", "json", "--endpoints"])
        .arg(format!("west.west.svc.cluster.local:8080={}", echo.addr))
        // The access log is one write(2) per connection, and the peers are measured without one.
        .env("RUST_LOG", "info,eastwest::access=off");
    let gw = Gateway::spawn(cmd);
    let hello = traffic::client_hello(WEST_SNI);
    let exchange = |n| {
        rt.block_on(traffic::connection_rate(
            gw.addr(),
            &hello,
            1,
            n,
            Duration::from_secs(120),
        ))
        .expect("connections through the gateway")
        .0
    };
    assert_eq!(exchange(WARM_UP), WARM_UP);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = Trace::attach(gw.child.id(), &dir.path().join("strace.txt")).expect("strace");
    let done = exchange(TRACED);
    let (total, rows) = trace.finish().expect("strace summary");
    assert_eq!(done, TRACED);
    assert_eq!(
        echo.accepted(),
        WARM_UP + TRACED,
        "every connection reached the backend"
    );

    let per = |calls: u64| calls as f64 / TRACED as f64;
    eprintln!("{:.2} system calls per connection", per(total));
    let mut over = Vec::new();
    for (name, calls) in &rows {
        let allowed = BUDGET
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, b)| *b);
        eprintln!("  {name:<12} {:.3} (budget {allowed})", per(*calls));
        if per(*calls) > allowed + SLACK {
            over.push(format!("{name} {:.3} > {allowed}", per(*calls)));
        }
    }
    assert!(
        over.is_empty(),
        "over the per-connection budget: {}",
        over.join(", ")
    );
}
