//! The Kubernetes source as a library, against the API server double over real HTTPS: what it
//! asks the API server for (and that deploy/base/rbac.yaml allows exactly that), that nothing is
//! published before every watch has listed, and that a burst of changes is coalesced into
//! few complete snapshots. End-to-end behaviour through the binary is in the root `tests/kube.rs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eastwest_control::kube::{Connection, KubeOptions, KubeSource, Published};
use eastwest_kube_double::fixtures::{self, Endpoint};
use eastwest_kube_double::{ApiServer, ApiServerOptions, RequestRecord, ResourceType};
use eastwest_proxy::metrics::Metrics;
use eastwest_proxy::routes::Routes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Bound on any wait; generous for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(30);

struct Running {
    routes: Arc<Routes>,
    published: mpsc::UnboundedReceiver<Published>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Running {
    async fn next(&mut self) -> Published {
        timeout(WAIT, self.published.recv())
            .await
            .expect("a snapshot within the wait")
            .expect("the source stopped")
    }
}

async fn start(server: &ApiServer, namespaces: &[&str]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path, "test").unwrap();
    let connection = Connection {
        kubeconfig: Some(path),
        context: None,
    };
    let (client, _) = connection
        .client(eastwest_control::kube::DEFAULT_WATCH_TIMEOUT)
        .await
        .unwrap();
    let mut options = KubeOptions::new("test");
    options.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
    let routes = Routes::new();
    let source = KubeSource::new(
        client,
        options,
        Vec::new(),
        routes.clone(),
        Metrics::new().source("test", "", "cluster.local"),
    );
    let (tx, published) = mpsc::unbounded_channel();
    let task = tokio::spawn(source.run(move |p| {
        let _ = tx.send(*p);
    }));
    Running {
        routes,
        published,
        task,
        _dir: dir,
    }
}

/// `(apiGroup, resource, verb)` of a request, as RBAC sees it.
fn rbac_request(r: &RequestRecord) -> Option<(String, String, String)> {
    let resource = r.resource()?.to_string();
    let group = match r.path.split('/').nth(1) {
        Some("api") => String::new(),
        Some("apis") => r.path.split('/').nth(2)?.to_string(),
        _ => return None,
    };
    let named = {
        // .../<plural>/<name> addresses one object.
        let segments: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
        segments.last() != Some(&resource.as_str())
    };
    let verb = if r.is_watch() {
        "watch"
    } else if named {
        "get"
    } else {
        "list"
    };
    Some((group, resource, verb.to_string()))
}

/// The ClusterRole's rules from deploy/base/rbac.yaml as `(apiGroup, resource, verb)` triples.
fn cluster_role_grants() -> BTreeSet<(String, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole in deploy/base/rbac.yaml");
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        for g in list("apiGroups") {
            for r in list("resources") {
                for v in list("verbs") {
                    grants.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    grants
}

#[tokio::test]
async fn deploy_rbac_yaml_grants_exactly_what_the_source_asks_for() {
    let options = ApiServerOptions::default().resource(ResourceType::destination_rules());
    let server = ApiServer::start(options).await.unwrap();
    server.apply_all(fixtures::mesh()).await.unwrap();
    let mut source = start(&server, &[]).await;
    assert!(source.next().await.first);
    // A change after the watches are open, so the watch requests are in the log too.
    for plural in ["services", "endpointslices", "pods", "destinationrules"] {
        timeout(
            WAIT,
            server.wait_for_request(|r| r.is_open_watch_of(plural)),
        )
        .await
        .unwrap();
    }
    let [svc, slice] = fixtures::local_service("t", "echo", 80, 8080, &["127.0.0.2"]);
    server.apply_all([svc, slice]).await.unwrap();
    source.next().await;

    let used: BTreeSet<_> = server.requests().iter().filter_map(rbac_request).collect();
    let grants = cluster_role_grants();
    for request in &used {
        assert!(
            grants.contains(request),
            "the source made a request deploy/base/rbac.yaml does not allow: {request:?}"
        );
    }
    let read_only: BTreeSet<&str> = ["get", "list", "watch"].into();
    for (group, resource, verb) in &grants {
        assert!(
            read_only.contains(verb.as_str()),
            "the ClusterRole grants {verb} on {resource}"
        );
        assert!(
            used.iter().any(|(g, r, _)| g == group && r == resource),
            "the ClusterRole grants {resource}.{group}, which the source never reads"
        );
    }
}

#[tokio::test]
async fn nothing_is_published_until_every_watch_has_listed() {
    let server = ApiServer::start(ApiServerOptions::default()).await.unwrap();
    let [svc, slice] = fixtures::local_service("a", "echo", 80, 8080, &["127.0.0.2"]);
    server.apply_all([svc, slice]).await.unwrap();
    // Namespace b refuses the slices list: a's watches sync, b's slices never do.
    server.forbid_in("endpointslices", "list", "b").unwrap();
    let mut source = start(&server, &["a", "b"]).await;
    timeout(
        WAIT,
        server.wait_for_request(|r| r.is_open_watch_of("endpointslices")),
    )
    .await
    .unwrap();
    timeout(
        WAIT,
        server.wait_for_request(|r| {
            r.status == 403 && r.path.contains("/namespaces/b/endpointslices")
        }),
    )
    .await
    .unwrap();
    assert!(
        !source.routes.is_loaded(),
        "a table was published while namespace b's slices were unlisted"
    );
    assert!(source.published.try_recv().is_err());

    server.allow_all();
    let first = source.next().await;
    assert!(first.first);
    assert_eq!(first.counts.services, 1);
    let table = source.routes.load_full().unwrap();
    let route = table.lookup("echo.a.svc.cluster.local", 80, "").unwrap();
    assert_eq!(route.endpoints[0].addr.to_string(), "127.0.0.2:8080");
}

#[tokio::test]
async fn a_burst_of_changes_is_coalesced_into_few_complete_snapshots() {
    let server = ApiServer::start(ApiServerOptions::default()).await.unwrap();
    let svc = fixtures::service("ns", "web")
        .tcp_port("http", 80, 8080)
        .build();
    server.apply(svc).await.unwrap();
    let mut source = start(&server, &[]).await;
    assert!(source.next().await.first);
    timeout(
        WAIT,
        server.wait_for_request(|r| r.is_open_watch_of("endpointslices")),
    )
    .await
    .unwrap();

    const BURST: usize = 200;
    let slices: Vec<Value> = (0..BURST)
        .map(|i| {
            fixtures::endpoint_slice("ns", "web", &format!("web-{i}"))
                .endpoint(Endpoint::new(&format!("10.0.{}.{}", i / 250, i % 250 + 1)))
                .tcp_port("http", 8080)
                .build()
        })
        .collect();
    server.apply_all(slices).await.unwrap();
    let mut snapshots = 0;
    loop {
        let p = source.next().await;
        snapshots += 1;
        // Every snapshot is a whole table: the route is there with what has arrived so far.
        let table = source.routes.load_full().unwrap();
        let n = table
            .lookup("web.ns.svc.cluster.local", 80, "")
            .unwrap()
            .endpoints
            .len();
        assert_eq!(n, p.endpoints);
        if n == BURST {
            break;
        }
    }
    assert!(
        snapshots < BURST / 4,
        "{BURST} changes in one burst took {snapshots} snapshots"
    );
}
