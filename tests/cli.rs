//! The operator's interface: what `eastwest run` says when it cannot start, that `--help`
//! documents every option, config-file errors that point at `file:line` and the field, the
//! services file reloaded on change (and a bad version rejected while the old routes keep
//! working), the `EASTWEST_*` environment variables, readiness and the route dump.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use support::{
    EVENT_TIMEOUT, Gateway, Upstream, assert_forwards, assert_refused, bin, rustls_client_hello,
    send_tolerating_close, wait_until,
};

/// Every `eastwest run` option.
const RUN_FLAGS: [&str; 29] = [
    "--config",
    "--listen",
    "--admin",
    "--stats",
    "--workers",
    "--hosts",
    "--endpoints",
    "--services-file",
    "--kube",
    "--kubeconfig",
    "--context",
    "--cluster-id",
    "--cluster-domain",
    "--network",
    "--namespace",
    "--gateway-namespace",
    "--target-port",
    "--istio-mtls-only",
    "--balance",
    "--forward",
    "--sniff-timeout",
    "--connect-timeout",
    "--idle-timeout",
    "--drain-timeout",
    "--watch-timeout",
    "--max-client-hello",
    "--max-connections",
    "--connect-attempts",
    "--log-format",
];

/// `cmd` without the `EASTWEST_*` variables of the test's own environment.
fn without_eastwest_env(mut cmd: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("EASTWEST_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// `eastwest ARGS` run to its exit (bounded by EVENT_TIMEOUT), with no `EASTWEST_*` variable
/// inherited from the test's environment.
fn eastwest(args: &[&str]) -> Output {
    eastwest_with_env(args, &[])
}

/// [`eastwest`] with the `EASTWEST_*` variables in `env` set.
fn eastwest_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = without_eastwest_env(Command::new(bin()));
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn eastwest");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(EVENT_TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child's pid; no memory involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("eastwest {args:?} {env:?} did not exit within {EVENT_TIMEOUT:?}");
        }
    }
}

/// `run` on loopback, so that a start that should have failed cannot take the real ports.
fn run(args: &[&str]) -> Output {
    let mut all = vec!["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    all.extend(args);
    eastwest(&all)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_without_endpoints_exits_2_naming_the_endpoints_flag() {
    let out = run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one sentence, got:\n{err}");
    assert!(err.contains("--endpoints"), "{err}");
}

#[test]
fn help_documents_every_command_and_option() {
    let out = eastwest(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "demo", "--help", "--version"] {
        assert!(
            help.contains(word),
            "`eastwest --help` lacks {word}:\n{help}"
        );
    }

    let out = eastwest(&["run", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in RUN_FLAGS {
        assert!(
            help.contains(flag),
            "`eastwest run --help` lacks {flag}:\n{help}"
        );
        // Each option can come from the environment too, and the help says under which name.
        let env = format!("EASTWEST_{}", flag[2..].replace('-', "_").to_uppercase());
        assert!(
            help.contains(&env),
            "`eastwest run --help` lacks {env}:\n{help}"
        );
    }
}

#[test]
fn config_file_errors_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line, field, what) in [
        (
            "limits:\n  ejection_time: 1s\n  max_conections: 5\n",
            3,
            "limits.max_conections",
            "unknown field",
        ),
        (
            "timeouts:\n  sniff: 10 seconds\n",
            2,
            "timeouts.sniff",
            "\"10 seconds\" is not a duration",
        ),
    ] {
        let path = dir.path().join("eastwest.yaml");
        std::fs::write(&path, text).unwrap();
        let out = run(&[
            "--config",
            path.to_str().unwrap(),
            "--endpoints",
            "west.west.svc.cluster.local:8080=127.0.0.1:9",
        ]);
        let err = stderr(&out);
        assert!(!out.status.success(), "started despite:\n{text}");
        let at = format!("{}:{line}:", path.display());
        for part in [at.as_str(), field, what] {
            assert!(
                err.contains(part),
                "error for\n{text}lacks {part:?}:\n{err}"
            );
        }
    }
}

/// Replaces `path` atomically (write a sibling, rename it over), as a ConfigMap update does.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn services(host: &str, endpoint: &Upstream) -> String {
    format!(
        "services:\n  - host: {host}\n    port: 8080\n    endpoints: [\"{}\"]\n",
        endpoint.addr()
    )
}

#[test]
fn the_services_file_is_reloaded_on_change_and_a_bad_version_keeps_the_old_routes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    let (west, east) = (Upstream::bind(), Upstream::bind());
    replace(&path, &services("west.west.svc.cluster.local", &west));
    let mut gw = Gateway::start(&["--services-file", path.to_str().unwrap()]);
    wait_until("/healthz/ready is 200", || {
        gw.admin_get("/healthz/ready") == (200, "ready\n".into())
    });
    let (_, routes) = gw.admin_get("/debug/routes");
    let west_line = "outbound|8080||west.west.svc.cluster.local";
    assert!(routes.contains(west_line), "{routes}");
    assert!(routes.contains(&west.addr().to_string()), "{routes}");
    assert_forwards(
        &mut gw,
        &west,
        "outbound_.8080_._.west.west.svc.cluster.local",
    );

    // A new version replaces the table: east is routed, west no longer is.
    replace(&path, &services("east.east.svc.cluster.local", &east));
    let reloaded = gw.wait_log(|v| v["message"] == "route table reloaded");
    assert_eq!(
        (reloaded["routes"].as_u64(), reloaded["endpoints"].as_u64()),
        (Some(1), Some(1))
    );
    assert_forwards(
        &mut gw,
        &east,
        "outbound_.8080_._.east.east.svc.cluster.local",
    );
    let hello = rustls_client_hello("outbound_.8080_._.west.west.svc.cluster.local");
    assert_refused(&mut gw, "no_route", |c| send_tolerating_close(c, &hello));
    west.assert_no_connection("west after it left the services file");

    // A bad version is rejected with file:line, and the last good routes stay.
    let bad = format!(
        "services:\n  - host: east.east.svc.cluster.local\n    port: 99999\n    endpoints: [\"{}\"]\n",
        east.addr()
    );
    replace(&path, &bad);
    let at = format!("{}:3:", path.display());
    let warn = gw.wait_log(|v| v["level"] == "WARN");
    let message = warn["message"].as_str().unwrap_or_default();
    assert!(message.contains(&at), "the warning lacks {at}: {warn}");
    assert!(
        message.contains("port"),
        "the warning lacks the field: {warn}"
    );
    assert_forwards(
        &mut gw,
        &east,
        "outbound_.8080_._.east.east.svc.cluster.local",
    );
    assert_eq!(
        gw.metric("eastwest_config_reloads_total{result=\"rejected\"}"),
        1.0
    );
    assert_eq!(
        gw.metric("eastwest_config_reloads_total{result=\"ok\"}"),
        2.0
    );
}

#[test]
fn environment_variables_configure_endpoints_and_hosts() {
    let (a, b, c) = (Upstream::bind(), Upstream::bind(), Upstream::bind());
    let endpoints = format!(
        "a.ns.svc.cluster.local:8080={};b.example.com:8080={};c.other.local:8080={}",
        a.addr(),
        b.addr(),
        c.addr()
    );
    let mut cmd = without_eastwest_env(Command::new(bin()));
    cmd.args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--workers", "1", "--log-format", "json"])
        .env("EASTWEST_ENDPOINTS", &endpoints)
        .env("EASTWEST_HOSTS", "*.cluster.local,b.example.com");
    let mut gw = Gateway::spawn(cmd);
    wait_until("/healthz/ready is 200", || {
        gw.admin_get("/healthz/ready").0 == 200
    });
    let (_, routes) = gw.admin_get("/debug/routes");
    for host in ["a.ns.svc.cluster.local", "b.example.com", "c.other.local"] {
        assert!(
            routes.contains(&format!("outbound|8080||{host}")),
            "{routes}"
        );
    }

    assert_forwards(&mut gw, &a, "outbound_.8080_._.a.ns.svc.cluster.local");
    assert_forwards(&mut gw, &b, "outbound_.8080_._.b.example.com");
    // Routed, and `*.local` (the default) would expose it; EASTWEST_HOSTS does not.
    let hello = rustls_client_hello("outbound_.8080_._.c.other.local");
    assert_refused(&mut gw, "host_not_exposed", |s| {
        send_tolerating_close(s, &hello)
    });
    c.assert_no_connection("a host outside EASTWEST_HOSTS");
}

/// A bad services file or `--endpoints` value stops the start with the file:line or the flag;
/// the gateway never starts on a table it could not read.
#[test]
fn a_bad_route_source_at_start_is_refused_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(
        &path,
        "services:\n  - host: west.west.svc.cluster.local\n    port: 8080\n    endpoints: [10.0.0.1]\n",
    )
    .unwrap();
    let out = run(&["--services-file", path.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "started with a bad services file");
    let at = format!("{}:4:", path.display());
    assert!(err.contains(&at), "lacks {at:?}:\n{err}");
    assert!(err.contains("services[0].endpoints[0]"), "{err}");

    let out = run(&["--endpoints", "west.west.svc.cluster.local=10.0.0.1:8080"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--endpoints") && err.contains("needs a port"),
        "{err}"
    );

    let missing = dir.path().join("nope.yaml");
    let out = run(&["--services-file", missing.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
}

/// `--listen`, `--hosts` and `--target-port` (flag or environment) shape the one default
/// listener; beside `listeners:` in the file they would be silently ignored, so the start is
/// refused with one sentence that says where they go instead.
#[test]
fn single_listener_flags_beside_file_listeners_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eastwest.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: tls\n    listen: 127.0.0.1:0\n    hosts: [\"*.local\"]\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let base = [
        "run",
        "--config",
        config,
        "--admin",
        "127.0.0.1:0",
        "--endpoints",
        "west.west.svc.cluster.local:8080=127.0.0.1:9",
    ];
    // A `--flag` is passed on the command line, an `EASTWEST_*` name in the environment.
    for (name, value) in [
        ("--hosts", "*.cluster.local"),
        ("EASTWEST_HOSTS", "*.cluster.local"),
        ("--target-port", "8443"),
        ("EASTWEST_TARGET_PORT", "8443"),
        ("--listen", "127.0.0.1:0"),
        ("EASTWEST_LISTEN", "127.0.0.1:0"),
    ] {
        let mut args = base.to_vec();
        let mut env = Vec::new();
        if name.starts_with("--") {
            args.extend([name, value]);
        } else {
            env.push((name, value));
        }
        let out = eastwest_with_env(&args, &env);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "one sentence, got:\n{err}");
        for part in [
            name,
            "single default listener",
            "listeners:",
            config,
            "listen, hosts and target_port",
        ] {
            assert!(err.contains(part), "{name}: lacks {part:?}: {err}");
        }
    }
}

/// A busy admin port stops the start before any data listener accepts: otherwise the gateway
/// would take connections on its data port and then exit 1, dropping them.
#[test]
fn a_busy_admin_port_fails_the_start_before_anything_listens() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = busy.local_addr().unwrap().to_string();
    let listen = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap()
    };
    let out = eastwest(&[
        "run",
        "--listen",
        &listen.to_string(),
        "--admin",
        &admin,
        "--workers",
        "1",
        "--log-format",
        "json",
        "--endpoints",
        "west.west.svc.cluster.local:8080=127.0.0.1:9",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "started with a busy admin port");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("cannot listen on admin address {admin}")),
        "the error does not name {admin}:\n{err}"
    );
    assert!(
        !err.lines().any(|l| l.contains(r#""message":"listening""#)),
        "the data listener was up before the admin bind failed:\n{err}"
    );
    let refused = std::net::TcpStream::connect(listen).unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{listen}"
    );
}

#[test]
fn a_duration_over_a_year_is_refused_with_exit_2() {
    let out = run(&[
        "--drain-timeout",
        "9999999999999999h",
        "--endpoints",
        "west.west.svc.cluster.local:8080=127.0.0.1:9",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--drain-timeout"), "{err}");
    assert!(err.contains("is longer than a year"), "{err}");
}

/// The flags take the ranges the config file takes: at least one connection, 1 to 16 attempts.
#[test]
fn counts_out_of_range_are_refused_with_exit_2() {
    for (flag, value, range) in [
        ("--max-connections", "0", "at least 1"),
        ("--connect-attempts", "0", "1..=16"),
        ("--connect-attempts", "17", "1..=16"),
    ] {
        let out = run(&[
            flag,
            value,
            "--endpoints",
            "west.west.svc.cluster.local:8080=127.0.0.1:9",
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(range),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn kubernetes_options_that_would_do_nothing_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.yaml");
    std::fs::write(&services, "services: []\n").unwrap();
    let endpoints = [
        "--endpoints",
        "west.west.svc.cluster.local:8080=127.0.0.1:9",
    ];
    // Cluster options without a Kubernetes source.
    for (flag, value) in [
        ("--cluster-id", "west"),
        ("--cluster-domain", "corp.example"),
        ("--network", "network2"),
        ("--namespace", "west"),
        ("--watch-timeout", "30s"),
    ] {
        let out = run(&[&endpoints[..], &[flag, value]].concat());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert_eq!(err.lines().count(), 1, "one sentence, got:\n{err}");
        assert!(
            err.contains(flag) && err.contains("--kube"),
            "{flag}: {err}"
        );
    }
    // Two sources for one listener.
    let out = run(&["--kube", "--services-file", services.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--kube") && err.contains("services.yaml"),
        "{err}"
    );
    // A watch timeout the API server cannot take.
    let out = run(&["--kube", "--watch-timeout", "500ms"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--watch-timeout") && err.contains("whole seconds, 1s to 1h"),
        "{err}"
    );
    // A namespace that cannot exist is refused by the flag parser.
    let out = run(&["--kube", "--namespace", "Bad_NS"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("Bad_NS") && err.contains("namespace"), "{err}");
}

#[test]
fn a_listener_without_a_cluster_needs_a_default_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eastwest.yaml");
    std::fs::write(
        &path,
        "clusters:\n  - name: west\n    kubeconfig: west.kubeconfig\nlisteners:\n  \
         - name: west\n    listen: 127.0.0.1:0\n    cluster: west\n  - name: other\n    \
         listen: 127.0.0.1:0\n",
    )
    .unwrap();
    let out = eastwest(&[
        "run",
        "--config",
        path.to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one sentence, got:\n{err}");
    assert!(
        err.contains("\"other\"") && err.contains("cluster: NAME"),
        "{err}"
    );
}
