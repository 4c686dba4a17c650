//! A small mesh on loopback: mTLS backends that require a client certificate and answer with
//! the caller's SPIFFE ID and which replica served, and a client that calls them the way an
//! Istio sidecar does through an east-west gateway (Istio SNI, its own SPIFFE certificate,
//! the server checked against the service's name rather than the SNI).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eastwest_certs::rustls::{ClientConfig, ServerConfig};
use eastwest_certs::{Leaf, ServerName, spiffe_id};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Istio's ALPN for mTLS between sidecars.
pub const ISTIO_ALPN: &[u8] = b"istio";

/// The Istio SNI for `host:port` (whole service): `outbound_.<port>_._.<host>`.
pub fn istio_sni(host: &str, port: u16) -> String {
    format!("outbound_.{port}_._.{host}")
}

/// One replica of a service: accepts mTLS, requires a client certificate, writes
/// `replica=<name> caller=<spiffe id>\n`, then echoes until EOF.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    served: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
}

impl Backend {
    pub async fn start(name: &str, config: ServerConfig) -> io::Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = watch::channel(false);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (name_s, served_c) = (name.to_string(), served.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return, // drops the listener: connects are refused
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let (acceptor, name, served) = (acceptor.clone(), name_s.clone(), served_c.clone());
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stopped.wait_for(|s| *s) => {}
                        _ = serve_one(tcp, acceptor, &name, &served) => {}
                    }
                });
            }
        });
        Ok(Backend {
            name: name.to_string(),
            addr,
            served,
            stop,
        })
    }

    /// Connections this replica has answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the replica: its port closes (new connects are refused) and open calls end.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

async fn serve_one(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    name: &str,
    served: &AtomicUsize,
) -> io::Result<()> {
    let mut tls = acceptor.accept(tcp).await?;
    let caller = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(spiffe_id)
        .unwrap_or_else(|| "-".into());
    served.fetch_add(1, Ordering::Relaxed);
    tls.write_all(format!("replica={name} caller={caller}\n").as_bytes())
        .await?;
    tls.flush().await?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        tls.write_all(&buf[..n]).await?;
    }
    tls.shutdown().await
}

/// What a backend answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub replica: String,
    pub caller: String,
    /// The server's SPIFFE ID as the client saw it in the handshake.
    pub server: String,
}

/// A sidecar-like client of one service.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
}

impl Client {
    /// `leaf`: the caller's workload certificate; `service`: the DNS name the server's
    /// certificate must carry.
    pub fn new(
        leaf: &Leaf,
        service: &str,
    ) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
        let expected = ServerName::try_from(service.to_string())?;
        let config: ClientConfig =
            eastwest_certs::client_config(leaf, leaf.root_store(), &[ISTIO_ALPN], expected)?;
        Ok(Client {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Connects to `gateway` with `sni`, completes mTLS, reads the greeting, echoes `payload`.
    pub async fn call(&self, gateway: SocketAddr, sni: &str, payload: &[u8]) -> io::Result<Reply> {
        let fut = async {
            let tcp = TcpStream::connect(gateway).await?;
            let name = ServerName::try_from(sni.to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = self.connector.connect(name, tcp).await?;
            let server = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(spiffe_id)
                .unwrap_or_default();
            let mut tls = BufReader::new(tls);
            let mut line = String::new();
            tls.read_line(&mut line).await?;
            let (replica, caller) = parse_greeting(&line).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad greeting {line:?}"))
            })?;
            if !payload.is_empty() {
                tls.get_mut().write_all(payload).await?;
                let mut echo = vec![0u8; payload.len()];
                tls.read_exact(&mut echo).await?;
                if echo != payload {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "echo differs"));
                }
            }
            tls.get_mut().shutdown().await?;
            Ok(Reply {
                replica,
                caller,
                server,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "call timed out"))?
    }
}

/// Bounds one call so a broken path fails instead of hanging.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn parse_greeting(line: &str) -> Option<(String, String)> {
    let mut replica = None;
    let mut caller = None;
    for part in line.split_whitespace() {
        if let Some(v) = part.strip_prefix("replica=") {
            replica = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("caller=") {
            caller = Some(v.to_string());
        }
    }
    Some((replica?, caller?))
}
