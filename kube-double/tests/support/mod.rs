//! Shared by the integration tests: running the real `kubectl` against a server, and a raw
//! HTTP/1.1-over-TLS client (hyper's own) that reads watch streams event by event.
// Each test binary uses part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eastwest_kube_double::{ApiServer, ApiServerOptions, Kubeconfig};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

/// A fresh API server with default options.
pub async fn server() -> ApiServer {
    ApiServer::start(ApiServerOptions::default()).await.unwrap()
}

/// An EndpointSlice `name` of service `ns/svc` with one ready address on port 80.
pub fn slice(name: &str, address: &str) -> Value {
    eastwest_kube_double::fixtures::endpoint_slice("ns", "svc", name)
        .ready_addresses(&[address])
        .tcp_port("http", 80)
        .build()
}

/// Upper bound on any single wait in these tests; generous for a loaded 2-core CI machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// How to get kubectl, for the failure message.
const INSTALL: &str = "these tests drive the real kubectl against the API server double. \
    Install it (Debian/Ubuntu: `apt-get install kubernetes-client`) or set KUBECTL=/path/to/kubectl";

/// The kubectl binary: `$KUBECTL`, else `kubectl` on `PATH`. Missing is a failure, not a skip.
pub fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "KUBECTL={} is not a file: {INSTALL}",
            path.display()
        );
        return path;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| panic!("kubectl not found on PATH: {INSTALL}"))
}

/// kubectl with its own kubeconfig, discovery cache and HOME in a temporary directory.
pub struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(server: &ApiServer) -> Kubectl {
        Kubectl::with_kubeconfig(&server.kubeconfig("kube-double"))
    }

    pub fn with_kubeconfig(config: &Kubeconfig) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        config.write(&kubeconfig).unwrap();
        Kubectl {
            bin: kubectl_binary(),
            dir,
            kubeconfig,
        }
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output();
        tokio::time::timeout(WAIT, output)
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()))
    }

    /// Runs kubectl, asserts success, returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, asserts failure, returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

/// `namespace/name` of every item of a JSON list, sorted.
pub fn item_names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}/{}",
                i["metadata"]["namespace"].as_str().unwrap_or(""),
                i["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

/// Sorted `namespace/name` of the objects of `kind` among `objects`.
pub fn names_of_kind(objects: &[Value], kind: &str) -> Vec<String> {
    let list = serde_json::json!({"items": objects.iter().filter(|o| o["kind"] == kind).collect::<Vec<_>>()});
    item_names(&list)
}

/// An HTTP/1.1 connection over TLS that trusts only the server's CA.
async fn connect(server: &ApiServer) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(async move {
        // Errors here show up on the request or body that was cut.
        let _ = conn.await;
    });
    sender
}

/// Sends `GET path` (with query) on a fresh connection.
pub async fn send(
    server: &ApiServer,
    path: &str,
    token: Option<&str>,
) -> hyper::Response<Incoming> {
    let mut sender = connect(server).await;
    let mut req = Request::get(path).header("host", server.addr().to_string());
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Empty::new()).unwrap();
    tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap()
}

/// `GET path` with the server's token: status, headers and the whole body as JSON.
pub async fn get(server: &ApiServer, path: &str) -> (StatusCode, Value) {
    let (status, _, body) = get_with(server, path, Some(server.token())).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

pub async fn get_with(
    server: &ApiServer,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let response = send(server, path, token).await;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// How a watch stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The final chunk arrived.
    Clean,
    /// The connection was cut mid-stream.
    Cut,
}

/// A watch response read one event at a time.
pub struct WatchStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    buffer: Vec<u8>,
}

impl WatchStream {
    pub async fn open(server: &ApiServer, path: &str) -> WatchStream {
        let response = send(server, path, Some(server.token())).await;
        let (parts, body) = response.into_parts();
        WatchStream {
            status: parts.status,
            headers: parts.headers,
            body,
            buffer: Vec::new(),
        }
    }

    /// The next event, or how the stream ended.
    pub async fn next(&mut self) -> Result<Value, End> {
        loop {
            if let Some(newline) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=newline).collect();
                return Ok(serde_json::from_slice(&line).unwrap());
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) => return Err(End::Cut),
                None => {
                    assert!(
                        self.buffer.is_empty(),
                        "partial event at end: {:?}",
                        self.buffer
                    );
                    return Err(End::Clean);
                }
            }
        }
    }

    /// The next event, which must come within [`WAIT`].
    pub async fn event(&mut self) -> Value {
        match tokio::time::timeout(WAIT, self.next()).await {
            Ok(Ok(event)) => event,
            Ok(Err(end)) => panic!("watch ended ({end:?}) while an event was expected"),
            Err(_) => panic!("no watch event within {WAIT:?}"),
        }
    }

    /// How the stream ends, which must happen within [`WAIT`] and without further events.
    pub async fn end(&mut self) -> End {
        match tokio::time::timeout(WAIT, self.next()).await {
            Ok(Err(end)) => end,
            Ok(Ok(event)) => panic!("expected the end of the watch, got {event}"),
            Err(_) => panic!("watch did not end within {WAIT:?}"),
        }
    }
}

/// `(type, metadata.name, metadata.resourceVersion)` of an event.
pub fn summary(event: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    (
        s(&event["type"]),
        s(&event["object"]["metadata"]["name"]),
        s(&event["object"]["metadata"]["resourceVersion"]),
    )
}
