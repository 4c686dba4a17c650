//! `BENCHMARKS.md` and its SVG charts from one run's figures: absolute figures (median of the
//! runs, with their spread), eastwest's ratios against the direct path and each peer, and the
//! goals of issue 6 with whether this run met them.

use std::fmt::Write as _;

use super::peers::Kind;
use super::{Figures, Outcome, Sizes, median, spread};

/// A figure of the tables: its label, unit, whether more is better, and how to read it.
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    pub get: fn(&Figures) -> &[f64],
    /// Whether the direct path has it (it has no proxy CPU or memory).
    pub direct: bool,
}

pub const METRICS: [Metric; 12] = [
    Metric {
        key: "bulk1",
        label: "bulk, 1 connection",
        unit: "Gbit/s",
        higher_is_better: true,
        get: |f| &f.bulk1_gbit,
        direct: true,
    },
    Metric {
        key: "bulk8",
        label: "bulk, 8 connections",
        unit: "Gbit/s",
        higher_is_better: true,
        get: |f| &f.bulk8_gbit,
        direct: true,
    },
    Metric {
        key: "cpu_gib1",
        label: "proxy CPU per GiB, 1 connection",
        unit: "s",
        higher_is_better: false,
        get: |f| &f.cpu_s_per_gib1,
        direct: false,
    },
    Metric {
        key: "cpu_gib8",
        label: "proxy CPU per GiB, 8 connections",
        unit: "s",
        higher_is_better: false,
        get: |f| &f.cpu_s_per_gib8,
        direct: false,
    },
    Metric {
        key: "conns",
        label: "new connections per second",
        unit: "/s",
        higher_is_better: true,
        get: |f| &f.conns_per_s,
        direct: true,
    },
    Metric {
        key: "cpu_conn",
        label: "proxy CPU per connection",
        unit: "µs",
        higher_is_better: false,
        get: |f| &f.cpu_us_per_conn,
        direct: false,
    },
    Metric {
        key: "rr",
        label: "round trips per second, 16 connections",
        unit: "/s",
        higher_is_better: true,
        get: |f| &f.rr_per_s,
        direct: true,
    },
    Metric {
        key: "p50",
        label: "round trip p50",
        unit: "µs",
        higher_is_better: false,
        get: |f| &f.rr_p50_us,
        direct: true,
    },
    Metric {
        key: "p99",
        label: "round trip p99",
        unit: "µs",
        higher_is_better: false,
        get: |f| &f.rr_p99_us,
        direct: true,
    },
    Metric {
        key: "p999",
        label: "round trip p99.9",
        unit: "µs",
        higher_is_better: false,
        get: |f| &f.rr_p999_us,
        direct: true,
    },
    Metric {
        key: "cpu_rt",
        label: "proxy CPU per round trip",
        unit: "µs",
        higher_is_better: false,
        get: |f| &f.cpu_us_per_rt,
        direct: false,
    },
    Metric {
        key: "idle",
        label: "user-space memory per idle connection",
        unit: "KiB",
        higher_is_better: false,
        get: |f| &f.idle_kib_per_conn,
        direct: false,
    },
];

/// Issue 6's goals: metric key and the ratio eastwest must reach against the best peer.
pub const GOALS: [(&str, f64); 8] = [
    ("bulk1", 1.3),
    ("bulk8", 1.3),
    ("cpu_gib1", 0.6),
    ("cpu_gib8", 0.6),
    ("cpu_conn", 0.7),
    ("cpu_rt", 0.8),
    ("idle", 0.6),
    ("p99", 1.0),
];

fn metric(key: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.key == key)
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 100.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn measured(outcomes: &[Outcome]) -> Vec<(Kind, &Figures)> {
    outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().map(|f| (o.kind, f)))
        .collect()
}

/// The best peer's median for `m` (haproxy, nginx, sniproxy; not eastwest, not direct).
pub fn best_peer(outcomes: &[Outcome], m: &Metric) -> Option<(Kind, f64)> {
    measured(outcomes)
        .into_iter()
        .filter(|(k, _)| k.is_peer())
        .map(|(k, f)| (k, median((m.get)(f))))
        .filter(|(_, v)| !v.is_nan())
        .reduce(|a, b| {
            let better = if m.higher_is_better {
                b.1 > a.1
            } else {
                b.1 < a.1
            };
            if better { b } else { a }
        })
}

fn eastwest(outcomes: &[Outcome]) -> Option<&Figures> {
    measured(outcomes)
        .into_iter()
        .find(|(k, _)| *k == Kind::Eastwest)
        .map(|(_, f)| f)
}

/// The goals table rows: (label, goal text, eastwest, best peer, ratio, met).
pub fn goals(outcomes: &[Outcome]) -> Vec<(String, String, f64, String, f64, bool)> {
    let Some(ew) = eastwest(outcomes) else {
        return Vec::new();
    };
    GOALS
        .iter()
        .filter_map(|(key, goal)| {
            let m = metric(key)?;
            let (peer, pv) = best_peer(outcomes, m)?;
            let v = median((m.get)(ew));
            let ratio = v / pv;
            let met = if m.higher_is_better {
                ratio >= *goal
            } else {
                ratio <= *goal
            };
            let cmp = if m.higher_is_better { "≥" } else { "≤" };
            Some((
                format!("{} ({})", m.label, m.unit),
                format!("{cmp} {goal} ×"),
                v,
                format!("{} {}", fmt(pv), peer.name()),
                ratio,
                met,
            ))
        })
        .collect()
}

pub struct Meta {
    pub date: String,
    pub command: String,
    pub machine: Vec<(String, String)>,
    pub sizes: Sizes,
}

/// The whole `BENCHMARKS.md`.
pub fn markdown(outcomes: &[Outcome], meta: &Meta, charts: &[(String, String)]) -> String {
    let mut o = String::new();
    let s = &meta.sizes;
    let _ = writeln!(
        o,
        "# Benchmarks: eastwest against haproxy, nginx and sniproxy\n"
    );
    let _ = writeln!(
        o,
        "Written by the load harness (`bench/src/bin/load.rs`) on {}. Rerun it with:\n\n```sh\n{}\n```\n",
        meta.date, meta.command
    );
    o.push_str("## Goals (issue 6), this run\n\n");
    o.push_str("| figure | goal vs best peer | eastwest | best peer | ratio | met |\n|---|---|---|---|---|---|\n");
    for (label, goal, v, peer, ratio, met) in goals(outcomes) {
        let _ = writeln!(
            o,
            "| {label} | {goal} | {} | {peer} | {ratio:.2} | {} |",
            fmt(v),
            if met { "yes" } else { "**no**" }
        );
    }
    o.push_str("\n## Absolute figures\n\n");
    let _ = writeln!(
        o,
        "Median of {} run(s) per proxy; the ± is the spread of the runs ((max − min) / median). \
         — : not applicable (the direct path has no proxy process).\n",
        s.runs
    );
    o.push_str("| figure |");
    let kinds = measured(outcomes);
    for (k, _) in &kinds {
        let _ = write!(o, " {} |", k.name());
    }
    o.push_str("\n|---|");
    for _ in &kinds {
        o.push_str("---|");
    }
    o.push('\n');
    for m in &METRICS {
        let _ = write!(o, "| {} ({}) |", m.label, m.unit);
        for (k, f) in &kinds {
            let v = (m.get)(f);
            if *k == Kind::Direct && !m.direct || v.is_empty() {
                o.push_str(" — |");
            } else {
                let _ = write!(o, " {} ±{:.0} % |", fmt(median(v)), spread(v) * 100.0);
            }
        }
        o.push('\n');
    }
    o.push_str("\n## eastwest's ratios\n\neastwest's median divided by each other's (above 1 is more: better for throughput and rates, worse for costs and latency).\n\n");
    o.push_str("| figure |");
    let others: Vec<_> = kinds.iter().filter(|(k, _)| *k != Kind::Eastwest).collect();
    for (k, _) in &others {
        let _ = write!(o, " vs {} |", k.name());
    }
    o.push_str("\n|---|");
    for _ in &others {
        o.push_str("---|");
    }
    o.push('\n');
    if let Some(ew) = eastwest(outcomes) {
        for m in &METRICS {
            let _ = write!(o, "| {} |", m.label);
            for (k, f) in &others {
                let r = median((m.get)(ew)) / median((m.get)(f));
                if *k == Kind::Direct && !m.direct || r.is_nan() {
                    o.push_str(" — |");
                } else {
                    let _ = write!(o, " {r:.2} |");
                }
            }
            o.push('\n');
        }
    }
    let with_sys: Vec<_> = kinds.iter().filter(|(_, f)| f.syscalls.is_some()).collect();
    if !with_sys.is_empty() {
        o.push_str("\n## System calls (strace -c)\n\nCounted with `strace -f -c` on every proxy thread during a separate fixed run (2,000 connections; 1 GiB over one connection). strace slows the proxy, so only counts are given.\n\n");
        o.push_str("| proxy | per connection | most frequent per connection | per MiB of bulk | most frequent per MiB |\n|---|---|---|---|---|\n");
        for (k, f) in with_sys {
            if let Some(c) = &f.syscalls {
                let top = |v: &[(String, f64)]| {
                    v.iter()
                        .take(4)
                        .map(|(n, x)| format!("{n} {x:.1}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    o,
                    "| {} | {:.1} | {} | {:.2} | {} |",
                    k.name(),
                    c.per_conn,
                    top(&c.conn_top),
                    c.per_mib,
                    top(&c.bulk_top)
                );
            }
        }
    }
    let not_run: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| (o.kind, e)))
        .collect();
    if !not_run.is_empty() {
        o.push_str("\n## Not measured\n\n");
        for (k, e) in not_run {
            let _ = writeln!(o, "- {}: {e}", k.name());
        }
    }
    o.push_str("\n## Checks\n\nBefore measuring, each proxy was checked: ");
    let checks: Vec<String> = outcomes
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| format!("{} ({})", o.kind.name(), o.checks.join(", ")))
        .collect();
    o.push_str(&checks.join("; "));
    o.push_str(".\n\n## Charts\n\n");
    for (file, title) in charts {
        let _ = writeln!(o, "![{title}]({file})");
    }
    o.push_str("\n## Machine and versions\n\n");
    for (k, v) in &meta.machine {
        let _ = writeln!(o, "- {k}: {v}");
    }
    let _ = writeln!(
        o,
        "\n## Method\n\n\
- One proxy at a time, one worker (eastwest `--workers 1`; haproxy `nbthread 1`; nginx one process, `master_process off`; sniproxy is single-threaded), pinned to core 0 with `taskset -c 0`. The load generator and the backends share one thread pinned to core 1.\n\
- Identical routing: the same Istio SNIs (`outbound_.8080_._.echo-a.bench.svc.cluster.local` ...) to the same backends on 127.0.0.2-4; each client sends a real rustls ClientHello (Istio ALPN), then plain bytes (no proxy looks past the hello). Every config is written in `bench/src/load/peers.rs`.\n\
- Bulk: {} over 1 connection, and the same split over 8, client → proxy → sink; the run ends when the sink has confirmed every byte.\n\
- New connections: {} clients, each connect, ClientHello + 64 B, 64 B echoed, close; {} connections or {} s.\n\
- Round trips: {} persistent connections, 64 B echoed back to back; {} round trips or {} s; latency of every round trip.\n\
- Idle memory: {} connections opened (each proves it reached the backend), the proxy's VmRSS before and after, divided.\n\
- Proxy CPU: user + system time of every proxy thread (`/proc/PID/task/*/schedstat`, ns) over the workload, divided by GiB, connections or round trips. On 2 cores the load generator often saturates first; CPU per operation stays comparable when it does.\n\
- A warm-up of 500 connections precedes the runs.",
        human_bytes(s.bulk_bytes),
        s.conn_concurrency,
        s.conn_count,
        s.limit.as_secs(),
        s.rr_conns,
        s.rr_count,
        s.limit.as_secs(),
        s.idle_conns,
    );
    o
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

/// A horizontal bar chart of one figure's medians, eastwest highlighted.
pub fn bar_chart(outcomes: &[Outcome], m: &Metric) -> String {
    let rows: Vec<(Kind, f64)> = measured(outcomes)
        .into_iter()
        .filter(|(k, _)| *k != Kind::Direct || m.direct)
        .map(|(k, f)| (k, median((m.get)(f))))
        .filter(|(_, v)| !v.is_nan())
        .collect();
    let max = rows
        .iter()
        .map(|r| r.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let (w, bar_h, left) = (640.0, 26.0, 130.0);
    let h = 50.0 + bar_h * rows.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="13">"#
    );
    let better = if m.higher_is_better {
        "more is better"
    } else {
        "less is better"
    };
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-weight="bold">{} ({}, {better})</text>"#,
        m.label, m.unit
    );
    for (i, (k, v)) in rows.iter().enumerate() {
        let y = 36.0 + bar_h * i as f64;
        let len = (w - left - 90.0) * v / max;
        let fill = if *k == Kind::Eastwest {
            "#1f77b4"
        } else {
            "#aaaaaa"
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{left}" y="{y}" width="{len:.1}" height="{}" fill="{fill}"/><text x="{:.1}" y="{}">{}</text>"#,
            left - 8.0,
            y + 16.0,
            k.name(),
            bar_h - 6.0,
            left + len + 6.0,
            y + 16.0,
            fmt(*v)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(kind: Kind, bulk: f64, cpu: f64) -> Outcome {
        let f = Figures {
            bulk1_gbit: vec![bulk],
            cpu_s_per_gib1: vec![cpu],
            ..Figures::default()
        };
        Outcome {
            kind,
            result: Ok(f),
            checks: vec!["right backend".into()],
        }
    }

    #[test]
    fn goals_compare_with_the_best_peer_not_direct() {
        let o = vec![
            outcome(Kind::Direct, 100.0, f64::NAN),
            outcome(Kind::Eastwest, 26.0, 0.3),
            outcome(Kind::Haproxy, 20.0, 0.8),
            outcome(Kind::HaproxySplice, 18.0, 0.6),
        ];
        let g = goals(&o);
        let bulk = g.iter().find(|r| r.0.starts_with("bulk, 1")).unwrap();
        assert!((bulk.4 - 1.3).abs() < 1e-9 && bulk.5, "{bulk:?}");
        assert!(bulk.3.ends_with("haproxy"));
        let cpu = g
            .iter()
            .find(|r| r.0.starts_with("proxy CPU per GiB, 1"))
            .unwrap();
        assert!((cpu.4 - 0.5).abs() < 1e-9 && cpu.5 && cpu.3.ends_with("haproxy-splice"));
    }

    #[test]
    fn report_and_chart_name_every_proxy() {
        let o = vec![
            outcome(Kind::Eastwest, 26.0, 0.3),
            outcome(Kind::Nginx, 20.0, 0.7),
        ];
        let meta = Meta {
            date: "d".into(),
            command: "c".into(),
            machine: vec![],
            sizes: Sizes::quick(),
        };
        let md = markdown(&o, &meta, &[]);
        assert!(
            md.contains("| eastwest | nginx |") && md.contains("vs nginx"),
            "{md}"
        );
        let svg = bar_chart(&o, &METRICS[0]);
        assert!(svg.contains(">eastwest<") && svg.contains(">nginx<") && svg.ends_with("</svg>\n"));
    }
}
