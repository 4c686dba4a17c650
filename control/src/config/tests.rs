use super::*;
use crate::EndpointSpec;

const FULL: &str = r#"# every setting
admin: 0.0.0.0:15021
workers: 2
log_format: json
balance: p2c
forward: copy
istio_mtls_only: true
listeners:
  - name: tls
    listen: 0.0.0.0:15443
    hosts: ["*.local", exact.example.com]
    target_port: 8443
  - listen: "[::]:15444"
timeouts:
  sniff: 500ms
  sniff_pressured: 250ms
  connect: 10s
  idle: 1h
  drain: 1m30s
  watch: 2m
limits:
  max_client_hello: 131072
  max_connections: 1000
  max_sniffing: 64
  connect_attempts: 2
  eject_after_failures: 5
  ejection_time: 45s
services_file: services.yaml
services:
  - host: west.west.svc.cluster.local
    port: 8080
    endpoints: [127.0.0.1:9000]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/eastwest/config.yaml"))
}

/// The error's whole message, for assertions on file:line:column, field and wording.
fn error(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error, parsed {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_setting() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.admin, Some("0.0.0.0:15021".parse().unwrap()));
    assert_eq!(c.workers, Some(2));
    assert_eq!(c.log_format, Some(LogFormat::Json));
    assert_eq!(c.balance, Some(Balance::P2c));
    assert_eq!(c.forward, Some(ForwardMode::Copy));
    assert_eq!(c.istio_mtls_only, Some(true));
    let listeners = c.listeners.as_ref().unwrap();
    assert_eq!(
        listeners[0],
        ListenerSpec {
            name: "tls".into(),
            listen: "0.0.0.0:15443".parse().unwrap(),
            hosts: vec!["*.local".into(), "exact.example.com".into()],
            target_port: 8443,
            cluster: None,
            forward_to: None,
            aliases: vec![],
        }
    );
    assert_eq!(
        listeners[1],
        ListenerSpec {
            name: "listener-1".into(),
            listen: "[::]:15444".parse().unwrap(),
            hosts: vec!["*.local".into()],
            target_port: 443,
            cluster: None,
            forward_to: None,
            aliases: vec![],
        }
    );
    assert_eq!(
        c.timeouts(Timeouts::default()),
        Timeouts {
            sniff: Duration::from_millis(500),
            sniff_pressured: Duration::from_millis(250),
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(3600),
            drain: Duration::from_secs(90),
        }
    );
    assert_eq!(c.timeouts.watch, Some(Duration::from_secs(120)));
    assert_eq!(
        c.limits(Limits::default()),
        Limits {
            max_client_hello: 131072,
            max_connections: 1000,
            max_sniffing: 64,
            connect_attempts: 2,
            eject_after_failures: 5,
            ejection_time: Duration::from_secs(45),
        }
    );
    assert_eq!(
        c.services_file.as_deref(),
        Some(Path::new("/etc/eastwest/services.yaml"))
    );
    assert_eq!(
        c.services,
        vec![ServiceSpec {
            host: "west.west.svc.cluster.local".into(),
            port: 8080,
            subset: String::new(),
            endpoints: vec![EndpointSpec::ready("127.0.0.1:9000".parse().unwrap())],
        }]
    );
    let configs = c.listener_configs().unwrap().unwrap();
    assert_eq!(configs[0].name, "tls");
    assert!(configs[0].hosts.matches("exact.example.com"));
    assert!(!configs[0].hosts.matches("other.example.com"));
    assert!(configs[1].hosts.matches("a.local"));
}

#[test]
fn empty_file_leaves_everything_to_defaults() {
    for text in ["", "# nothing\n", "{}\n"] {
        let c = parse(text).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.timeouts(Timeouts::default()), Timeouts::default());
        assert_eq!(c.limits(Limits::default()), Limits::default());
        assert!(c.listener_configs().unwrap().is_none());
    }
}

#[test]
fn file_values_only_replace_what_they_set() {
    let c = parse("timeouts:\n  connect: 3s\nlimits:\n  connect_attempts: 1\n").unwrap();
    let base = Timeouts {
        sniff: Duration::from_secs(1),
        ..Timeouts::default()
    };
    let t = c.timeouts(base);
    assert_eq!(t.connect, Duration::from_secs(3));
    assert_eq!(t.sniff, Duration::from_secs(1));
    assert_eq!(t.idle, base.idle);
    let l = c.limits(Limits::default());
    assert_eq!(l.connect_attempts, 1);
    assert_eq!(l.max_client_hello, Limits::default().max_client_hello);
}

#[test]
fn services_file_paths() {
    let rel = |origin: &str, file: &str| {
        Config::parse(&format!("services_file: {file}\n"), Path::new(origin))
            .unwrap()
            .services_file
            .unwrap()
    };
    assert_eq!(rel("/etc/e/c.yaml", "s.yaml"), Path::new("/etc/e/s.yaml"));
    assert_eq!(
        rel("/etc/e/c.yaml", "../s.yaml"),
        Path::new("/etc/e/../s.yaml")
    );
    assert_eq!(
        rel("/etc/e/c.yaml", "/srv/s.yaml"),
        Path::new("/srv/s.yaml")
    );
    assert_eq!(rel("c.yaml", "s.yaml"), Path::new("s.yaml"));
}

#[test]
fn bad_values_name_file_line_column_and_field() {
    let cases = [
        (
            "admin: 1.2.3.4\n",
            r#"/etc/eastwest/config.yaml:1:8: admin: "1.2.3.4" is not IP:PORT (add the port, e.g. 1.2.3.4:8080)"#,
        ),
        (
            "workers: 0\n",
            "/etc/eastwest/config.yaml:1:10: workers: 0 is out of range (at least 1)",
        ),
        (
            "log_format: xml\n",
            "/etc/eastwest/config.yaml:1:13: log_format: unknown variant `xml`, expected one of text, json",
        ),
        (
            "balance: random\n",
            "/etc/eastwest/config.yaml:1:10: balance: unknown variant `random`, expected one of round_robin, p2c",
        ),
        (
            "forward: splice\n",
            "/etc/eastwest/config.yaml:1:10: forward: unknown variant `splice`, expected one of auto, copy",
        ),
        (
            "workers: 2\ntimeouts:\n  sniff: 15s\n  connect: 10 seconds\n",
            r#"/etc/eastwest/config.yaml:4:12: timeouts.connect: "10 seconds" is not a duration (use 500ms, 10s, 5m, 1h)"#,
        ),
        (
            "timeouts:\n  idle: 30\n",
            r#"/etc/eastwest/config.yaml:2:9: timeouts.idle: "30" has no unit (use 500ms, 10s, 5m, 1h)"#,
        ),
        (
            "timeouts:\n  watch: 1500ms\n",
            r#"/etc/eastwest/config.yaml:2:10: timeouts.watch: "1500ms" is not a watch timeout (whole seconds, 1s to 1h, e.g. 60s)"#,
        ),
        (
            "timeouts:\n  watch: 2h\n",
            r#"/etc/eastwest/config.yaml:2:10: timeouts.watch: "2h" is not a watch timeout (whole seconds, 1s to 1h, e.g. 60s)"#,
        ),
        (
            "limits:\n  max_client_hello: 100\n",
            "/etc/eastwest/config.yaml:2:21: limits.max_client_hello: 100 is out of range (512 to 1048576)",
        ),
        (
            "limits:\n  max_client_hello: 2000000\n",
            "/etc/eastwest/config.yaml:2:21: limits.max_client_hello: 2000000 is out of range (512 to 1048576)",
        ),
        (
            "limits:\n  connect_attempts: 0\n",
            "/etc/eastwest/config.yaml:2:21: limits.connect_attempts: 0 is out of range (1 to 16)",
        ),
        (
            "limits:\n  connect_attempts: 17\n",
            "/etc/eastwest/config.yaml:2:21: limits.connect_attempts: 17 is out of range (1 to 16)",
        ),
        (
            "limits:\n  eject_after_failures: -1\n",
            "/etc/eastwest/config.yaml:2:25: limits.eject_after_failures: -1 is out of range (at least 1)",
        ),
        (
            "listeners:\n  - listen: 0.0.0.0:15443\n    hosts: [\"*.local\", \"*local\"]\n",
            "/etc/eastwest/config.yaml:3:24: listeners[0].hosts[1]: host pattern \"*local\" is not valid: a wildcard must be `*` or `*.suffix`",
        ),
        (
            "listeners:\n  - listen: 0.0.0.0:15443\n    target_port: 0\n",
            "/etc/eastwest/config.yaml:3:18: listeners[0].target_port: 0 is out of range (1 to 65535)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "{text}");
    }
}

#[test]
fn unknown_fields_are_rejected_where_they_are() {
    assert_eq!(
        error("admin: 0.0.0.0:15021\nworker: 2\n"),
        "/etc/eastwest/config.yaml:2:1: worker: unknown field `worker`, expected one of admin, \
         stats, workers, log_format, balance, forward, istio_mtls_only, listeners, timeouts, limits, services_file, services, clusters"
    );
    assert_eq!(
        error("timeouts:\n  sniff: 1s\n  conect: 2s\n"),
        "/etc/eastwest/config.yaml:3:3: timeouts.conect: unknown field `conect`, expected one of \
         sniff, sniff_pressured, connect, idle, drain, watch"
    );
    assert_eq!(
        error("listeners:\n  - listen: 0.0.0.0:1\n    host: [a.local]\n"),
        "/etc/eastwest/config.yaml:3:5: listeners[0].host: unknown field `host`, expected one of \
         name, listen, hosts, target_port, cluster, forward_to, aliases"
    );
}

#[test]
fn wrong_types_and_missing_fields() {
    assert_eq!(
        error("workers: [2]\n"),
        "/etc/eastwest/config.yaml:1:10: workers: expected a number, found a list"
    );
    assert_eq!(
        error("workers: \"2\"\n"),
        "/etc/eastwest/config.yaml:1:10: workers: \"2\" is not a number (write it unquoted)"
    );
    assert_eq!(
        error("timeouts: 10s\n"),
        "/etc/eastwest/config.yaml:1:11: timeouts: expected mapping start"
    );
    assert_eq!(
        error("listeners:\n  - name: tls\n    hosts: [a.local]\n"),
        // serde-saphyr places a missing field at the entry's last key.
        "/etc/eastwest/config.yaml:3:5: listeners[0]: missing field `listen`"
    );
}

#[test]
fn yaml_syntax_and_duplicate_keys() {
    assert_eq!(
        error("workers: 2\nadmin: \"0.0.0.0:15021\n"),
        "/etc/eastwest/config.yaml:3:1: invalid indentation in multiline quoted scalar"
    );
    assert_eq!(
        error("workers: 2\nworkers: 3\n"),
        "/etc/eastwest/config.yaml:2:1: duplicate mapping key `workers` is not allowed here"
    );
}

#[test]
fn listener_checks_across_entries() {
    assert_eq!(
        error("listeners: []\n"),
        "/etc/eastwest/config.yaml:1:12: listeners: the list is empty; give at least one \
         listener, or leave `listeners` out to use --listen"
    );
    assert_eq!(
        error("listeners:\n  - listen: 0.0.0.0:1\n    hosts: []\n"),
        "/etc/eastwest/config.yaml:3:12: listeners[0].hosts: the list is empty, so the listener \
         would expose nothing; leave it out for the default [\"*.local\"]"
    );
    assert_eq!(
        error(
            "listeners:\n  - name: a\n    listen: 0.0.0.0:1\n  - name: a\n    listen: 0.0.0.0:2\n"
        ),
        "/etc/eastwest/config.yaml:4:5: listeners[1].name: \"a\" is already the name of the \
         listener at line 2"
    );
    // Port 0 is a fresh port for each listener, so two of them do not clash.
    assert_eq!(
        parse("listeners:\n  - listen: 127.0.0.1:0\n  - listen: 127.0.0.1:0\n")
            .unwrap()
            .listeners
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        error("listeners:\n  - listen: 0.0.0.0:1\n  - listen: 0.0.0.0:1\n"),
        "/etc/eastwest/config.yaml:3:5: listeners[1].listen: 0.0.0.0:1 is already used by the \
         listener at line 2"
    );
}

#[test]
fn inline_services_are_checked_like_the_services_file() {
    assert_eq!(
        error("services:\n  - host: a.local\n    port: 80\n    endpoints: [10.0.0.1]\n"),
        "/etc/eastwest/config.yaml:4:17: services[0].endpoints[0]: \"10.0.0.1\" is not IP:PORT \
         (add the port, e.g. 10.0.0.1:8080)"
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let e = Config::load(&path).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot read the file: ", path.display())),
        "{msg}"
    );

    std::fs::write(&path, "workers: 4\nservices_file: s.yaml\n").unwrap();
    let c = Config::load(&path).unwrap();
    assert_eq!(c.workers, Some(4));
    assert_eq!(c.services_file, Some(dir.path().join("s.yaml")));

    std::fs::write(&path, "workers: 4\nlimits:\n  max_connections: 0\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:20: limits.max_connections: 0 is out of range (at least 1)",
            path.display()
        )
    );
}

#[test]
fn listener_configs_of_a_config_built_in_code() {
    let c = Config {
        listeners: Some(vec![ListenerSpec {
            name: "x".into(),
            listen: "127.0.0.1:1".parse().unwrap(),
            hosts: vec!["a.*.com".into()],
            target_port: 443,
            cluster: None,
            forward_to: None,
            aliases: vec![],
        }]),
        ..Config::default()
    };
    assert_eq!(
        c.listener_configs().unwrap_err().to_string(),
        "config: listeners[0].hosts: host pattern \"a.*.com\" is not valid: only a leading `*.` \
         wildcard is allowed"
    );
}

const TWO_CLUSTERS: &str = r#"
clusters:
  - name: west
    kubeconfig: kube/west.yaml
    context: west-admin
    network: network2
    namespaces: [west, sample]
  - name: cluster-2
    kubeconfig: /abs/east.yaml
    cluster_domain: corp.example
listeners:
  - name: west
    listen: 0.0.0.0:15443
    cluster: west
  - name: east
    listen: 0.0.0.0:15444
    cluster: cluster-2
"#;

#[test]
fn clusters_each_with_a_kubeconfig_and_a_listener() {
    let c = parse(TWO_CLUSTERS).unwrap();
    assert_eq!(
        c.clusters,
        [
            ClusterSpec {
                name: "west".into(),
                kubeconfig: Some("/etc/eastwest/kube/west.yaml".into()),
                context: Some("west-admin".into()),
                cluster_domain: "cluster.local".into(),
                network: "network2".into(),
                namespaces: vec!["west".into(), "sample".into()],
            },
            ClusterSpec {
                name: "cluster-2".into(),
                kubeconfig: Some("/abs/east.yaml".into()),
                context: None,
                cluster_domain: "corp.example".into(),
                network: String::new(),
                namespaces: vec![],
            },
        ]
    );
    let listeners = c.listeners.unwrap();
    assert_eq!(listeners[0].cluster.as_deref(), Some("west"));
    assert_eq!(listeners[1].cluster.as_deref(), Some("cluster-2"));
}

#[test]
fn cluster_mistakes_name_file_line_and_field() {
    assert_eq!(
        error("clusters: []\n"),
        "/etc/eastwest/config.yaml:1:11: clusters: the list is empty; list at least one \
         cluster, or leave `clusters` out"
    );
    assert_eq!(
        error(&TWO_CLUSTERS.replace("cluster: cluster-2", "cluster: east")),
        "/etc/eastwest/config.yaml:17:14: listeners[1].cluster: \"east\" is not in `clusters:` \
         (known: west, cluster-2)"
    );
    assert_eq!(
        error(&TWO_CLUSTERS.replace("    cluster: cluster-2\n", "")),
        "/etc/eastwest/config.yaml:8:5: clusters[1]: no listener routes to cluster \
         \"cluster-2\"; give one `cluster: cluster-2` under `listeners:`"
    );
    assert_eq!(
        error(&TWO_CLUSTERS.replace("name: cluster-2", "name: west")),
        "/etc/eastwest/config.yaml:8:5: clusters[1].name: \"west\" is already the name of the \
         cluster at line 3"
    );
    let bad_ns = error(&TWO_CLUSTERS.replace("[west, sample]", "[west, Sample]"));
    assert!(
        bad_ns.starts_with("/etc/eastwest/config.yaml:")
            && bad_ns.contains("clusters[0].namespaces[1]")
            && bad_ns.contains("\"Sample\" is not a namespace name"),
        "{bad_ns}"
    );
    let bad_id = error(&TWO_CLUSTERS.replace("name: west\n    kube", "name: we/st\n    kube"));
    assert!(
        bad_id.contains("clusters[0].name") && bad_id.contains("is not a cluster ID"),
        "{bad_id}"
    );
    let unknown = error(&TWO_CLUSTERS.replace("context: west-admin", "contxt: west-admin"));
    assert!(
        unknown.contains(":5:") && unknown.contains("contxt"),
        "{unknown}"
    );
}

#[test]
fn fixed_passthrough_listeners() {
    let c = parse(
        "listeners:\n  - listen: 0.0.0.0:15012\n    forward_to: istiod.istio-system.svc.cluster.local:15012\n",
    )
    .unwrap();
    assert_eq!(
        c.listeners.unwrap()[0].forward_to,
        Some(("istiod.istio-system.svc.cluster.local".into(), 15012))
    );
    let e = error("listeners:\n  - listen: 0.0.0.0:15012\n    forward_to: istiod\n");
    assert!(
        e.starts_with("/etc/eastwest/config.yaml:3:") && e.contains("needs a port"),
        "{e}"
    );
    let e = error("listeners:\n  - listen: 0.0.0.0:15012\n    forward_to: istiod:0\n");
    assert!(e.contains("is not a port"), "{e}");
}

#[test]
fn export_aliases() {
    let c = parse(
        "listeners:\n  - listen: 0.0.0.0:15443\n    aliases:\n      - name: Ratings.bookinfo.svc.mesh2-exports.local.\n        service: ratings.bookinfo.svc.cluster.local\n",
    )
    .unwrap();
    assert_eq!(
        c.listeners.unwrap()[0].aliases,
        [(
            "ratings.bookinfo.svc.mesh2-exports.local".to_string(),
            "ratings.bookinfo.svc.cluster.local".to_string()
        )]
    );
    assert_eq!(
        error("listeners:\n  - listen: 0.0.0.0:1\n    aliases: []\n"),
        "/etc/eastwest/config.yaml:3:14: listeners[0].aliases: the list is empty, so the \
         listener would route nothing; leave it out to route every service"
    );
    let e = error(
        "listeners:\n  - listen: 0.0.0.0:1\n    aliases:\n      - {name: a.local, service: b.local}\n      - {name: a.local, service: c.local}\n",
    );
    assert!(
        e.contains(":5:") && e.contains("aliases[1].name") && e.contains("listed twice"),
        "{e}"
    );
}

/// The drop-in configuration shipped for Kubernetes turns Istio's behaviour on.
#[test]
fn the_shipped_istio_eastwestgateway_config_is_valid_and_istio_strict() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/istio-eastwestgateway.yaml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.istio_mtls_only, Some(true));
    assert_eq!(c.stats, Some("0.0.0.0:15090".parse().unwrap()));
    let listeners = c.listeners.unwrap();
    let fixed: Vec<_> = listeners
        .iter()
        .map(|l| (l.listen.port(), l.forward_to.clone()))
        .collect();
    assert_eq!(
        fixed,
        [
            (15443, None),
            (
                15012,
                Some(("istiod.istio-system.svc.cluster.local".into(), 15012))
            ),
            (
                15017,
                Some(("istiod.istio-system.svc.cluster.local".into(), 443))
            ),
        ]
    );
}

/// The host-mode example (deploy/host/clusters.yaml, what the systemd unit runs) is valid: one
/// listener per cluster, kubeconfigs beside the file.
#[test]
fn the_shipped_host_mode_config_routes_each_cluster_on_its_own_listener() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/host");
    let c = Config::load(&dir.join("clusters.yaml")).unwrap();
    assert_eq!(c.istio_mtls_only, Some(true));
    let clusters: Vec<_> = c
        .clusters
        .iter()
        .map(|k| (k.name.as_str(), k.kubeconfig.clone(), k.network.as_str()))
        .collect();
    assert_eq!(
        clusters,
        [
            ("mesh1", Some(dir.join("mesh1.kubeconfig")), "network1"),
            ("mesh2", Some(dir.join("mesh2.kubeconfig")), "network2"),
        ]
    );
    let listeners: Vec<_> = c
        .listeners
        .unwrap()
        .iter()
        .map(|l| (l.listen.port(), l.cluster.clone()))
        .collect();
    assert_eq!(
        listeners,
        [(15443, Some("mesh1".into())), (15444, Some("mesh2".into()))]
    );
}
