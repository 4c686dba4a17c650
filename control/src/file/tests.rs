use std::net::SocketAddr;

use tokio::sync::mpsc;

use super::*;
use crate::services::parse_endpoints_flag;

const POLL: Duration = Duration::from_millis(10);
/// A failure bound, not a synchronisation: events normally arrive within a few polls.
const PATIENCE: Duration = Duration::from_secs(10);

fn services(host: &str, endpoints: &[&str]) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("      - {e}\n")).collect();
    format!(
        "services:\n  - host: {host}\n    port: 8080\n    endpoints:\n{}",
        list.concat()
    )
}

/// Replaces the file the way editors and `kubectl cp` do: a new file renamed over the old.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn endpoints(routes: &Routes, host: &str) -> Vec<SocketAddr> {
    let table = routes.load_full().expect("a table is published");
    match table.lookup(host, 8080, "") {
        Some(route) => route.endpoints.iter().map(|e| e.addr).collect(),
        None => Vec::new(),
    }
}

fn addrs(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

/// Starts watching `path` and returns the routes and the stream of reload events.
fn watch(
    path: &Path,
    static_services: Vec<ServiceSpec>,
) -> (Arc<Routes>, mpsc::UnboundedReceiver<ReloadEvent>) {
    let routes = Routes::new();
    let source = FileSource::start(path.to_path_buf(), static_services, routes.clone(), POLL)
        .expect("the initial file is good");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(source.watch(move |event| {
        let _ = tx.send(event);
    }));
    (routes, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<ReloadEvent>) -> ReloadEvent {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no reload event in time")
        .expect("the watcher stopped")
}

async fn next_loaded(rx: &mut mpsc::UnboundedReceiver<ReloadEvent>) -> (u64, usize, usize) {
    match next(rx).await {
        ReloadEvent::Loaded {
            version,
            routes,
            endpoints,
        } => (version, routes, endpoints),
        ReloadEvent::Rejected(e) => panic!("expected a load, got: {e}"),
    }
}

#[tokio::test]
async fn a_change_publishes_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, services("a.local", &["127.0.0.1:1"])).unwrap();
    let (routes, mut rx) = watch(&path, vec![]);
    assert_eq!(routes.load_full().unwrap().version(), 1);
    assert_eq!(endpoints(&routes, "a.local"), addrs(&["127.0.0.1:1"]));

    write_atomic(&path, &services("a.local", &["127.0.0.1:2", "127.0.0.1:3"]));
    assert_eq!(next_loaded(&mut rx).await, (2, 1, 2));
    assert_eq!(
        endpoints(&routes, "a.local"),
        addrs(&["127.0.0.1:2", "127.0.0.1:3"])
    );

    // An in-place rewrite (same inode) of another size is seen too.
    std::fs::write(&path, services("b.local", &["127.0.0.1:4"])).unwrap();
    assert_eq!(next_loaded(&mut rx).await, (3, 1, 1));
    assert!(endpoints(&routes, "a.local").is_empty());
    assert_eq!(endpoints(&routes, "b.local"), addrs(&["127.0.0.1:4"]));
}

#[tokio::test]
async fn a_bad_edit_keeps_the_last_good_table_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, services("a.local", &["127.0.0.1:1"])).unwrap();
    let (routes, mut rx) = watch(&path, vec![]);

    write_atomic(&path, &services("a.local", &["127.0.0.1:1", "10.0.0.1"]));
    match next(&mut rx).await {
        ReloadEvent::Rejected(e) => {
            assert_eq!(e.line(), Some(6));
            assert_eq!(
                e.to_string(),
                format!(
                    "{}:6:9: services[0].endpoints[1]: \"10.0.0.1\" is not IP:PORT (add the \
                     port, e.g. 10.0.0.1:8080)",
                    path.display()
                )
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let table = routes.load_full().unwrap();
    assert_eq!(table.version(), 1);
    assert_eq!(endpoints(&routes, "a.local"), addrs(&["127.0.0.1:1"]));

    write_atomic(&path, &services("a.local", &["127.0.0.1:1", "10.0.0.1:80"]));
    assert_eq!(next_loaded(&mut rx).await, (2, 1, 2));
    assert_eq!(
        endpoints(&routes, "a.local"),
        addrs(&["127.0.0.1:1", "10.0.0.1:80"])
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_configmap_symlink_swap_is_seen() {
    // The layout kubelet gives a ConfigMap volume: the file is a symlink through `..data`,
    // itself a symlink to a timestamped directory; an update writes a new directory and
    // renames a new `..data` link over the old one.
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..2024_01")).unwrap();
    std::fs::write(
        root.join("..2024_01/services.yaml"),
        services("a.local", &["127.0.0.1:1"]),
    )
    .unwrap();
    symlink("..2024_01", root.join("..data")).unwrap();
    symlink("..data/services.yaml", root.join("services.yaml")).unwrap();
    let (routes, mut rx) = watch(&root.join("services.yaml"), vec![]);
    assert_eq!(endpoints(&routes, "a.local"), addrs(&["127.0.0.1:1"]));

    std::fs::create_dir(root.join("..2024_02")).unwrap();
    std::fs::write(
        root.join("..2024_02/services.yaml"),
        services("a.local", &["127.0.0.1:2"]),
    )
    .unwrap();
    symlink("..2024_02", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2024_01")).unwrap();

    assert_eq!(next_loaded(&mut rx).await, (2, 1, 1));
    assert_eq!(endpoints(&routes, "a.local"), addrs(&["127.0.0.1:2"]));
}

#[tokio::test]
async fn static_services_are_in_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, services("a.local", &["127.0.0.1:1"])).unwrap();
    let flag = parse_endpoints_flag("s.local:8080=127.0.0.1:9").unwrap();
    let (routes, mut rx) = watch(&path, vec![flag]);
    assert_eq!(endpoints(&routes, "s.local"), addrs(&["127.0.0.1:9"]));

    write_atomic(&path, "services: []\n");
    assert_eq!(next_loaded(&mut rx).await, (2, 1, 1));
    assert_eq!(endpoints(&routes, "s.local"), addrs(&["127.0.0.1:9"]));
    assert!(endpoints(&routes, "a.local").is_empty());
}

#[tokio::test]
async fn a_removed_file_is_reported_and_the_table_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    std::fs::write(&path, services("a.local", &["127.0.0.1:1"])).unwrap();
    let (routes, mut rx) = watch(&path, vec![]);

    std::fs::remove_file(&path).unwrap();
    match next(&mut rx).await {
        ReloadEvent::Rejected(ConfigError::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected an I/O rejection, got {other:?}"),
    }
    assert_eq!(endpoints(&routes, "a.local"), addrs(&["127.0.0.1:1"]));

    write_atomic(&path, &services("a.local", &["127.0.0.1:5"]));
    assert_eq!(next_loaded(&mut rx).await, (2, 1, 1));
    assert_eq!(endpoints(&routes, "a.local"), addrs(&["127.0.0.1:5"]));
}

#[test]
fn start_refuses_a_bad_or_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.yaml");
    let routes = Routes::new();
    let e = FileSource::start(path.clone(), vec![], routes.clone(), POLL).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }), "{e}");

    std::fs::write(
        &path,
        "services:\n  - host: a.local\n    port: 0\n    endpoints: []\n",
    )
    .unwrap();
    let e = FileSource::start(path.clone(), vec![], routes.clone(), POLL).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3:11: services[0].port: 0 is out of range (1 to 65535)",
            path.display()
        )
    );
    assert!(!routes.is_loaded());
}

#[test]
fn publish_static_carries_health_forward() {
    let routes = Routes::new();
    let specs = vec![parse_endpoints_flag("a.local:8080=127.0.0.1:1").unwrap()];
    assert_eq!(publish_static(&specs, &routes), 1);
    let first = routes.load_full().unwrap();
    assert_eq!(publish_static(&specs, &routes), 2);
    let second = routes.load_full().unwrap();
    let ep = |t: &eastwest_proxy::routes::RouteTable| {
        t.lookup("a.local", 8080, "").unwrap().endpoints[0].clone()
    };
    assert!(Arc::ptr_eq(&ep(&first), &ep(&second)));
}
