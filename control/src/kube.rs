//! The Kubernetes source: one cluster's Services and EndpointSlices (discovery.k8s.io/v1),
//! watched with kube-rs's runtime watcher and published as complete route-table snapshots.
//!
//! Owns: reaching the API server ([`connect`]), what is kept of each object (`model`), one
//! store per watch with relist buffering (`store`), the table (`table`), and the loop here that
//! merges the watches, coalesces bursts and publishes.
//!
//! Guarantees: nothing is published before every watch has listed once (so readiness waits for
//! a full view); after that each change is published within [`KubeOptions::max_delay`] plus the
//! build time, bursts in one snapshot; a relist is swapped in whole. While the API server is
//! unreachable, slow, erroring or expiring our resourceVersion, the last table stays in use and
//! the watcher retries with client-go's backoff (0.8 s doubling to 30 s) and relists as needed.

mod connect;
mod model;
mod store;
mod table;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eastwest_proxy::metrics::SourceMetrics;
use eastwest_proxy::routes::Routes;
use futures::stream::{BoxStream, SelectAll, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tracing::{debug, info, warn};

pub use connect::{ConnectError, Connection, response_timeout};
pub use table::Counts;

use crate::services::ServiceSpec;
use model::Object;
use store::{Change, Outcome, Store};

/// What to watch and how to name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeOptions {
    /// The cluster's ID (Istio's `clusterID`): logs and the `source` label of metrics.
    pub cluster_id: String,
    /// Hosts are `<service>.<namespace>.svc.<cluster_domain>`.
    pub cluster_domain: String,
    /// The cluster's network (Istio's `topology.istio.io/network`), reported in
    /// `eastwest_source_info`.
    pub network: String,
    /// Namespaces to watch; empty watches all.
    pub namespaces: Vec<String>,
    /// The gateway's own namespace: DestinationRules there apply first, and `exportTo` is
    /// judged from it (Istio's proxy namespace for rule lookup).
    pub gateway_namespace: String,
    /// Only endpoints whose pod has `security.istio.io/tlsMode: istio` (Istio's sidecar or
    /// waypoint mTLS) take connections; the others are left out of every route.
    pub istio_mtls_only: bool,
    /// Service ports that fixed passthrough listeners forward plain TLS to (istiod's 15012 and
    /// 443): `istio_mtls_only` does not narrow their endpoints (istiod has no sidecar).
    pub passthrough_targets: Vec<(String, u16)>,
    /// A change is published once no other arrived for this long...
    pub quiet: Duration,
    /// ...or at the latest this long after the first unpublished change.
    pub max_delay: Duration,
    /// Objects per list page.
    pub page_size: u32,
    /// Each watch asks the API server to end it after this long (`timeoutSeconds`, whole
    /// seconds) and is then re-opened from where it was (no relist). A watch silent for this
    /// plus 5 s is taken as stalled and re-opened the same way (kube-rs's idle limit), so this
    /// bounds how long a hung watch can hold routes stale. Default 60 s (kube-rs: 290 s).
    pub watch_timeout: Duration,
}

/// [`KubeOptions::watch_timeout`]'s default.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(60);

impl KubeOptions {
    /// Istio's defaults: cluster `Kubernetes`, domain `cluster.local`, all namespaces.
    pub fn new(cluster_id: &str) -> Self {
        KubeOptions {
            cluster_id: cluster_id.to_string(),
            cluster_domain: "cluster.local".into(),
            network: String::new(),
            namespaces: Vec::new(),
            gateway_namespace: table::ROOT_NAMESPACE.into(),
            istio_mtls_only: false,
            passthrough_targets: Vec::new(),
            quiet: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            page_size: 500,
            watch_timeout: DEFAULT_WATCH_TIMEOUT,
        }
    }
}

/// A published snapshot, for logs and benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub version: u64,
    pub routes: usize,
    pub endpoints: usize,
    pub counts: Counts,
    /// Time to build the table.
    pub build: Duration,
    /// The first snapshot (the initial sync is complete).
    pub first: bool,
}

/// One cluster's route source. Make with [`KubeSource::new`], drive with [`KubeSource::run`].
pub struct KubeSource {
    client: Client,
    options: KubeOptions,
    statics: Vec<ServiceSpec>,
    routes: Arc<Routes>,
    metrics: SourceMetrics,
}

/// One watch: a resource in one namespace (or all).
struct Watch {
    resource: Resource,
    scope: Option<String>,
    store: Store,
    /// Reported absent (404: Istio's CRD is not installed) and counted as listed, empty.
    absent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Services,
    EndpointSlices,
    /// As metadata only (labels, for subsets).
    Pods,
    /// `networking.istio.io`, one watch per served version.
    DestinationRules(&'static str),
    /// As metadata only (the region label), cluster-wide whatever `namespaces` says.
    Nodes,
}

impl Resource {
    const ALL: [Resource; 5] = [
        Resource::Services,
        Resource::EndpointSlices,
        Resource::Pods,
        Resource::DestinationRules("v1"),
        Resource::DestinationRules("v1beta1"),
    ];

    fn plural(self) -> &'static str {
        match self {
            Resource::Services => "services",
            Resource::EndpointSlices => "endpointslices",
            Resource::Pods => "pods",
            Resource::DestinationRules(_) => "destinationrules",
            Resource::Nodes => "nodes",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Resource::Services | Resource::Pods | Resource::Nodes => "",
            Resource::EndpointSlices => "discovery.k8s.io",
            Resource::DestinationRules(_) => ISTIO_NETWORKING,
        }
    }

    /// Whether this failure means "do without it": DestinationRules where Istio is not
    /// installed (404); Nodes where RBAC gives namespaces only (403; only region subsets need
    /// them).
    fn absent_on(self, kind: &str) -> bool {
        match self {
            Resource::DestinationRules(_) => kind == "not_found",
            Resource::Nodes => kind == "not_found" || kind == "forbidden",
            _ => false,
        }
    }
}

const ISTIO_NETWORKING: &str = "networking.istio.io";

/// A watch's next item: a change to apply, or a failure the watcher will retry.
enum Item {
    Change(Change),
    Failed(watcher::Error),
}

type Items = SelectAll<BoxStream<'static, (usize, Item)>>;

impl KubeSource {
    /// `statics` (the config file's `services:`, `--endpoints`) are merged into every table.
    pub fn new(
        client: Client,
        options: KubeOptions,
        statics: Vec<ServiceSpec>,
        routes: Arc<Routes>,
        metrics: SourceMetrics,
    ) -> Self {
        KubeSource {
            client,
            options,
            statics,
            routes,
            metrics,
        }
    }

    /// Watches and publishes until the future is dropped; `on_publish` sees every snapshot.
    pub async fn run(self, mut on_publish: impl FnMut(&Published)) {
        let (mut watches, mut items) = self.watches();
        let cluster = self.options.cluster_id.as_str();
        let mut first_change: Option<Instant> = None;
        let mut last_change = Instant::now();
        let mut published_once = false;
        let mut reported: HashSet<String> = HashSet::new();
        loop {
            let due = first_change
                .filter(|_| watches.iter().all(|w| w.store.synced()))
                .map(|first| {
                    (last_change + self.options.quiet).min(first + self.options.max_delay)
                });
            let next = match due {
                Some(at) => match tokio::time::timeout_at(at.into(), items.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        first_change = None;
                        let published = self.publish(&watches, !published_once, &mut reported);
                        published_once = true;
                        on_publish(&published);
                        continue;
                    }
                },
                None => items.next().await,
            };
            // The streams never end (the watcher retries forever); select_all over none would.
            let Some((index, item)) = next else { return };
            let watch = &mut watches[index];
            match item {
                Item::Change(change) => {
                    self.metrics.record_success();
                    // Readable again: should it go away later, that is said again.
                    watch.absent = false;
                    let relist = matches!(change, Change::Init) && watch.store.lists() > 0;
                    if relist {
                        self.metrics.record_relist(watch.resource.plural());
                        info!(cluster, resource = watch.resource.plural(), "relisting");
                    }
                    let synced_before = watch.store.synced();
                    if watch.store.apply(change) == Outcome::Changed {
                        let now = Instant::now();
                        first_change.get_or_insert(now);
                        last_change = now;
                    }
                    if !synced_before && watch.store.synced() {
                        debug!(
                            cluster,
                            resource = watch.resource.plural(),
                            namespace = watch.scope.as_deref().unwrap_or("*"),
                            objects = watch.store.len(),
                            "listed"
                        );
                    }
                }
                Item::Failed(error) => {
                    let failure = Failure::of(&error);
                    if watch.resource.absent_on(failure.kind) {
                        if !watch.absent {
                            watch.absent = true;
                            info!(
                                cluster,
                                resource = watch.resource.plural(),
                                group = watch.resource.group(),
                                "not readable (not served, or not allowed: {}); routing \
                                 without it, and trying again with backoff",
                                failure.kind
                            );
                            if watch.store.mark_absent() == Outcome::Changed {
                                let now = Instant::now();
                                first_change.get_or_insert(now);
                                last_change = now;
                            }
                        }
                    } else {
                        self.report(watch, &error);
                    }
                }
            }
        }
    }

    fn watches(&self) -> (Vec<Watch>, Items) {
        let scopes: Vec<Option<String>> = if self.options.namespaces.is_empty() {
            vec![None]
        } else {
            self.options.namespaces.iter().cloned().map(Some).collect()
        };
        // At least a second: zero would turn kube-rs's idle limit off.
        let timeout = u32::try_from(self.options.watch_timeout.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        let config = watcher::Config::default()
            .page_size(self.options.page_size)
            .timeout(timeout);
        let mut watches = Vec::new();
        let mut items = SelectAll::new();
        for scope in scopes {
            for resource in Resource::ALL {
                let index = watches.len();
                let ns = scope.as_deref();
                let stream = match resource {
                    Resource::Services => changes(
                        api::<Service>(&self.client, ns),
                        config.clone(),
                        model::service,
                    ),
                    Resource::EndpointSlices => changes(
                        api::<EndpointSlice>(&self.client, ns),
                        config.clone(),
                        model::slice,
                    ),
                    Resource::Pods => changes(
                        api::<PartialObjectMeta<Pod>>(&self.client, ns),
                        config.clone(),
                        model::pod,
                    ),
                    // Listed once, below: cluster-scoped.
                    Resource::Nodes => continue,
                    Resource::DestinationRules(version) => {
                        let gvk =
                            GroupVersionKind::gvk(ISTIO_NETWORKING, version, "DestinationRule");
                        let ar = ApiResource::from_gvk_with_plural(&gvk, "destinationrules");
                        let api: Api<DynamicObject> = match ns {
                            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                            None => Api::all_with(self.client.clone(), &ar),
                        };
                        changes(api, config.clone(), model::rule)
                    }
                };
                items.push(stream.map(move |item| (index, item)).boxed());
                watches.push(Watch {
                    resource,
                    scope: scope.clone(),
                    store: Store::default(),
                    absent: false,
                });
            }
        }
        let index = watches.len();
        let nodes: Api<PartialObjectMeta<Node>> = Api::all(self.client.clone());
        items.push(
            changes(nodes, config, model::node)
                .map(move |item| (index, item))
                .boxed(),
        );
        watches.push(Watch {
            resource: Resource::Nodes,
            scope: None,
            store: Store::default(),
            absent: false,
        });
        (watches, items)
    }

    fn publish(&self, watches: &[Watch], first: bool, reported: &mut HashSet<String>) -> Published {
        let started = Instant::now();
        let stores: Vec<&Store> = watches.iter().map(|w| &w.store).collect();
        let previous = self.routes.load_full();
        let cx = table::Context {
            cluster_domain: &self.options.cluster_domain,
            cluster_id: &self.options.cluster_id,
            network: &self.options.network,
            gateway_namespace: &self.options.gateway_namespace,
            istio_mtls_only: self.options.istio_mtls_only,
            passthrough_targets: &self.options.passthrough_targets,
        };
        let (table, counts, problems) =
            table::build(&stores, &cx, &self.statics, previous.as_deref());

        let (routes, endpoints) = (table.route_count(), table.endpoint_count());
        let build = started.elapsed();
        let version = self.routes.publish(table);
        let published = Published {
            version,
            routes,
            endpoints,
            counts,
            build,
            first,
        };
        if first {
            self.metrics.set_synced();
            info!(
                cluster = self.options.cluster_id,
                version,
                routes,
                endpoints,
                services = counts.services,
                slices = counts.slices,
                build_ms = build.as_secs_f64() * 1e3,
                "initial sync complete; route table loaded"
            );
        } else {
            debug!(
                cluster = self.options.cluster_id,
                version, routes, endpoints, "route table updated"
            );
        }
        // Each problem is said once while it lasts (a table is rebuilt on every change), after
        // the line that says the table is in use.
        let now: HashSet<String> = problems.into_iter().collect();
        for problem in now.difference(reported) {
            self.metrics.record_error("destinationrules", "invalid");
            warn!(cluster = self.options.cluster_id, "{problem}");
        }
        *reported = now;
        published
    }

    fn report(&self, watch: &Watch, error: &watcher::Error) {
        let failure = Failure::of(error);
        let resource = watch.resource.plural();
        self.metrics.record_error(resource, failure.kind);
        let scope = match &watch.scope {
            Some(ns) => format!("in namespace {ns}"),
            None => "in all namespaces".to_string(),
        };
        let keeping = if self.routes.is_loaded() {
            "keeping the last good routes"
        } else {
            "not ready until the first full list"
        };
        let hint = match failure.kind {
            "forbidden" => format!(
                "; RBAC must allow verbs [get, list, watch] on resources [{resource}] in \
                 apiGroups [\"{}\"] {scope} (deploy/base/rbac.yaml)",
                watch.resource.group()
            ),
            "unauthorized" => {
                "; the API server rejected the credentials (expired or revoked token, wrong \
                 kubeconfig user)"
                    .to_string()
            }
            "gone" => "; our resourceVersion expired, relisting".to_string(),
            "timeout" => format!(
                "; the API server took the request and then sent nothing for {}s",
                response_timeout(self.options.watch_timeout).as_secs()
            ),
            _ => String::new(),
        };
        warn!(
            cluster = self.options.cluster_id,
            resource,
            kind = failure.kind,
            "cannot {} {resource} {scope}: {error}{hint}; retrying with backoff, {keeping}",
            failure.verb
        );
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The watcher's events for `api`, each object reduced by `reduce` on arrival.
fn changes<K>(
    api: Api<K>,
    config: watcher::Config,
    reduce: fn(&K) -> Option<Object>,
) -> BoxStream<'static, Item>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watcher::watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let item = match event {
                Ok(Event::Init) => Some(Item::Change(Change::Init)),
                Ok(Event::InitDone) => Some(Item::Change(Change::InitDone)),
                Ok(Event::InitApply(k)) => {
                    model::key(&k).map(|key| Item::Change(Change::InitApply(key, reduce(&k))))
                }
                Ok(Event::Apply(k)) => {
                    model::key(&k).map(|key| Item::Change(Change::Apply(key, reduce(&k))))
                }
                Ok(Event::Delete(k)) => model::key(&k).map(|key| Item::Change(Change::Delete(key))),
                Err(e) => Some(Item::Failed(e)),
            };
            std::future::ready(item)
        })
        .boxed()
}

/// A watcher error sorted for the `kind` label and the log.
struct Failure {
    verb: &'static str,
    kind: &'static str,
}

impl Failure {
    fn of(error: &watcher::Error) -> Failure {
        use watcher::Error as W;
        match error {
            W::InitialListFailed(e) => Failure {
                verb: "list",
                kind: client_kind(e),
            },
            W::WatchStartFailed(e) | W::WatchFailed(e) => Failure {
                verb: "watch",
                kind: client_kind(e),
            },
            W::WatchError(status) => Failure {
                verb: "watch",
                kind: status_kind(status.code),
            },
            W::NoResourceVersion => Failure {
                verb: "list",
                kind: "protocol",
            },
        }
    }
}

fn client_kind(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) => status_kind(status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_)
            if timed_out(error) =>
        {
            "timeout"
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => "unreachable",
        kube::Error::Auth(_) => "credentials",
        kube::Error::SerdeError(_)
        | kube::Error::FromUtf8(_)
        | kube::Error::LinesCodecMaxLineLengthExceeded
        | kube::Error::ReadEvents(_) => "protocol",
        _ => "other",
    }
}

/// The response stayed silent past [`response_timeout`]: an I/O timeout somewhere in the chain.
fn timed_out(error: &kube::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

fn status_kind(code: u16) -> &'static str {
    match code {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        410 => "gone",
        429 => "throttled",
        500..=599 => "server_error",
        _ => "api_error",
    }
}
