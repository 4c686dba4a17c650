//! The listener and its connections: TLS, then HTTP/1.1 through hyper. While the server is
//! "down" the port stays bound but every accepted socket is closed at once, and open
//! connections (watches included) are cut, as when a real API server goes away.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::controls::Availability;
use crate::handler;
use crate::shared::Shared;

/// Pause after a failed accept (e.g. EMFILE) so the loop does not spin on the error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

pub(crate) async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut availability = shared.controls.availability();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = availability.wait_for(|a| *a == Availability::Shutdown) => return,
        };
        match accepted {
            Ok((socket, _)) if shared.controls.is_up() => {
                tokio::spawn(serve(socket, acceptor.clone(), Arc::clone(&shared)));
            }
            // Down: the client sees its connection closed before the TLS handshake completes.
            Ok((socket, _)) => drop(socket),
            Err(e) => {
                tracing::debug!(error = %e, "kube-double accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

async fn serve(socket: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let mut availability = shared.controls.availability();
    let connection = async move {
        let tls = match acceptor.accept(socket).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!(error = %e, "kube-double TLS handshake failed");
                return;
            }
        };
        let service = service_fn(move |req| handler::handle(Arc::clone(&shared), req));
        if let Err(e) = http1::Builder::new()
            .serve_connection(TokioIo::new(tls), service)
            .await
        {
            tracing::debug!(error = %e, "kube-double connection ended");
        }
    };
    // Dropping the connection future closes the socket mid-whatever, like a dead server.
    tokio::select! {
        () = connection => {}
        _ = availability.wait_for(|a| *a != Availability::Up) => {}
    }
}
