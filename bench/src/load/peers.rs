//! The proxies compared, each started on the same routing table (SNI → backend address) with
//! one worker, pinned to the proxy core: eastwest, haproxy 2.6 (tcp mode, `req.ssl_sni`,
//! without and with `option splice-auto`), nginx stream with `ssl_preread`, sniproxy, and the
//! direct path with no proxy. Each one's config is written here, in full, so a reader can check
//! that no peer was handicapped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::procs::{self, Proc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Eastwest,
    Haproxy,
    HaproxySplice,
    Nginx,
    Sniproxy,
    Direct,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Direct,
        Kind::Eastwest,
        Kind::HaproxySplice,
        Kind::Haproxy,
        Kind::Nginx,
        Kind::Sniproxy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Eastwest => "eastwest",
            Kind::Haproxy => "haproxy",
            Kind::HaproxySplice => "haproxy-splice",
            Kind::Nginx => "nginx",
            Kind::Sniproxy => "sniproxy",
            Kind::Direct => "direct",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn is_peer(self) -> bool {
        !matches!(self, Kind::Eastwest | Kind::Direct)
    }

    /// The program this kind runs, to check that it is installed.
    pub fn program(self, eastwest: &str) -> Option<String> {
        match self {
            Kind::Eastwest => Some(eastwest.to_string()),
            Kind::Haproxy | Kind::HaproxySplice => Some("haproxy".into()),
            Kind::Nginx => Some("nginx".into()),
            Kind::Sniproxy => Some("sniproxy".into()),
            Kind::Direct => None,
        }
    }
}

/// One route of the shared table: the Istio SNI a client sends, the host and port it names
/// (eastwest's static route), and the backend it must reach.
#[derive(Clone, Debug)]
pub struct Route {
    pub sni: String,
    pub host: String,
    pub port: u16,
    pub backend: SocketAddr,
}

impl Route {
    pub fn new(service: &str, port: u16, backend: SocketAddr) -> Route {
        let host = format!("{service}.bench.svc.cluster.local");
        Route {
            sni: format!("outbound_.{port}_._.{host}"),
            host,
            port,
            backend,
        }
    }
}

/// A started proxy (none for the direct path) and the address clients connect to.
pub struct Running {
    pub kind: Kind,
    pub proc: Option<Proc>,
    listen: SocketAddr,
    routes: Vec<Route>,
}

impl Running {
    /// Where a client for `sni` connects: the proxy's listener, or for the direct path the
    /// backend itself (an unknown name has none: the direct path cannot refuse it).
    pub fn addr_for(&self, sni: &str) -> Option<SocketAddr> {
        match self.kind {
            Kind::Direct => self.routes.iter().find(|r| r.sni == sni).map(|r| r.backend),
            _ => Some(self.listen),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// Writes `kind`'s config into `dir`, starts it pinned to `cpu` and waits until it listens.
pub fn start(
    kind: Kind,
    eastwest: &str,
    routes: &[Route],
    dir: &Path,
    cpu: usize,
) -> Result<Running, String> {
    let err = |e: std::io::Error| format!("{}: {e}", kind.name());
    if kind == Kind::Direct {
        return Ok(Running {
            kind,
            proc: None,
            listen: "127.0.0.1:9".parse().map_err(|e| format!("{e}"))?,
            routes: routes.to_vec(),
        });
    }
    let port = procs::free_port().map_err(err)?;
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = dir.join(format!("{}.log", kind.name()));
    let (program, args) = match kind {
        Kind::Eastwest => (eastwest.to_string(), eastwest_args(routes, listen)?),
        Kind::Haproxy | Kind::HaproxySplice => {
            let cfg = write(
                dir,
                &format!("{}.cfg", kind.name()),
                &haproxy_cfg(routes, listen, kind == Kind::HaproxySplice),
            )
            .map_err(err)?;
            (
                "haproxy".into(),
                vec!["-db".into(), "-f".into(), path(&cfg)],
            )
        }
        Kind::Nginx => {
            let cfg = write(dir, "nginx.conf", &nginx_conf(routes, listen, dir)).map_err(err)?;
            let args = ["-p", &path(dir), "-c", &path(&cfg), "-e", &path(&log)];
            ("nginx".into(), args.map(String::from).to_vec())
        }
        Kind::Sniproxy => {
            let cfg =
                write(dir, "sniproxy.conf", &sniproxy_conf(routes, listen, dir)).map_err(err)?;
            (
                "sniproxy".into(),
                vec!["-f".into(), "-c".into(), path(&cfg)],
            )
        }
        Kind::Direct => unreachable!("handled above"),
    };
    let mut proc = Proc::spawn_pinned(cpu, &program, &args, &log).map_err(err)?;
    procs::wait_listening(&mut proc, listen, Duration::from_secs(10))
        .map_err(|e| format!("{}: {e}: {}", kind.name(), log_tail(&log)))?;
    Ok(Running {
        kind,
        proc: Some(proc),
        listen,
        routes: routes.to_vec(),
    })
}

/// The last lines a proxy logged, for the error that says why it did not start.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

fn write(dir: &Path, name: &str, text: &str) -> std::io::Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(p)
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// eastwest with one worker, static routes, the access log off (as the peers run without one).
fn eastwest_args(routes: &[Route], listen: SocketAddr) -> Result<Vec<String>, String> {
    let admin = procs::free_port().map_err(|e| format!("eastwest: {e}"))?;
    let mut args: Vec<String> = [
        "run",
        "--workers",
        "1",
        "--listen",
        &listen.to_string(),
        "--admin",
        &format!("127.0.0.1:{admin}"),
        "--hosts",
        "*.local",
        "--max-connections",
        "200000",
    ]
    .map(String::from)
    .to_vec();
    for r in routes {
        args.push("--endpoints".into());
        args.push(format!("{}:{}={}", r.host, r.port, r.backend));
    }
    Ok(args)
}

/// haproxy as the seeds' NodePort hop would run it: tcp mode, wait for the ClientHello, route
/// on `req.ssl_sni`; a name that matches no rule has no backend, and haproxy closes it.
fn haproxy_cfg(routes: &[Route], listen: SocketAddr, splice: bool) -> String {
    let mut c = String::new();
    // haproxy sizes its fd limit from maxconn and maxpipes (2 per connection, 2 per pipe, some
    // spare) and refuses to start above the hard limit: as many connections as fit, at most
    // 12,000 (the harness holds up to 10,000 idle; 9,500 under a hard limit of 20,000).
    let fit = procs::fd_limit().saturating_sub(400) / 2;
    let _ = writeln!(c, "global\n    maxconn {}\n    nbthread 1", fit.min(12_000));
    if splice {
        c.push_str("    maxpipes 100\n");
    }
    c.push_str(
        "defaults\n    mode tcp\n    timeout connect 10s\n    timeout client 1h\n    timeout server 1h\n",
    );
    if splice {
        c.push_str("    option splice-auto\n");
    }
    let _ = writeln!(c, "frontend tls\n    bind {listen}");
    c.push_str("    tcp-request inspect-delay 15s\n");
    c.push_str("    tcp-request content accept if { req_ssl_hello_type 1 }\n");
    for (i, r) in routes.iter().enumerate() {
        let _ = writeln!(c, "    use_backend be{i} if {{ req.ssl_sni -i {} }}", r.sni);
    }
    for (i, r) in routes.iter().enumerate() {
        let _ = writeln!(c, "backend be{i}\n    server s{i} {}", r.backend);
    }
    c
}

/// nginx stream with `ssl_preread`, one process (no master), one worker's worth of
/// connections; an unknown name maps to a port that refuses, so nginx closes the client.
fn nginx_conf(routes: &[Route], listen: SocketAddr, dir: &Path) -> String {
    let mut c = String::new();
    c.push_str("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n");
    let _ = writeln!(
        c,
        "daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 400000;\npid {}/nginx.pid;",
        dir.display()
    );
    c.push_str("events { worker_connections 200000; }\nstream {\n");
    // Istio names are longer than the default bucket holds.
    c.push_str("    map_hash_bucket_size 256;\n");
    c.push_str("    map $ssl_preread_server_name $upstream {\n");
    for r in routes {
        let _ = writeln!(c, "        {} {};", r.sni, r.backend);
    }
    c.push_str("        default 127.0.0.1:1;\n    }\n");
    let _ = writeln!(
        c,
        "    server {{\n        listen {listen};\n        ssl_preread on;\n        proxy_pass $upstream;\n        proxy_connect_timeout 10s;\n        proxy_timeout 1h;\n    }}\n}}"
    );
    c
}

/// sniproxy with one table of anchored, escaped names (its table entries are regexes).
fn sniproxy_conf(routes: &[Route], listen: SocketAddr, dir: &Path) -> String {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "user root\npidfile {d}/sniproxy.pid\nerror_log {{\n    filename {d}/sniproxy.err\n    priority warning\n}}",
        d = dir.display()
    );
    let _ = writeln!(
        c,
        "listener {} {} {{\n    protocol tls\n    table bench\n}}",
        listen.ip(),
        listen.port()
    );
    c.push_str("table bench {\n");
    for r in routes {
        let _ = writeln!(c, "    ^{}$ {}", r.sni.replace('.', "\\."), r.backend);
    }
    c.push_str("}\n");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Vec<Route> {
        vec![Route::new(
            "echo-a",
            8080,
            "127.0.0.2:4000".parse().unwrap(),
        )]
    }

    #[test]
    fn every_peer_config_carries_the_route() {
        let l: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let sni = "outbound_.8080_._.echo-a.bench.svc.cluster.local";
        let h = haproxy_cfg(&routes(), l, true);
        assert!(h.contains(&format!("req.ssl_sni -i {sni}")) && h.contains("splice-auto"));
        assert!(!haproxy_cfg(&routes(), l, false).contains("splice"));
        assert!(
            nginx_conf(&routes(), l, Path::new("/t")).contains(&format!("{sni} 127.0.0.2:4000;"))
        );
        let s = sniproxy_conf(&routes(), l, Path::new("/t"));
        assert!(
            s.contains(r"^outbound_\.8080_\._\.echo-a\.bench\.svc\.cluster\.local$ 127.0.0.2:4000")
        );
        let e = eastwest_args(&routes(), l).unwrap();
        assert!(e.contains(&"echo-a.bench.svc.cluster.local:8080=127.0.0.2:4000".to_string()));
    }
}
