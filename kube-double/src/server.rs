//! [`ApiServer`]: starting the double and everything a test does to it (objects, tokens,
//! faults, the request log). The protocol itself lives in `handler`, `list` and `watch`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, broadcast};
use tokio_rustls::TlsAcceptor;

use crate::controls::{Availability, Controls};
use crate::kubeconfig::{Kubeconfig, KubeconfigContext};
use crate::log::{RequestLog, RequestRecord};
use crate::meta::Uids;
use crate::options::ApiServerOptions;
use crate::registry::{Registry, ResourceType};
use crate::shared::Shared;
use crate::store::{Signal, Store};
use crate::{Error, conn, tls};

/// Open watches hear at most this many signals ahead of what they have sent before they are cut
/// (a client that slow would be cut by a real server too); they then re-watch from history.
const SIGNAL_CAPACITY: usize = 4096;

/// A running API server double on `https://127.0.0.1:<port>`. Dropping it stops it and cuts
/// every connection.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    token: String,
    user: String,
    /// The server's own runtime (one worker thread): a test that blocks its own runtime, pauses
    /// its clock or runs current-thread cannot stall the server. `None` only during drop.
    runtime: Option<tokio::runtime::Runtime>,
}

impl ApiServer {
    /// Binds a loopback port and serves until dropped, on a runtime of its own.
    pub async fn start(options: ApiServerOptions) -> Result<ApiServer, Error> {
        let identity = tls::identity()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kube-double")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        // Bound here so the port is known at once; registered with the server's own runtime below.
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::Bind)?;
        listener.set_nonblocking(true).map_err(Error::Bind)?;
        let addr = listener.local_addr().map_err(Error::Bind)?;
        let token = options
            .token
            .clone()
            .unwrap_or_else(|| format!("kube-double-{}", Uids::new().next()));
        let mut registry = Registry::builtin();
        for rt in options.resources {
            registry.register(rt);
        }
        let (signals, _) = broadcast::channel(SIGNAL_CAPACITY);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options.history_limit, signals.clone())),
            signals,
            registry: ArcSwap::from_pointee(registry),
            controls: Controls::new(&token, &options.user),
            log: RequestLog::new(),
            git_version: options.git_version,
            address: addr.to_string(),
        });
        let acceptor = TlsAcceptor::from(identity.server_config);
        let accepting = Arc::clone(&shared);
        runtime.spawn(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => conn::accept_loop(listener, acceptor, accepting).await,
                Err(e) => tracing::error!(error = %e, "kube-double cannot listen on {addr}"),
            }
        });
        if let Some(interval) = options.bookmark_interval.filter(|i| !i.is_zero()) {
            let shared = Arc::clone(&shared);
            runtime.spawn(async move {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
                loop {
                    ticks.tick().await;
                    shared.store.lock().await.bookmark();
                }
            });
        }
        Ok(ApiServer {
            shared,
            addr,
            ca_pem: identity.ca_pem,
            token,
            user: options.user,
            runtime: Some(runtime),
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the serving certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The token the server was started with (accepted until revoked).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// A kubeconfig context for this server with its start token.
    pub fn context(&self, name: &str) -> KubeconfigContext {
        KubeconfigContext {
            name: name.to_owned(),
            server: self.url(),
            ca_pem: self.ca_pem.clone(),
            token: self.token.clone(),
            namespace: None,
        }
    }

    /// A kubeconfig with one context, `context_name`, current.
    pub fn kubeconfig(&self, context_name: &str) -> Kubeconfig {
        Kubeconfig::new().context(self.context(context_name))
    }

    pub fn write_kubeconfig(&self, path: &Path, context_name: &str) -> Result<(), Error> {
        self.kubeconfig(context_name).write(path)
    }

    /// Serves another type (or replaces one with the same group, version and plural).
    pub fn register(&self, rt: ResourceType) {
        self.shared.registry.rcu(|registry| {
            let mut registry = Registry::clone(registry);
            registry.register(rt.clone());
            registry
        });
    }

    /// Creates or replaces an object (its `apiVersion` and `kind` pick the type) and tells the
    /// watches. Returns it as stored, with uid, creationTimestamp and resourceVersion.
    pub async fn apply(&self, object: Value) -> Result<Value, Error> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let rt = self
            .shared
            .registry
            .load()
            .by_kind(api_version, kind)
            .ok_or_else(|| Error::UnknownKind {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })?;
        let stored = self.shared.store.lock().await.apply(&rt, object)?;
        Ok(Value::clone(&stored))
    }

    /// Applies each object in order.
    pub async fn apply_all(&self, objects: impl IntoIterator<Item = Value>) -> Result<(), Error> {
        for object in objects {
            self.apply(object).await?;
        }
        Ok(())
    }

    /// Deletes `name` (in `namespace`; `""` for cluster-scoped types). `resource` is a plural,
    /// `plural.group` or short name. Returns the deleted object, if it existed.
    pub async fn delete(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let rt = self.shared.registry.load().resolve(resource)?;
        let deleted = self.shared.store.lock().await.delete(&rt, namespace, name);
        Ok(deleted.map(|o| Value::clone(&o)))
    }

    /// The stored object, if any.
    pub async fn get(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let rt = self.shared.registry.load().resolve(resource)?;
        let object = self.shared.store.lock().await.get(&rt, namespace, name);
        Ok(object.map(|o| Value::clone(&o)))
    }

    /// The newest resourceVersion handed out.
    pub async fn resource_version(&self) -> u64 {
        self.shared.store.lock().await.rv()
    }

    /// Forgets all history: watches from older resourceVersions get a 410 ERROR event, and
    /// continue tokens from before now a 410 Expired.
    pub async fn compact(&self) {
        self.shared.store.lock().await.compact();
    }

    /// Every open watch that allows bookmarks gets a BOOKMARK at the current resourceVersion.
    pub async fn send_bookmarks(&self) {
        self.shared.store.lock().await.bookmark();
    }

    /// Cuts every open watch stream abruptly (connection closed, no final chunk).
    pub fn drop_watches(&self) {
        // No receivers: no open watches to cut.
        let _ = self.shared.signals.send(Signal::Drop);
    }

    /// Makes every open watch go silent while its connection stays open: no more events or
    /// bookmarks, and no end at its `timeoutSeconds`. Only the client can end it. Watches opened
    /// afterwards are served normally.
    pub fn stall_watches(&self) {
        // No receivers: no open watches to stall.
        let _ = self.shared.signals.send(Signal::Stall);
    }

    /// `false`: keep the port but close every new and open connection. `true`: serve again.
    pub fn set_available(&self, available: bool) {
        let availability = if available {
            Availability::Up
        } else {
            Availability::Down
        };
        self.shared.controls.set_availability(availability);
    }

    /// Accepts `token` too, authenticating as `user` (e.g. [`DEFAULT_USER`](crate::DEFAULT_USER)).
    pub fn add_token(&self, token: &str, user: &str) {
        self.shared.controls.add_token(token, user);
    }

    /// Stops accepting `token` (requests with it get 401).
    pub fn revoke_token(&self, token: &str) {
        self.shared.controls.revoke_token(token);
    }

    /// Denies `verb` (`get`, `list`, `watch` or `*`) on `resource` everywhere with RBAC's 403.
    pub fn forbid(&self, resource: &str, verb: &str) -> Result<(), Error> {
        let rt = self.shared.registry.load().resolve(resource)?;
        self.shared.controls.forbid(&rt, verb, None);
        Ok(())
    }

    /// Denies `verb` on `resource` in one namespace only.
    pub fn forbid_in(&self, resource: &str, verb: &str, namespace: &str) -> Result<(), Error> {
        let rt = self.shared.registry.load().resolve(resource)?;
        self.shared.controls.forbid(&rt, verb, Some(namespace));
        Ok(())
    }

    /// Lifts every `forbid`.
    pub fn allow_all(&self) {
        self.shared.controls.allow_all();
    }

    /// The next `count` resource requests (get, list, watch; not discovery) fail with `status`
    /// (500, 503, 429 with `Retry-After: 1`, 504, …) and a matching Status body.
    pub fn fail_next(&self, count: u32, status: u16) {
        self.shared.controls.fail_next(count, status);
    }

    /// Holds every response (discovery included) this long before answering; zero to stop.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.controls.set_delay(delay);
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.snapshot()
    }

    /// Resolves with the first logged request matching `predicate`, waiting for it if needed.
    /// Bound it with `tokio::time::timeout` in tests.
    pub async fn wait_for_request(
        &self,
        predicate: impl Fn(&RequestRecord) -> bool,
    ) -> RequestRecord {
        let found = self.shared.log.wait_for(1, predicate).await;
        // Empty only if the log's sender were gone, and it lives as long as `self`.
        found.into_iter().next().unwrap_or_default()
    }

    /// Resolves once `count` logged requests match (e.g. "the second watch after a drop").
    pub async fn wait_for_requests(
        &self,
        count: usize,
        predicate: impl Fn(&RequestRecord) -> bool,
    ) -> Vec<RequestRecord> {
        self.shared.log.wait_for(count, predicate).await
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shared
            .controls
            .set_availability(Availability::Shutdown);
        // Drops every task (listener, connections, watches) without blocking, so dropping a
        // server inside async code is fine.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn servers_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<super::ApiServer>();
    }
}
