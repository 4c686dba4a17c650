//! `eastwest run`: merges flags, environment and config file into the proxy's settings, starts
//! the route source, the admin server and the data-path workers, and drains on SIGTERM/SIGINT
//! (a second signal stops at once).
//!
//! Threads: `config.workers` data-path threads (one current-thread tokio runtime each, see
//! `eastwest_proxy::server`), and this main thread running a current-thread runtime for the
//! admin server, the route source and signals, so neither a scrape nor a reload runs on a worker.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use eastwest_control::kube::{Connection, DEFAULT_WATCH_TIMEOUT, KubeOptions, KubeSource};
use eastwest_control::{Config, FileSource, ReloadEvent, ServiceSpec};
use eastwest_proxy::admin::{self, AdminState, NamedRoutes};
use eastwest_proxy::config::{Balance, ForwardMode, Limits, ListenerConfig, ProxyConfig, Timeouts};
use eastwest_proxy::hosts::HostPatterns;
use eastwest_proxy::metrics::Metrics;
use eastwest_proxy::routes::Routes;
use eastwest_proxy::server::Gateway;

use crate::cli::{BalanceArg, ForwardArg, RunArgs};
use crate::logging::{self, LogFormat};

const DEFAULT_LISTEN: &str = "0.0.0.0:15443";
const DEFAULT_ADMIN: &str = "0.0.0.0:15021";
/// Plain DNS-name SNIs go to the service's TLS port, as with an Istio `PASSTHROUGH` server on 443.
const DEFAULT_TARGET_PORT: u16 = 443;
/// How often the services file is checked for changes (mtime, size, inode).
const FILE_POLL: Duration = Duration::from_secs(1);

/// Everything `run` needs, merged.
struct Settings {
    proxy: ProxyConfig,
    /// The metrics-only address (Envoy's 15090), if any.
    stats: Option<SocketAddr>,
    log_format: LogFormat,
    /// The route sources; each once.
    sources: Vec<SourceSpec>,
    /// `sources` index of each of `proxy.listeners`.
    listener_sources: Vec<usize>,
}

/// Where a set of listeners gets its routes.
enum SourceSpec {
    /// The services file (reloaded) and/or static services.
    File {
        services_file: Option<PathBuf>,
        statics: Vec<ServiceSpec>,
    },
    /// A Kubernetes cluster's API, plus static services.
    Kube {
        connection: Connection,
        options: Box<KubeOptions>,
        statics: Vec<ServiceSpec>,
    },
}

impl SourceSpec {
    /// The name in logs, metrics and `/debug/routes`.
    fn name(&self) -> &str {
        match self {
            SourceSpec::File {
                services_file: Some(_),
                ..
            } => "file",
            SourceSpec::File { .. } => "static",
            SourceSpec::Kube { options, .. } => &options.cluster_id,
        }
    }
}

/// The pod's namespace, as Istio's gateway Deployment passes it (downward API), if valid.
fn pod_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|ns| eastwest_control::check_namespace(ns).is_ok())
}

/// Istio's default `clusterID`.
const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

pub fn main(args: RunArgs) -> ExitCode {
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("eastwest: {e:#}");
            return ExitCode::from(2);
        }
    };
    logging::init(settings.log_format);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("eastwest: cannot start the control runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("eastwest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn settings(args: &RunArgs) -> Result<Settings> {
    let file = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let workers = match args.workers.map(usize::from).or(file.workers) {
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let listeners = match file.listener_configs()? {
        Some(ls) => {
            refuse_single_listener_flags(args)?;
            ls
        }
        None => vec![ListenerConfig {
            name: "tls".into(),
            listen: args.listen.unwrap_or(parse_addr(DEFAULT_LISTEN)?),
            hosts: if args.hosts.is_empty() {
                HostPatterns::default_local()
            } else {
                HostPatterns::parse(&args.hosts).context("--hosts")?
            },
            target_port: args.target_port.unwrap_or(DEFAULT_TARGET_PORT),
            forward_to: None,
            aliases: None,
        }],
    };
    let mut timeouts = file.timeouts(Timeouts::default());
    if let Some(d) = args.sniff_timeout {
        timeouts.sniff = d;
    }
    if let Some(d) = args.sniff_timeout_pressured {
        timeouts.sniff_pressured = d;
    }
    if let Some(d) = args.connect_timeout {
        timeouts.connect = d;
    }
    if let Some(d) = args.idle_timeout {
        timeouts.idle = d;
    }
    if let Some(d) = args.drain_timeout {
        timeouts.drain = d;
    }
    let mut limits = file.limits(Limits::default());
    if let Some(n) = args.max_client_hello {
        limits.max_client_hello = n as usize;
    }
    if let Some(n) = args.max_connections {
        limits.max_connections = n;
    }
    if let Some(n) = args.max_sniffing {
        limits.max_sniffing = n;
    }
    if let Some(n) = args.connect_attempts {
        limits.connect_attempts = n;
    }
    let balance = match args.balance {
        Some(BalanceArg::RoundRobin) => Balance::RoundRobin,
        Some(BalanceArg::P2c) => Balance::P2c,
        None => file.balance.unwrap_or_default(),
    };
    let forward = match args.forward {
        Some(ForwardArg::Auto) => ForwardMode::Auto,
        Some(ForwardArg::Copy) => ForwardMode::Copy,
        None => file.forward.unwrap_or_default(),
    };
    let istio_mtls_only = args
        .istio_mtls_only
        .or(file.istio_mtls_only)
        .unwrap_or(false);
    let log_format = match (args.log_format, file.log_format) {
        (Some(f), _) => f,
        (None, Some(eastwest_control::LogFormat::Json)) => LogFormat::Json,
        _ => LogFormat::Text,
    };
    let mut static_services = file.services.clone();
    for e in &args.endpoints {
        static_services.push(eastwest_control::parse_endpoints_flag(e)?);
    }
    let services_file = args.services_file.clone().or(file.services_file.clone());
    let (mut sources, listener_sources) =
        route_sources(args, &file, services_file, static_services, istio_mtls_only)?;
    // Each source learns which of its service ports fixed passthrough listeners forward to.
    for (listener, source) in listeners.iter().zip(&listener_sources) {
        if let (Some(target), Some(SourceSpec::Kube { options, .. })) =
            (&listener.forward_to, sources.get_mut(*source))
        {
            options.passthrough_targets.push(target.clone());
        }
    }
    let admin = Some(
        args.admin
            .or(file.admin)
            .unwrap_or(parse_addr(DEFAULT_ADMIN)?),
    );
    Ok(Settings {
        proxy: ProxyConfig {
            listeners,
            admin,
            workers,
            timeouts,
            limits,
            balance,
            forward,
            istio_mtls_only,
        },
        stats: args.stats.or(file.stats),
        log_format,
        sources,
        listener_sources,
    })
}

/// The default source (flags, environment, the file's `services`/`services_file`) and one per
/// `clusters:` entry, and which one each listener uses.
fn route_sources(
    args: &RunArgs,
    file: &Config,
    services_file: Option<PathBuf>,
    statics: Vec<ServiceSpec>,
    istio_mtls_only: bool,
) -> Result<(Vec<SourceSpec>, Vec<usize>)> {
    let kube = args.kube || args.kubeconfig.is_some() || args.context.is_some();
    let watch_timeout = args
        .watch_timeout
        .or(file.timeouts.watch)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    if args.watch_timeout.is_some() && !kube && file.clusters.is_empty() {
        bail!(
            "--watch-timeout applies to Kubernetes watches, and there are none; add --kube (or \
             --kubeconfig) or list `clusters:` in the config file"
        );
    }
    let default = if kube {
        if let Some(f) = &services_file {
            bail!(
                "--kube and the services file {} would both feed the same listeners; choose \
                 one (static --endpoints and `services:` can go with either)",
                f.display()
            );
        }
        let mut options =
            KubeOptions::new(args.cluster_id.as_deref().unwrap_or(DEFAULT_CLUSTER_ID));
        options.istio_mtls_only = istio_mtls_only;
        options.watch_timeout = watch_timeout;
        if let Some(d) = &args.cluster_domain {
            options.cluster_domain = d.clone();
        }
        options.network = args.network.clone().unwrap_or_default();
        options.namespaces = args.namespaces.clone();
        if let Some(ns) = args.gateway_namespace.clone().or_else(pod_namespace) {
            options.gateway_namespace = ns;
        }
        Some(SourceSpec::Kube {
            connection: Connection {
                kubeconfig: args.kubeconfig.clone(),
                context: args.context.clone(),
            },
            options: Box::new(options),
            statics,
        })
    } else {
        let mut given = Vec::new();
        if args.cluster_id.is_some() {
            given.push("--cluster-id");
        }
        if args.cluster_domain.is_some() {
            given.push("--cluster-domain");
        }
        if args.network.is_some() {
            given.push("--network");
        }
        if !args.namespaces.is_empty() {
            given.push("--namespace");
        }
        if args.gateway_namespace.is_some() {
            given.push("--gateway-namespace");
        }
        if !given.is_empty() {
            bail!(
                "{} describe the Kubernetes source, which is off; add --kube (or --kubeconfig)",
                given.join(", ")
            );
        }
        (services_file.is_some() || !statics.is_empty()).then_some(SourceSpec::File {
            services_file,
            statics,
        })
    };
    let mut sources: Vec<SourceSpec> = default.into_iter().collect();
    let has_default = !sources.is_empty();
    for c in &file.clusters {
        let mut options = KubeOptions::new(&c.name);
        options.istio_mtls_only = istio_mtls_only;
        options.watch_timeout = watch_timeout;
        options.cluster_domain = c.cluster_domain.clone();
        options.network = c.network.clone();
        options.namespaces = c.namespaces.clone();
        if let Some(ns) = args.gateway_namespace.clone().or_else(pod_namespace) {
            options.gateway_namespace = ns;
        }
        if sources.iter().any(|s| s.name() == c.name) {
            bail!(
                "cluster {:?} of the config file has the same ID as the --kube source; give it \
                 another --cluster-id",
                c.name
            );
        }
        sources.push(SourceSpec::Kube {
            connection: Connection {
                kubeconfig: c.kubeconfig.clone(),
                context: c.context.clone(),
            },
            options: Box::new(options),
            statics: Vec::new(),
        });
    }
    let listener_sources = match &file.listeners {
        None => {
            if !has_default {
                bail!(
                    "no endpoints to route to: pass --kube (or --kubeconfig FILE) to learn them \
                     from Kubernetes, --endpoints 'HOST:PORT=IP:PORT[,IP:PORT...]', \
                     --services-file FILE, or --config FILE with `services` or `services_file`"
                );
            }
            vec![0]
        }
        Some(listeners) => listeners
            .iter()
            .map(|l| match &l.cluster {
                Some(name) => sources
                    .iter()
                    .position(|s| matches!(s, SourceSpec::Kube { options, .. } if &options.cluster_id == name))
                    .context("a listener's cluster is checked when the file is read"),
                None if has_default => Ok(0),
                None => bail!(
                    "listener {:?} has no route source: give it `cluster: NAME` (a `clusters:` \
                     entry), or pass --kube, --endpoints or --services-file",
                    l.name
                ),
            })
            .collect::<Result<Vec<_>>>()?,
    };
    Ok((sources, listener_sources))
}

/// `--listen`, `--hosts` and `--target-port` describe the one listener used when the config file
/// lists none. Beside `listeners:` they would do nothing, so an operator narrowing exposure
/// with `EASTWEST_HOSTS` would believe it applied: refuse instead.
fn refuse_single_listener_flags(args: &RunArgs) -> Result<()> {
    let mut given = Vec::new();
    if args.listen.is_some() {
        given.push("--listen/EASTWEST_LISTEN");
    }
    if !args.hosts.is_empty() {
        given.push("--hosts/EASTWEST_HOSTS");
    }
    if args.target_port.is_some() {
        given.push("--target-port/EASTWEST_TARGET_PORT");
    }
    if given.is_empty() {
        return Ok(());
    }
    let file = args
        .config
        .as_deref()
        .map_or_else(String::new, |p| format!(" {}", p.display()));
    let verb = if given.len() == 1 { "is" } else { "are" };
    bail!(
        "{} {verb} set, but --listen, --hosts and --target-port shape only the single default \
         listener, and the config file{file} lists `listeners:`; set each listener's listen, \
         hosts and target_port there instead",
        given.join(" and ")
    )
}

fn parse_addr(s: &str) -> Result<SocketAddr> {
    s.parse().with_context(|| format!("bad address {s}"))
}

async fn serve(settings: Settings) -> Result<()> {
    // Signal handlers first: a SIGTERM that lands while the workers start must drain, not kill.
    let mut signals = Signals::new()?;
    match eastwest_proxy::raise_fd_limit() {
        Ok(n) => tracing::info!(limit = n, "open files limit"),
        Err(e) => tracing::warn!("could not read or raise the open files limit: {e}"),
    }
    let metrics = Arc::new(Metrics::new());
    let mut started = Vec::new();
    for spec in &settings.sources {
        started.push(start_source(spec, &metrics).await?);
    }
    let listener_routes = settings
        .listener_sources
        .iter()
        .map(|i| started[*i].routes.clone())
        .collect();
    let drain = settings.proxy.timeouts.drain;
    // The admin address is bound before the data listeners, so a busy admin port stops the start
    // before the gateway has accepted a single connection it would then drop.
    let admin_listener = match settings.proxy.admin {
        Some(addr) => Some(admin::bind(addr).await?),
        None => None,
    };
    let stats_listener = match settings.stats {
        Some(addr) => Some(admin::bind(addr).await?),
        None => None,
    };
    let gateway = Gateway::start(settings.proxy.clone(), listener_routes, &metrics)?;
    for (l, addr) in settings.proxy.listeners.iter().zip(gateway.local_addrs()) {
        tracing::info!(listener = l.name, addr = %addr, workers = settings.proxy.workers, "listening");
    }
    let lifecycle = gateway.lifecycle.clone();
    let state = Arc::new(AdminState {
        config_json: config_json(&settings).to_string(),
        metrics: metrics.clone(),
        sources: started
            .iter()
            .map(|s| NamedRoutes {
                name: s.name.clone(),
                routes: s.routes.clone(),
            })
            .collect(),
        lifecycle: lifecycle.clone(),
    });
    let stats_task = match stats_listener {
        Some(listener) => {
            tracing::info!(addr = %listener.local_addr()?, "stats listening");
            Some(tokio::spawn(admin::serve_stats(listener, state.clone())))
        }
        None => None,
    };
    let admin_task = match admin_listener {
        Some(listener) => {
            tracing::info!(addr = %listener.local_addr()?, "admin listening");
            Some(tokio::spawn(admin::serve(listener, state)))
        }
        None => None,
    };
    let source_tasks: Vec<_> = started
        .into_iter()
        .filter_map(|s| s.task)
        .map(tokio::spawn)
        .collect();

    let signal = signals.recv().await;
    tracing::info!(
        signal,
        ?drain,
        open = lifecycle.open_connections(),
        "draining"
    );
    // A second signal means "stop now" (the operator's second Ctrl-C, or a supervisor that will
    // not wait out the drain timeout): the drain cuts what is left at once.
    let mut second = None;
    gateway
        .drain(drain, async {
            second = Some(signals.recv().await);
        })
        .await;
    for t in source_tasks {
        t.abort();
    }
    for t in [admin_task, stats_task].into_iter().flatten() {
        t.abort();
    }
    match second {
        None => tracing::info!("drained; exiting"),
        Some(signal) => tracing::info!(signal, "second signal: exiting now"),
    }
    Ok(())
}

/// The effective configuration (flags, environment, file and defaults merged), for
/// `/debug/config`.
fn config_json(settings: &Settings) -> serde_json::Value {
    use serde_json::json;
    let p = &settings.proxy;
    let listeners: Vec<_> = p
        .listeners
        .iter()
        .zip(&settings.listener_sources)
        .map(|(l, source)| {
            json!({
                "name": l.name,
                "listen": l.listen.to_string(),
                "hosts": l.hosts.to_strings(),
                "target_port": l.target_port,
                "forward_to": l.forward_to.as_ref().map(|(h, port)| format!("{h}:{port}")),
                "aliases": l.aliases.as_ref().map(|a| {
                    a.iter()
                        .map(|(name, service)| (name.to_string(), json!(service.as_ref())))
                        .collect::<serde_json::Map<_, _>>()
                }),
                "source": settings.sources.get(*source).map(SourceSpec::name),
            })
        })
        .collect();
    let sources: Vec<_> = settings
        .sources
        .iter()
        .map(|s| match s {
            SourceSpec::File {
                services_file,
                statics,
            } => json!({
                "name": s.name(),
                "kind": "file",
                "services_file": services_file.as_ref().map(|f| f.display().to_string()),
                "static_services": statics.len(),
            }),
            SourceSpec::Kube {
                connection,
                options,
                statics,
            } => json!({
                "name": s.name(),
                "kind": "kubernetes",
                "kubeconfig": connection.kubeconfig.as_ref().map(|f| f.display().to_string()),
                "context": connection.context,
                "cluster_domain": options.cluster_domain,
                "network": options.network,
                "namespaces": options.namespaces,
                "gateway_namespace": options.gateway_namespace,
                "istio_mtls_only": options.istio_mtls_only,
                "watch_timeout": format!("{:?}", options.watch_timeout),
                "static_services": statics.len(),
            }),
        })
        .collect();
    json!({
        "listeners": listeners,
        "sources": sources,
        "admin": p.admin.map(|a| a.to_string()),
        "stats": settings.stats.map(|a| a.to_string()),
        "workers": p.workers,
        "balance": format!("{:?}", p.balance),
        "forward": format!("{:?}", p.forward),
        "istio_mtls_only": p.istio_mtls_only,
        "timeouts": {
            "sniff": format!("{:?}", p.timeouts.sniff),
            "sniff_pressured": format!("{:?}", p.timeouts.sniff_pressured),
            "connect": format!("{:?}", p.timeouts.connect),
            "idle": format!("{:?}", p.timeouts.idle),
            "drain": format!("{:?}", p.timeouts.drain),
        },
        "limits": {
            "max_client_hello": p.limits.max_client_hello,
            "max_connections": p.limits.max_connections,
            "max_sniffing": p.limits.max_sniffing,
            "connect_attempts": p.limits.connect_attempts,
            "eject_after_failures": p.limits.eject_after_failures,
            "ejection_time": format!("{:?}", p.limits.ejection_time),
        },
    })
}

type SourceTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A route source, loaded or connected, and the task that keeps it current.
struct StartedSource {
    name: String,
    routes: Arc<Routes>,
    task: Option<SourceTask>,
}

/// Loads a route source before anything listens: a bad file stops the start with its
/// file:line message, a bad kubeconfig with its path. A Kubernetes source publishes once its
/// first full list is in (readiness waits for it).
async fn start_source(spec: &SourceSpec, metrics: &Arc<Metrics>) -> Result<StartedSource> {
    let routes = Routes::new();
    let name = spec.name().to_string();
    let task: Option<SourceTask> = match spec {
        SourceSpec::File {
            services_file: Some(path),
            statics,
        } => {
            let src = FileSource::start(path.clone(), statics.clone(), routes.clone(), FILE_POLL)?;
            metrics.record_reload(true);
            log_table(&routes, Some(path));
            let metrics = metrics.clone();
            Some(Box::pin(src.watch(move |ev| match ev {
                ReloadEvent::Loaded {
                    version,
                    routes,
                    endpoints,
                } => {
                    metrics.record_reload(true);
                    tracing::info!(version, routes, endpoints, "route table reloaded");
                }
                ReloadEvent::Rejected(e) => {
                    metrics.record_reload(false);
                    tracing::warn!("services file rejected, keeping the last good routes: {e}");
                }
            })))
        }
        SourceSpec::File {
            services_file: None,
            statics,
        } => {
            eastwest_control::publish_static(statics, &routes);
            log_table(&routes, None);
            None
        }
        SourceSpec::Kube {
            connection,
            options,
            statics,
        } => {
            let (client, url) = connection
                .client(options.watch_timeout)
                .await
                .with_context(|| format!("cluster {}", options.cluster_id))?;
            tracing::info!(
                cluster = options.cluster_id,
                server = url,
                namespaces = if options.namespaces.is_empty() {
                    "*".to_string()
                } else {
                    options.namespaces.join(",")
                },
                cluster_domain = options.cluster_domain,
                network = options.network,
                "watching Services and EndpointSlices"
            );
            let source_metrics = metrics.source(
                &options.cluster_id,
                &options.network,
                &options.cluster_domain,
            );
            let source = KubeSource::new(
                client,
                (**options).clone(),
                statics.clone(),
                routes.clone(),
                source_metrics,
            );
            let metrics = metrics.clone();
            Some(Box::pin(source.run(move |_| metrics.record_reload(true))))
        }
    };
    Ok(StartedSource { name, routes, task })
}

fn log_table(routes: &Routes, file: Option<&Path>) {
    if let Some(t) = routes.load().as_ref() {
        tracing::info!(
            version = t.version(),
            routes = t.route_count(),
            endpoints = t.endpoint_count(),
            file = file.map(|f| f.display().to_string()),
            "route table loaded"
        );
    }
}

/// SIGTERM and SIGINT, watched from before anything listens.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
