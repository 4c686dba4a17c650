//! Real mutual TLS through the real binary: sidecar-like rustls clients and `openssl s_client`
//! handshake with mTLS backends *through* the gateway, which never terminates TLS (the backend
//! sees the client's own SPIFFE ID). Also ClientHellos larger than 4 KiB and one record, and a
//! captured post-quantum hello, which must reach the endpoint byte for byte.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;

use eastwest::world::{Backend, Client, ISTIO_ALPN, istio_sni};
use eastwest_certs::rustls::ClientConfig;
use eastwest_certs::{Ca, Leaf, ServerName, istio_spiffe_id, server_config};
use support::{EVENT_TIMEOUT, Gateway, RawBackend, WEST_SERVICE, WEST_SNI, connect};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

const WEST: &str = "west.west.svc.cluster.local";
const PORT: u16 = 8080;
const OPENSSL: &str = "openssl";

/// Two clusters' trust (one root, intermediates east and west), two mTLS replicas of
/// west.west:8080, and an east workload to call them with.
struct Mesh {
    rt: tokio::runtime::Runtime,
    replicas: [Backend; 2],
    /// The caller: `spiffe://cluster.local/ns/east/sa/sleep`, issued by the east intermediate.
    caller: Leaf,
    /// The replicas' identity, issued by the west intermediate.
    server_id: String,
}

impl Mesh {
    fn new() -> Mesh {
        let root = Ca::new_root("eastwest-tests").unwrap();
        let east = root.intermediate("east").unwrap();
        let west = root.intermediate("west").unwrap();
        let server_id = istio_spiffe_id("cluster.local", "west", "west");
        let server = west.workload(&server_id, &[WEST]).unwrap();
        let cfg = server_config(&server, server.root_store()).unwrap();
        let caller = east
            .workload(&istio_spiffe_id("cluster.local", "east", "sleep"), &[])
            .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let replicas = rt.block_on(async {
            [
                Backend::start("west-0", cfg.clone()).await.unwrap(),
                Backend::start("west-1", cfg).await.unwrap(),
            ]
        });
        Mesh {
            rt,
            replicas,
            caller,
            server_id,
        }
    }

    /// `--endpoints` for west.west:8080 = both replicas.
    fn route(&self) -> String {
        let [r0, r1] = &self.replicas;
        format!("{WEST}:{PORT}={},{}", r0.addr, r1.addr)
    }

    fn replica_addr(&self, name: &str) -> String {
        let r = self.replicas.iter().find(|r| r.name == name).unwrap();
        r.addr.to_string()
    }

    /// The caller's cert, key, intermediates and the root as PEM files, for openssl.
    fn write_pem_files(&self, dir: &Path) {
        let chain = self.caller.chain_pem();
        let intermediates = chain.strip_prefix(self.caller.cert_pem()).unwrap();
        assert!(intermediates.contains("BEGIN CERTIFICATE"));
        for (name, pem) in [
            ("cert.pem", self.caller.cert_pem()),
            ("key.pem", &self.caller.key_pem()),
            ("chain.pem", intermediates),
            ("root.pem", self.caller.root_cert_pem()),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
    }
}

/// Asserts the access-log line of one mTLS call through the gateway.
fn assert_forwarded(line: &serde_json::Value, mesh: &Mesh, replica: &str) {
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["sni"], WEST_SNI, "{line}");
    assert_eq!(line["dst.service"], WEST_SERVICE, "{line}");
    assert_eq!(line["dst.addr"], mesh.replica_addr(replica), "{line}");
}

#[test]
fn rustls_mtls_through_the_gateway_keeps_the_callers_identity_on_both_replicas() {
    const CALLS: usize = 6;
    let mesh = Mesh::new();
    let mut gw = Gateway::start(&["--endpoints", &mesh.route()]);
    let client = Client::new(&mesh.caller, WEST).unwrap();
    let sni = istio_sni(WEST, PORT);
    assert_eq!(sni, WEST_SNI);

    let mut served = BTreeMap::<String, usize>::new();
    for i in 0..CALLS {
        let payload = format!("ping {i}\n");
        let reply = mesh
            .rt
            .block_on(client.call(gw.addr(), &sni, payload.as_bytes()))
            .unwrap_or_else(|e| panic!("call {i}: {e}; gateway log:\n{}", gw.dump()));
        // The backend saw the east workload's certificate: the gateway did not terminate TLS.
        assert_eq!(reply.caller, mesh.caller.spiffe_id());
        // And the client verified the replica's own certificate, not one of the gateway's.
        assert_eq!(reply.server, mesh.server_id);
        assert_forwarded(&gw.wait_access(), &mesh, &reply.replica);
        *served.entry(reply.replica).or_default() += 1;
    }
    // Round robin (the default) over two replicas and sequential calls: an even split.
    assert_eq!(
        served,
        BTreeMap::from([("west-0".into(), CALLS / 2), ("west-1".into(), CALLS / 2)])
    );
    assert_eq!(mesh.replicas[0].served() + mesh.replicas[1].served(), CALLS);
}

/// Connects through `gw` with `config` and `sni`, reads the backend's greeting line, sends
/// `payload` and checks the echo; returns the greeting.
async fn mtls_call(config: ClientConfig, gw: SocketAddr, sni: &str, payload: &[u8]) -> String {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(gw).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let call = async {
        let tls = connector.connect(name, tcp).await.unwrap();
        let mut tls = tokio::io::BufReader::new(tls);
        let mut greeting = String::new();
        tls.read_line(&mut greeting).await.unwrap();
        tls.get_mut().write_all(payload).await.unwrap();
        let mut echo = vec![0u8; payload.len()];
        tls.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, payload);
        tls.get_mut().shutdown().await.unwrap();
        greeting
    };
    tokio::time::timeout(EVENT_TIMEOUT, call)
        .await
        .expect("mTLS call through the gateway timed out")
}

/// `count` made-up ALPN protocol names of 24 bytes each (25 on the wire): padding that a
/// server without ALPN ignores.
fn padding_alpn(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("x-padding-protocol-{i:05}").into_bytes())
        .collect()
}

/// The bytes a rustls client with `config` writes first (its ClientHello, all records).
fn first_flight(config: &ClientConfig, sni: &str) -> Vec<u8> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config.clone()), name).unwrap();
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).unwrap();
    }
    wire
}

/// How many TLS records `wire` holds (complete records only).
fn record_count(wire: &[u8]) -> usize {
    let mut rest = wire;
    let mut n = 0;
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        rest = &rest[(5 + len).min(rest.len())..];
        n += 1;
    }
    n
}

#[test]
fn rustls_client_hellos_over_4_kib_and_over_one_record_route_and_complete_the_handshake() {
    let mesh = Mesh::new();
    let mut gw = Gateway::start(&["--endpoints", &mesh.route()]);
    // ~6 KiB: more than a 4 KiB peek buffer. ~20 KiB: rustls splits it over two records.
    for (padding, min_len, records) in [(250, 4 * 1024, 1), (820, 16 * 1024 + 5, 2)] {
        let mut alpn = padding_alpn(padding);
        alpn.push(ISTIO_ALPN.to_vec());
        let alpn_refs: Vec<&[u8]> = alpn.iter().map(Vec::as_slice).collect();
        let expected = ServerName::try_from(WEST).unwrap();
        let config = eastwest_certs::client_config(
            &mesh.caller,
            mesh.caller.root_store(),
            &alpn_refs,
            expected,
        )
        .unwrap();

        let hello = first_flight(&config, WEST_SNI);
        assert!(hello.len() > min_len, "hello is {} bytes", hello.len());
        let parsed = eastwest_proxy::sni::parse(&hello, 64 * 1024)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.wire_len, hello.len(), "one hello, nothing after it");
        assert_eq!(record_count(&hello), records);
        eprintln!(
            "rustls ClientHello: {} bytes on the wire in {records} record(s)",
            hello.len()
        );

        let greeting = mesh
            .rt
            .block_on(mtls_call(config, gw.addr(), WEST_SNI, b"big hello\n"));
        assert!(
            greeting.contains(&format!("caller={}", mesh.caller.spiffe_id())),
            "{greeting:?}"
        );
        let replica = greeting
            .split_whitespace()
            .find_map(|p| p.strip_prefix("replica="))
            .unwrap();
        assert_forwarded(&gw.wait_access(), &mesh, replica);
    }
}

/// What one `openssl s_client` run printed.
struct SClient {
    stdout: String,
    stderr: String,
}

/// Runs `openssl s_client` against `gw` as the east workload (files from
/// [`Mesh::write_pem_files`] in `dir`), checking the server's certificate for the service name
/// and failing the handshake otherwise. Sends `line`, waits for its echo on stdout, then closes
/// stdin so s_client closes the connection. Every wait is bounded by [`EVENT_TIMEOUT`].
fn s_client(dir: &Path, gw: SocketAddr, extra: &[&str], line: &str) -> SClient {
    let mut child = Command::new(OPENSSL)
        .current_dir(dir)
        .arg("s_client")
        .args(["-connect", &gw.to_string()])
        .args(["-servername", WEST_SNI])
        .args([
            "-cert",
            "cert.pem",
            "-key",
            "key.pem",
            "-cert_chain",
            "chain.pem",
        ])
        .args(["-CAfile", "root.pem", "-verify_return_error"])
        .args(["-verify_hostname", WEST])
        // -quiet alone implies -ign_eof, which would keep the connection open after stdin ends.
        .args(["-quiet", "-no_ign_eof"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(l);
        }
    });
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        let _ = err_tx.send(s);
    });

    stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = String::new();
    let echoed = loop {
        match lines.recv_timeout(EVENT_TIMEOUT) {
            Ok(l) => {
                out.push_str(&l);
                out.push('\n');
                if l == line {
                    break true;
                }
            }
            Err(_) => break false, // s_client exited or hung: report what it printed
        }
    };
    drop(stdin);
    // stdout closes when s_client exits.
    while let Ok(l) = lines.recv_timeout(EVENT_TIMEOUT) {
        out.push_str(&l);
        out.push('\n');
    }
    let stderr = err_rx.recv_timeout(EVENT_TIMEOUT);
    let _ = child.kill(); // only if it hung; a no-op error if it exited
    let status = child.wait().unwrap();
    let stderr = stderr.unwrap_or_else(|_| "(s_client hung)".into());
    assert!(
        echoed,
        "no echo of {line:?} from s_client ({status}); stdout:\n{out}\nstderr:\n{stderr}"
    );
    SClient {
        stdout: out,
        stderr,
    }
}

#[test]
fn openssl_s_client_mtls_through_the_gateway() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    mesh.write_pem_files(dir.path());
    let mut gw = Gateway::start(&["--endpoints", &mesh.route()]);

    // OpenSSL 3.0 sends the underscore SNI as given (it does not validate -servername).
    let run = s_client(
        dir.path(),
        gw.addr(),
        &["-alpn", "istio"],
        "hello from openssl",
    );
    let caller = format!("caller={}", mesh.caller.spiffe_id());
    assert!(
        run.stdout.starts_with("replica=west-") && run.stdout.contains(&caller),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    // -verify_return_error would have aborted the handshake on a bad chain or name.
    assert!(!run.stderr.contains("verify error"), "{}", run.stderr);
    let replica = run.stdout[..run.stdout.find(' ').unwrap()]
        .strip_prefix("replica=")
        .unwrap();
    assert_forwarded(&gw.wait_access(), &mesh, replica);
}

#[test]
fn openssl_s_client_refuses_a_server_without_the_service_name() {
    // The same run, but expecting a name the replicas' certificate does not carry: proves the
    // positive test above really verified the server through the gateway.
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    mesh.write_pem_files(dir.path());
    let gw = Gateway::start(&["--endpoints", &mesh.route()]);
    let out = Command::new(OPENSSL)
        .current_dir(dir.path())
        .arg("s_client")
        .args(["-connect", &gw.addr().to_string()])
        .args(["-servername", WEST_SNI])
        .args([
            "-cert",
            "cert.pem",
            "-key",
            "key.pem",
            "-cert_chain",
            "chain.pem",
        ])
        .args(["-CAfile", "root.pem", "-verify_return_error"])
        .args(["-verify_hostname", "other.west.svc.cluster.local"])
        .args(["-quiet", "-no_ign_eof"])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("hostname mismatch"), "{stderr}");
}

#[test]
fn openssl_client_hello_over_4_kib_routes_and_completes_the_handshake() {
    let mesh = Mesh::new();
    let dir = tempfile::tempdir().unwrap();
    mesh.write_pem_files(dir.path());
    let mut gw = Gateway::start(&["--endpoints", &mesh.route()]);

    let mut alpn: Vec<String> = padding_alpn(250)
        .into_iter()
        .map(|p| String::from_utf8(p).unwrap())
        .collect();
    alpn.push("istio".into());
    let alpn = alpn.join(",");
    let run = s_client(
        dir.path(),
        gw.addr(),
        &["-alpn", &alpn, "-msg", "-msgfile", "msgs.txt"],
        "big hello from openssl",
    );
    assert!(
        run.stdout
            .contains(&format!("caller={}", mesh.caller.spiffe_id())),
        "{}",
        run.stdout
    );
    // -msg logs e.g. ">>> TLS 1.3, Handshake [length 1a3c], ClientHello".
    let msgs = std::fs::read_to_string(dir.path().join("msgs.txt")).unwrap();
    let hello_len = msgs
        .lines()
        .find(|l| l.starts_with(">>>") && l.ends_with("ClientHello"))
        .and_then(|l| l.split("[length ").nth(1)?.split(']').next())
        .map(|hex| usize::from_str_radix(hex, 16).unwrap())
        .unwrap_or_else(|| panic!("no ClientHello in -msg output:\n{msgs}"));
    eprintln!("openssl ClientHello: {hello_len} bytes (handshake message)");
    assert!(hello_len > 4 * 1024, "ClientHello is {hello_len} bytes");
    let replica = run.stdout[..run.stdout.find(' ').unwrap()]
        .strip_prefix("replica=")
        .unwrap();
    assert_forwarded(&gw.wait_access(), &mesh, replica);
}

#[test]
fn post_quantum_client_hello_reaches_the_endpoint_byte_for_byte() {
    // Captured from a rustls client offering X25519MLKEM768 (group 0x11ec, a 1216-byte share).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proxy/tests/data/pq_client_hello.bin"
    );
    let hello = std::fs::read(path).unwrap();
    let parsed = eastwest_proxy::sni::parse(&hello, 64 * 1024)
        .unwrap()
        .unwrap();
    assert_eq!(parsed.sni.as_str(), WEST_SNI);
    assert_eq!(parsed.wire_len, hello.len());
    assert!(
        hello.windows(4).any(|w| w == [0x11, 0xec, 0x04, 0xc0]),
        "no X25519MLKEM768 key share"
    );
    assert!(hello.len() > 1448, "larger than one Ethernet segment");

    let backend = RawBackend::bind();
    let mut gw = Gateway::start(&["--endpoints", &backend.west_route()]);
    let mut client = connect(gw.addr());
    // As it would arrive over Ethernet: a full segment, then the rest.
    client.set_nodelay(true).unwrap();
    client.write_all(&hello[..1448]).unwrap();
    client.write_all(&hello[1448..]).unwrap();
    client.write_all(b"first application bytes").unwrap();
    client.shutdown(Shutdown::Write).unwrap();

    let mut up = backend.accept();
    let mut got = Vec::new();
    up.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), hello.len() + 23);
    assert!(
        got[..hello.len()] == hello[..],
        "the hello changed on the way"
    );
    assert_eq!(&got[hello.len()..], b"first application bytes");
    drop(up);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    let line = gw.wait_access();
    assert_eq!(line["reason"], "closed", "{line}");
    assert_eq!(line["dst.service"], WEST_SERVICE, "{line}");
    assert_eq!(line["bytes_sent"], got.len() as u64, "{line}");
}
