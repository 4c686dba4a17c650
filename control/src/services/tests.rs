use super::*;

const GOOD: &str = r#"services:
  - host: west.west.svc.cluster.local
    port: 8080
    subset: v1
    endpoints:
      - 127.0.0.1:9000
      - "[::1]:9001"
      - address: 127.0.0.1:9002
        ready: false
  - host: West.West.svc.cluster.local.
    port: 8080
    endpoints: []
"#;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn error(text: &str) -> String {
    match parse_services(text, Path::new("services.yaml")) {
        Ok(s) => panic!("expected an error, parsed {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parses_the_documented_format() {
    let specs = parse_services(GOOD, Path::new("services.yaml")).unwrap();
    assert_eq!(
        specs,
        vec![
            ServiceSpec {
                host: "west.west.svc.cluster.local".into(),
                port: 8080,
                subset: "v1".into(),
                endpoints: vec![
                    EndpointSpec::ready(addr("127.0.0.1:9000")),
                    EndpointSpec::ready(addr("[::1]:9001")),
                    EndpointSpec {
                        address: addr("127.0.0.1:9002"),
                        ready: false
                    },
                ],
            },
            ServiceSpec {
                host: "West.West.svc.cluster.local.".into(),
                port: 8080,
                subset: String::new(),
                endpoints: vec![],
            },
        ]
    );
}

#[test]
fn table_keeps_not_ready_out_and_empty_routes_in() {
    let specs = parse_services(GOOD, Path::new("services.yaml")).unwrap();
    let table = build_table(&specs, None);
    let v1 = table
        .lookup("west.west.svc.cluster.local", 8080, "v1")
        .unwrap();
    let addrs: Vec<_> = v1.endpoints.iter().map(|e| e.addr).collect();
    assert_eq!(addrs, vec![addr("127.0.0.1:9000"), addr("[::1]:9001")]);
    // The whole-service route exists with no endpoint: "no ready endpoint", not "no route".
    let whole = table
        .lookup("west.west.svc.cluster.local", 8080, "")
        .unwrap();
    assert!(whole.endpoints.is_empty());
    assert_eq!(table.route_count(), 2);
    assert_eq!(table.endpoint_count(), 2);
}

#[test]
fn a_services_file_must_say_services() {
    let empty = "services.yaml: the file is empty; a services file needs a `services:` list \
                 (`services: []` for none)";
    assert_eq!(error(""), empty);
    assert_eq!(error("# all gone\n\n"), empty);
    assert_eq!(
        error("service: []\n"),
        "services.yaml:1:1: service: unknown field `service`, expected one of services"
    );
    assert!(
        parse_services("services: []\n", Path::new("s"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_entries_name_file_line_and_field() {
    let cases = [
        (
            "services:\n  - host: a.local\n    port: 80\n    endpoints:\n      - 10.0.0.1:80\n      - 10.0.0.1\n",
            r#"services.yaml:6:9: services[0].endpoints[1]: "10.0.0.1" is not IP:PORT (add the port, e.g. 10.0.0.1:8080)"#,
        ),
        (
            "services:\n  - host: a.local\n    port: 80\n    endpoints: []\n  - host: b.local\n    port: 80\n    endpoints:\n      - [::1]:80\n",
            r#"services.yaml:8:9: services[1].endpoints[0]: this is a YAML list, not IP:PORT; quote IPv6 endpoints: "[::1]:9001""#,
        ),
        (
            "services:\n  - host: a.local\n    port: 80\n    endpoints:\n      - address: 10.0.0.1:80\n        ready: maybe\n",
            "services.yaml:6:16: services[0].endpoints[0].ready: invalid boolean",
        ),
        (
            "services:\n  - host: a.local\n    port: 80\n    endpoints:\n      - address: 10.0.0.1:80\n        weight: 3\n",
            "services.yaml:6:9: services[0].endpoints[0].weight: unknown field `weight`, expected one of address, ready",
        ),
        (
            "services:\n  - host: a.local\n    port: 80\n    endpoints:\n      - ready: true\n",
            "services.yaml:5:9: services[0].endpoints[0]: missing field `address`",
        ),
        (
            "services:\n  - host: west west\n    port: 80\n    endpoints: []\n",
            r#"services.yaml:2:11: services[0].host: "west west" is not a DNS name (letters, digits, '-' and '.', e.g. west.west.svc.cluster.local)"#,
        ),
        (
            "services:\n  - host: a.local\n    port: 70000\n    endpoints: []\n",
            "services.yaml:3:11: services[0].port: 70000 is out of range (1 to 65535)",
        ),
        (
            "services:\n  - host: a.local\n    port: 80\n    subset: v_1\n    endpoints: []\n",
            r#"services.yaml:4:13: services[0].subset: "v_1" is not a subset name (letters, digits and '-')"#,
        ),
        (
            "services:\n  - host: a.local\n    endpoints: []\n",
            "services.yaml:3:5: services[0]: missing field `port`",
        ),
        (
            "services:\n  - host: a.local\n    port: 80\n",
            "services.yaml:3:5: services[0]: missing field `endpoints`",
        ),
        (
            "services:\n  - host: a.local\n    prot: 80\n",
            "services.yaml:3:5: services[0].prot: unknown field `prot`, expected one of host, port, subset, endpoints",
        ),
        (
            "services:\n  - host: a.local\n    port: 80\n    endpoints: 10.0.0.1:80\n",
            "services.yaml:4:16: services[0].endpoints: expected sequence start",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(error(text), want, "{text}");
    }
}

#[test]
fn a_service_port_listed_twice_names_both_lines() {
    let text = "services:\n  - host: a.local\n    port: 80\n    endpoints: []\n  - host: b.local\n    port: 80\n    endpoints: []\n  - host: A.local.\n    port: 80\n    endpoints: [10.0.0.1:80]\n";
    assert_eq!(
        error(text),
        "services.yaml:8:5: services[2]: A.local. port 80 is already listed at line 2 \
         (services[0]); list each service port once, with all its endpoints"
    );
    // Another subset of the same port is another route.
    let text = "services:\n  - host: a.local\n    port: 80\n    endpoints: []\n  - host: a.local\n    port: 80\n    subset: v1\n    endpoints: []\n";
    assert_eq!(parse_services(text, Path::new("s")).unwrap().len(), 2);
    let text = "services:\n  - {host: a.local, port: 80, subset: v1, endpoints: []}\n  - {host: a.local, port: 80, subset: v1, endpoints: []}\n";
    assert_eq!(
        error(text),
        "services.yaml:3:5: services[1]: a.local port 80 subset v1 is already listed at line 2 \
         (services[0]); list each service port once, with all its endpoints"
    );
}

#[test]
fn endpoints_flag() {
    assert_eq!(
        parse_endpoints_flag("west.west.svc.cluster.local:8080=10.0.0.7:8080, [fd00::7]:8080")
            .unwrap(),
        ServiceSpec {
            host: "west.west.svc.cluster.local".into(),
            port: 8080,
            subset: String::new(),
            endpoints: vec![
                EndpointSpec::ready(addr("10.0.0.7:8080")),
                EndpointSpec::ready(addr("[fd00::7]:8080")),
            ],
        }
    );
    let v1 = parse_endpoints_flag("a.local:80/v1=127.0.0.1:1").unwrap();
    assert_eq!((v1.port, v1.subset.as_str()), (80, "v1"));
    let empty = parse_endpoints_flag("a.local:80=").unwrap();
    assert!(empty.endpoints.is_empty());

    let cases = [
        (
            "a.local:80",
            r#"--endpoints "a.local:80": expected HOST:PORT=IP:PORT[,IP:PORT...]"#,
        ),
        (
            "a.local=10.0.0.1:80",
            r#"--endpoints "a.local=10.0.0.1:80": "a.local" needs a port: HOST:PORT=IP:PORT"#,
        ),
        (
            "a.local:0=10.0.0.1:80",
            r#"--endpoints "a.local:0=10.0.0.1:80": "0" is not a port (1-65535)"#,
        ),
        (
            "a local:80=10.0.0.1:80",
            r#"--endpoints "a local:80=10.0.0.1:80": "a local" is not a DNS name (letters, digits, '-' and '.', e.g. west.west.svc.cluster.local)"#,
        ),
        (
            "a.local:80/=10.0.0.1:80",
            r#"--endpoints "a.local:80/=10.0.0.1:80": the subset after `/` is empty"#,
        ),
        (
            "a.local:80=10.0.0.1:80,10.0.0.2",
            r#"--endpoints "a.local:80=10.0.0.1:80,10.0.0.2": endpoint 2: "10.0.0.2" is not IP:PORT (add the port, e.g. 10.0.0.2:8080)"#,
        ),
    ];
    for (flag, want) in cases {
        assert_eq!(parse_endpoints_flag(flag).unwrap_err().to_string(), want);
    }
}

#[test]
fn flags_and_file_entries_for_one_route_merge() {
    let mut specs = vec![parse_endpoints_flag("a.local:80=127.0.0.1:1").unwrap()];
    specs.push(parse_endpoints_flag("A.local:80=127.0.0.1:2,127.0.0.1:1").unwrap());
    let table = build_table(&specs, None);
    assert_eq!(table.route_count(), 1);
    assert_eq!(table.lookup("a.local", 80, "").unwrap().endpoints.len(), 2);
}
