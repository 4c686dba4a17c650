//! The command line. Every `run` option can also come from an `EASTWEST_*` environment variable
//! and, where it makes sense, the YAML config file; a flag beats the environment, which beats
//! the file, which beats the default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "eastwest",
    version,
    about = "An east-west gateway for multi-cluster service meshes: reads the SNI of each TLS \
             ClientHello and forwards the still-encrypted bytes to a local endpoint of the \
             service it names (Istio AUTO_PASSTHROUGH), with splice(2)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run(Box<RunArgs>),
    /// Build a two-cluster world on loopback (CAs, mTLS backends, one gateway per cluster), call
    /// across it, and check what a person needs to see. Exits 0 only if every check held.
    Demo(DemoArgs),
    /// What a running gateway routes to, one row per endpoint (like `istioctl proxy-config
    /// endpoints`): ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER; or JSON.
    Clusters(crate::clusters::ClustersArgs),
    /// Make the mesh's certificates: a root, a plug-in CA per cluster (Istio's `cacerts`),
    /// SPIFFE workload certificates. Replaces Istio's Makefile.selfsigned.mk.
    #[command(subcommand)]
    Certs(crate::certs::CertsCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BalanceArg {
    /// Each new connection to the next endpoint in turn.
    RoundRobin,
    /// Power of two choices on active connections.
    P2c,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForwardArg {
    /// splice(2) on Linux, buffered copy elsewhere.
    Auto,
    /// Always the buffered copy.
    Copy,
}

fn duration(s: &str) -> Result<Duration, String> {
    eastwest_control::parse_duration(s)
}

/// A string value checked by one of the config file's own checks, so flag and file agree.
fn checked(
    check: fn(&str) -> Result<(), String>,
) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |s: &str| check(s).map(|()| s.to_string())
}

/// A count of at least 1, worded as the config file words it (clap's own range message would
/// print `usize::MAX` as the upper bound).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("0 is out of range (at least 1)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a whole number: {e}")),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// YAML config file: listeners, hosts, timeouts, limits, static services (see README).
    #[arg(long, env = "EASTWEST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the TLS listener [default: 0.0.0.0:15443]. Not allowed when the config file
    /// lists `listeners` (give each its `listen` there).
    #[arg(long, env = "EASTWEST_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Address of the admin HTTP server (/healthz/ready, /stats/prometheus) [default: 0.0.0.0:15021].
    #[arg(long, env = "EASTWEST_ADMIN", value_name = "ADDR")]
    pub admin: Option<SocketAddr>,

    /// An extra address serving only the metrics (/stats/prometheus), where Envoy serves them
    /// for Prometheus and Kiali: 0.0.0.0:15090 in a drop-in Deployment [default: none].
    #[arg(long, env = "EASTWEST_STATS", value_name = "ADDR")]
    pub stats: Option<SocketAddr>,

    /// Data-path worker threads [default: the CPUs this process may use, respecting taskset
    /// and cgroup CPU limits].
    #[arg(long, env = "EASTWEST_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Service hosts that may be reached, like an Istio Gateway's `hosts`: exact names,
    /// `*.suffix`, or `*`. Repeatable; the environment variable takes a comma-separated list
    /// [default: *.local]. Not allowed when the config file lists `listeners` (give each its
    /// `hosts` there).
    #[arg(
        long = "hosts",
        env = "EASTWEST_HOSTS",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub hosts: Vec<String>,

    /// Static route: `HOST:PORT[/SUBSET]=IP:PORT[,IP:PORT...]`, e.g.
    /// `west.west.svc.cluster.local:8080=127.0.0.1:9000,127.0.0.1:9001`. Repeatable; the
    /// environment variable separates routes with `;`.
    #[arg(
        long = "endpoints",
        env = "EASTWEST_ENDPOINTS",
        value_name = "ROUTE",
        value_delimiter = ';'
    )]
    pub endpoints: Vec<String>,

    /// YAML file of services and endpoints, reloaded when it changes.
    #[arg(long, env = "EASTWEST_SERVICES_FILE", value_name = "FILE")]
    pub services_file: Option<PathBuf>,

    /// Learn routes from the Kubernetes API (Services and EndpointSlices): in a pod with its
    /// service account, elsewhere from $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "EASTWEST_KUBE")]
    pub kube: bool,

    /// Kubeconfig file for the Kubernetes API (implies --kube).
    #[arg(long, env = "EASTWEST_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context (implies --kube) [default: the file's current-context].
    #[arg(long, env = "EASTWEST_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,

    /// The cluster's ID, as Istio's `clusterID`: logs, metrics, /debug/routes
    /// [default: Kubernetes]. Needs --kube.
    #[arg(long, env = "EASTWEST_CLUSTER_ID", value_name = "ID",
          value_parser = checked(eastwest_control::check_cluster_id))]
    pub cluster_id: Option<String>,

    /// Service hosts are `<name>.<namespace>.svc.<DOMAIN>` [default: cluster.local]. Needs --kube.
    #[arg(long, env = "EASTWEST_CLUSTER_DOMAIN", value_name = "DOMAIN",
          value_parser = checked(eastwest_control::check_dns_name))]
    pub cluster_domain: Option<String>,

    /// The cluster's Istio network (`topology.istio.io/network`), reported in metrics.
    /// Needs --kube.
    #[arg(long, env = "EASTWEST_NETWORK", value_name = "NAME")]
    pub network: Option<String>,

    /// The namespace the gateway runs in: DestinationRules there apply first and `exportTo`
    /// is judged from it, as for an Istio gateway proxy [default: $POD_NAMESPACE, else
    /// istio-system]. Needs --kube.
    #[arg(long, env = "EASTWEST_GATEWAY_NAMESPACE", value_name = "NS",
          value_parser = checked(eastwest_control::check_namespace))]
    pub gateway_namespace: Option<String>,

    /// Watch only this namespace (repeatable; the environment variable takes a comma-separated
    /// list) [default: all namespaces]. Needs --kube.
    #[arg(long = "namespace", env = "EASTWEST_NAMESPACE", value_name = "NS",
          value_delimiter = ',', value_parser = checked(eastwest_control::check_namespace))]
    pub namespaces: Vec<String>,

    /// Service port that a plain DNS-name SNI (not `outbound_.<port>_...`) is routed to
    /// [default: 443]. Not allowed when the config file lists `listeners` (give each its
    /// `target_port` there).
    #[arg(long, env = "EASTWEST_TARGET_PORT", value_name = "PORT")]
    pub target_port: Option<u16>,

    /// Accept only Istio mTLS and forward only to Istio mTLS endpoints: a ClientHello must
    /// offer one of Istio's ALPNs (istio, istio-peer-exchange, istio-http/1.0, istio-http/1.1,
    /// istio-h2), and a Kubernetes endpoint's pod must carry security.istio.io/tlsMode=istio.
    /// `--istio-mtls-only=false` turns off what the config file turned on [default: off, so
    /// non-Istio clients work; the shipped Kubernetes manifests turn it on].
    #[arg(long, env = "EASTWEST_ISTIO_MTLS_ONLY", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub istio_mtls_only: Option<bool>,

    /// How to pick an endpoint [default: round-robin].
    #[arg(long, env = "EASTWEST_BALANCE", value_enum)]
    pub balance: Option<BalanceArg>,

    /// How to move bytes [default: auto].
    #[arg(long, env = "EASTWEST_FORWARD", value_enum)]
    pub forward: Option<ForwardArg>,

    /// Time allowed for a complete ClientHello [default: 15s].
    #[arg(long, env = "EASTWEST_SNIFF_TIMEOUT", value_parser = duration, value_name = "DURATION")]
    pub sniff_timeout: Option<Duration>,

    /// Time allowed for one upstream connect [default: 10s].
    #[arg(long, env = "EASTWEST_CONNECT_TIMEOUT", value_parser = duration, value_name = "DURATION")]
    pub connect_timeout: Option<Duration>,

    /// Close connections with no bytes either way for this long [default: 1h].
    #[arg(long, env = "EASTWEST_IDLE_TIMEOUT", value_parser = duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,

    /// On SIGTERM/SIGINT, how long open connections may continue [default: 20s].
    #[arg(long, env = "EASTWEST_DRAIN_TIMEOUT", value_parser = duration, value_name = "DURATION")]
    pub drain_timeout: Option<Duration>,

    /// Largest ClientHello accepted, in bytes [default: 65536].
    #[arg(long, env = "EASTWEST_MAX_CLIENT_HELLO", value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(512..=1_048_576))]
    pub max_client_hello: Option<u32>,

    /// Connections open at once; more are refused [default: 100000].
    #[arg(long, env = "EASTWEST_MAX_CONNECTIONS", value_name = "N",
          value_parser = at_least_one)]
    pub max_connections: Option<usize>,

    /// Connections still sending their ClientHello past which a new one gets only
    /// --sniff-timeout-pressured to send its own [default: 4096].
    #[arg(long, env = "EASTWEST_MAX_SNIFFING", value_name = "N",
          value_parser = at_least_one)]
    pub max_sniffing: Option<usize>,

    /// Kubernetes watches are ended by the API server after this long and re-opened; one
    /// silent for this + 5s is taken as stalled and re-opened, a list silent for this + 10s is
    /// retried (whole seconds, 1s to 1h) [default: 60s]. Needs --kube or `clusters:`.
    #[arg(long, env = "EASTWEST_WATCH_TIMEOUT", value_name = "DURATION",
          value_parser = eastwest_control::parse_watch_timeout)]
    pub watch_timeout: Option<Duration>,

    /// Sniff timeout of connections accepted past --max-sniffing [default: 1s].
    #[arg(long, env = "EASTWEST_SNIFF_TIMEOUT_PRESSURED", value_parser = duration, value_name = "DURATION")]
    pub sniff_timeout_pressured: Option<Duration>,

    /// Upstream connect attempts per connection, each to another endpoint, 1 to 16 (each may
    /// take the whole connect timeout while the client waits) [default: 3].
    #[arg(long, env = "EASTWEST_CONNECT_ATTEMPTS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub connect_attempts: Option<u32>,

    /// Log format [default: text].
    #[arg(long, env = "EASTWEST_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the gateways' access log too.
    #[arg(long)]
    pub verbose: bool,
}
