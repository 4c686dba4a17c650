//! Real rustls mutual-TLS handshakes over loopback TCP, the way two sidecars in different
//! clusters talk through an east-west gateway: the client sends the Istio cluster SNI and
//! checks the server against the service name it expects.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a failed unwrap is the test failing"
)]

use std::sync::Arc;

use eastwest_certs::rustls::{self, ClientConfig, RootCertStore};
use eastwest_certs::{Ca, Leaf, ServerName, client_config, server_config, spiffe_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const SNI: &str = "outbound_.8080_._.west.west.svc.cluster.local";
const SERVICE: &str = "west.west.svc.cluster.local";
const EAST_ID: &str = "spiffe://cluster.local/ns/east/sa/default";
const WEST_ID: &str = "spiffe://cluster.local/ns/west/sa/default";
const ALPN: &[u8] = b"istio";

struct Mesh {
    root: Ca,
    east: Ca,
    west: Ca,
}

fn mesh() -> Mesh {
    let root = Ca::new_root("Istio").unwrap();
    let east = root.intermediate("east").unwrap();
    let west = root.intermediate("west").unwrap();
    Mesh { root, east, west }
}

fn service() -> ServerName<'static> {
    ServerName::try_from(SERVICE).unwrap()
}

/// What each side saw: each side's view of the peer's SPIFFE ID after a one-message echo,
/// or the error that stopped it.
struct Outcome {
    server: Result<Option<String>, std::io::Error>,
    client: Result<Option<String>, std::io::Error>,
}

/// A client config as a sidecar in the client's cluster would have it: its own leaf, the
/// mesh root, and the service it means to reach.
fn client_cfg(leaf: &Leaf, roots: RootCertStore, expects: ServerName<'static>) -> ClientConfig {
    client_config(leaf, roots, &[ALPN], expects).unwrap()
}

/// `server_leaf` serves on a loopback port (trusting its own root); a client with `client_cfg`
/// connects with the Istio cluster SNI, sends "ping" and expects it back.
async fn handshake(server_leaf: &Leaf, client_cfg: ClientConfig) -> Outcome {
    let mut server_cfg = server_config(server_leaf, server_leaf.root_store()).unwrap();
    server_cfg.alpn_protocols = vec![ALPN.to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(server_cfg));
    let connector = TlsConnector::from(Arc::new(client_cfg));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(ALPN));
        let peer = peer_id(tls.get_ref().1);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.shutdown().await?;
        Ok::<_, std::io::Error>(peer)
    });

    let client = async {
        let tcp = TcpStream::connect(addr).await?;
        let sni = ServerName::try_from(SNI).unwrap();
        let mut tls = connector.connect(sni, tcp).await?;
        let peer = peer_id(tls.get_ref().1);
        // With TLS 1.3 the client completes its handshake before the server has checked the
        // client's certificate, so a rejection by the server shows on this first read.
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok::<_, std::io::Error>(peer)
    }
    .await;
    Outcome {
        server: server.await.unwrap(),
        client,
    }
}

fn peer_id(conn: &rustls::CommonState) -> Option<String> {
    conn.peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(spiffe_id)
}

#[tokio::test]
async fn east_workload_talks_to_west_workload() {
    let mesh = mesh();
    let client = mesh.east.workload(EAST_ID, &[]).unwrap();
    let server = mesh.west.workload(WEST_ID, &[SERVICE]).unwrap();

    let outcome = handshake(
        &server,
        client_cfg(&client, mesh.east.root_store(), service()),
    )
    .await;
    assert_eq!(outcome.server.unwrap().as_deref(), Some(EAST_ID));
    assert_eq!(outcome.client.unwrap().as_deref(), Some(WEST_ID));
}

#[tokio::test]
async fn a_workload_issued_by_the_root_directly_is_accepted_too() {
    let mesh = mesh();
    let client = mesh.root.workload(EAST_ID, &[]).unwrap();
    let server = mesh.west.workload(WEST_ID, &[SERVICE]).unwrap();
    let outcome = handshake(&server, client_cfg(&client, client.root_store(), service())).await;
    assert_eq!(outcome.server.unwrap().as_deref(), Some(EAST_ID));
    assert_eq!(outcome.client.unwrap().as_deref(), Some(WEST_ID));
}

#[tokio::test]
async fn server_rejects_a_client_of_another_root() {
    let mesh = mesh();
    let rogue = Ca::new_root("Istio").unwrap().intermediate("east").unwrap();
    let client = rogue.workload(EAST_ID, &[]).unwrap();
    let server = mesh.west.workload(WEST_ID, &[SERVICE]).unwrap();

    // The client trusts the real root (so it accepts the server); only the server can object.
    let outcome = handshake(
        &server,
        client_cfg(&client, mesh.root.root_store(), service()),
    )
    .await;
    let err = outcome.server.unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    assert!(outcome.client.is_err(), "the client must not get an echo");
}

#[tokio::test]
async fn client_rejects_a_server_of_another_root() {
    let mesh = mesh();
    let rogue = Ca::new_root("Istio").unwrap().intermediate("west").unwrap();
    let client = mesh.east.workload(EAST_ID, &[]).unwrap();
    let server = rogue.workload(WEST_ID, &[SERVICE]).unwrap();
    let outcome = handshake(&server, client_cfg(&client, client.root_store(), service())).await;
    let err = outcome.client.unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    assert!(outcome.server.is_err());
}

#[tokio::test]
async fn client_checks_the_expected_service_not_the_sni() {
    let mesh = mesh();
    let client = mesh.east.workload(EAST_ID, &[]).unwrap();
    let server = mesh.west.workload(WEST_ID, &[SERVICE]).unwrap();
    let elsewhere = ServerName::try_from("reviews.west.svc.cluster.local").unwrap();
    let outcome = handshake(&server, client_cfg(&client, client.root_store(), elsewhere)).await;
    let err = outcome.client.unwrap_err();
    assert!(
        err.to_string()
            .contains("not valid for name \"reviews.west.svc.cluster.local\""),
        "{err}"
    );
}
