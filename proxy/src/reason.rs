//! Why a connection ended: a closed set that becomes the `reason` metric label and the
//! access log's `reason` field.

use crate::sni::HelloError;

/// How a connection ended. Every refusal has its own variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Forwarded, and both directions finished (EOF or reset at the end of a stream).
    Closed,
    /// Forwarded, then closed after no bytes moved for the idle timeout.
    IdleTimeout,
    /// Forwarded, then cut when the drain period after SIGTERM ran out.
    Drained,
    /// Forwarded, then a socket error other than a reset at the end of a stream.
    ForwardError,
    // Refusals:
    NotTls,
    NotClientHello,
    ClientHelloTooLarge,
    MalformedClientHello,
    NoSni,
    BadSni,
    BadIstioName,
    SniffTimeout,
    /// More than `max_sniffing` connections were still sending their ClientHello when this one
    /// arrived, and its own did not complete within the shorter `sniff_pressured` timeout.
    SniffOverload,
    /// The client closed (or failed) before a complete ClientHello arrived.
    SniffEof,
    /// `istio_mtls_only` is on and the ClientHello offers none of Istio's ALPNs.
    NotIstioMtls,
    HostNotExposed,
    NoRoute,
    NoReadyEndpoint,
    ConnectFailed,
    ConnectionLimit,
    /// The gateway itself ran short (file descriptors, ephemeral ports, buffers) opening the
    /// upstream connection.
    GatewayResources,
}

impl Reason {
    pub const ALL: [Reason; 21] = [
        Reason::Closed,
        Reason::IdleTimeout,
        Reason::Drained,
        Reason::ForwardError,
        Reason::NotTls,
        Reason::NotClientHello,
        Reason::ClientHelloTooLarge,
        Reason::MalformedClientHello,
        Reason::NoSni,
        Reason::BadSni,
        Reason::BadIstioName,
        Reason::SniffTimeout,
        Reason::SniffOverload,
        Reason::SniffEof,
        Reason::NotIstioMtls,
        Reason::HostNotExposed,
        Reason::NoRoute,
        Reason::NoReadyEndpoint,
        Reason::ConnectFailed,
        Reason::ConnectionLimit,
        Reason::GatewayResources,
    ];

    /// The metric label and log value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Closed => "closed",
            Reason::IdleTimeout => "idle_timeout",
            Reason::Drained => "drained",
            Reason::ForwardError => "forward_error",
            Reason::NotTls => "not_tls",
            Reason::NotClientHello => "not_client_hello",
            Reason::ClientHelloTooLarge => "client_hello_too_large",
            Reason::MalformedClientHello => "malformed_client_hello",
            Reason::NoSni => "no_sni",
            Reason::BadSni => "bad_sni",
            Reason::BadIstioName => "bad_istio_name",
            Reason::SniffTimeout => "sniff_timeout",
            Reason::SniffOverload => "sniff_overload",
            Reason::SniffEof => "sniff_eof",
            Reason::NotIstioMtls => "not_istio_mtls",
            Reason::HostNotExposed => "host_not_exposed",
            Reason::NoRoute => "no_route",
            Reason::NoReadyEndpoint => "no_ready_endpoint",
            Reason::ConnectFailed => "connect_failed",
            Reason::ConnectionLimit => "connection_limit",
            Reason::GatewayResources => "gateway_resources",
        }
    }

    /// Whether the connection was refused before any byte was forwarded.
    pub fn is_refusal(self) -> bool {
        !matches!(
            self,
            Reason::Closed | Reason::IdleTimeout | Reason::Drained | Reason::ForwardError
        )
    }

    /// Position in [`Reason::ALL`] (declaration order), for per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<HelloError> for Reason {
    fn from(e: HelloError) -> Self {
        match e {
            HelloError::NotTls => Reason::NotTls,
            HelloError::NotClientHello => Reason::NotClientHello,
            HelloError::TooLarge => Reason::ClientHelloTooLarge,
            HelloError::Malformed => Reason::MalformedClientHello,
            HelloError::NoSni => Reason::NoSni,
            HelloError::BadSni => Reason::BadSni,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_indexed() {
        let mut labels: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
