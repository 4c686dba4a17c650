//! `eastwest run --kubeconfig` end to end: the real binary against the Kubernetes API double
//! (real list/watch over HTTPS, real Service and EndpointSlice JSON), with real traffic to
//! upstreams on 127.0.0.2, 127.0.0.3, … standing in for pods. Scale up and down, endpoints not
//! ready or terminating, a deleted Service, cut watches, 410 Gone, the API server away for a
//! while, a revoked token and a 403: the routes follow the API, and while the API misbehaves
//! the last good routes keep serving.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use eastwest_kube_double::fixtures::{self, Endpoint};
use eastwest_kube_double::{ApiServer, ApiServerOptions, RequestRecord, ResourceType};
use serde_json::Value;
use support::{
    Gateway, Upstream, assert_refused, forwards_to_one_of, rustls_client_hello,
    send_tolerating_close, wait_until, wait_until_within,
};

const SNI: &str = "outbound_.80_._.echo.ns.svc.cluster.local";
const WAIT: Duration = Duration::from_secs(30);

/// An API server double and a kubeconfig for it.
struct Api {
    rt: tokio::runtime::Runtime,
    server: ApiServer,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Api {
    fn new() -> Api {
        Api::with(ApiServerOptions::default())
    }

    /// A cluster with Istio: DestinationRules are served.
    fn with_istio() -> Api {
        Api::with(ApiServerOptions::default().resource(ResourceType::destination_rules()))
    }

    fn with(options: ApiServerOptions) -> Api {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt.block_on(ApiServer::start(options)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig, "test").unwrap();
        Api {
            rt,
            server,
            kubeconfig,
            _dir: dir,
        }
    }

    fn apply(&self, object: Value) {
        self.rt.block_on(self.server.apply(object)).unwrap();
    }

    fn delete(&self, resource: &str, namespace: &str, name: &str) {
        let gone = self
            .rt
            .block_on(self.server.delete(resource, namespace, name))
            .unwrap();
        assert!(
            gone.is_some(),
            "{resource} {namespace}/{name} did not exist"
        );
    }

    /// Waits until `count` requests matching `pred` have been answered.
    fn wait_requests(&self, count: usize, pred: impl Fn(&RequestRecord) -> bool) {
        self.rt
            .block_on(async {
                tokio::time::timeout(WAIT, self.server.wait_for_requests(count, pred)).await
            })
            .expect("the request within the wait");
    }

    fn open_slice_watches(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.is_open_watch_of("endpointslices"))
            .count()
    }

    /// Cuts the watches and waits until the gateway has opened its next slice watch.
    fn cut_watches_and_wait_for_rewatch(&self) {
        let before = self.open_slice_watches();
        self.server.drop_watches();
        self.wait_requests(before + 1, |r| r.is_open_watch_of("endpointslices"));
    }
}

/// Service `ns/echo`, port 80 named `tcp`.
fn echo_service() -> Value {
    fixtures::service("ns", "echo")
        .tcp_port("tcp", 80, "tcp")
        .build()
}

/// Slice `name` of `ns/echo` with one endpoint at `up`'s address.
fn slice(name: &str, up: &Upstream, endpoint: impl FnOnce(Endpoint) -> Endpoint) -> Value {
    slice_of("ns", "echo", name, up, endpoint)
}

fn slice_of(
    ns: &str,
    svc: &str,
    name: &str,
    up: &Upstream,
    endpoint: impl FnOnce(Endpoint) -> Endpoint,
) -> Value {
    fixtures::endpoint_slice(ns, svc, name)
        .endpoint(endpoint(Endpoint::new(&up.addr().ip().to_string())))
        .tcp_port("tcp", up.addr().port())
        .build()
}

fn ready(e: Endpoint) -> Endpoint {
    e
}

fn upstream(host: u8) -> Upstream {
    Upstream::bind_at(format!("127.0.0.{host}:0").parse().unwrap())
}

/// The gateway on `api`, started and synced.
fn gateway(api: &Api, extra: &[&str]) -> Gateway {
    let path = api.kubeconfig.to_str().unwrap();
    let mut args = vec!["--kubeconfig", path, "--cluster-id", "west"];
    args.extend(extra);
    let mut gw = Gateway::start(&args);
    gw.wait_log(|v| v["message"] == "initial sync complete; route table loaded");
    gw
}

fn routes(gw: &Gateway) -> String {
    gw.admin_get("/debug/routes").1
}

/// Waits until `/debug/routes` lists `up` (or, with `listed: false`, no longer does).
fn wait_endpoint(gw: &Gateway, up: &Upstream, listed: bool) {
    let addr = up.addr().to_string();
    wait_until(&format!("{addr} listed = {listed}"), || {
        routes(gw).contains(&addr) == listed
    });
}

fn refused(gw: &mut Gateway, reason: &str) {
    let hello = rustls_client_hello(SNI);
    assert_refused(gw, reason, |c| send_tolerating_close(c, &hello));
}

/// The warn line of a source error of `kind`.
fn wait_error(gw: &mut Gateway, kind: &str) -> Value {
    gw.wait_log(|v| v["level"] == "WARN" && v["kind"] == kind)
}

/// `ns/echo` with one pod at `a` (127.0.0.2), a spare upstream `b` (127.0.0.3), and a synced
/// gateway whose slice watch is open.
fn echo_watched() -> (Api, Upstream, Upstream, Gateway) {
    echo_watched_with(&[])
}

fn echo_watched_with(extra: &[&str]) -> (Api, Upstream, Upstream, Gateway) {
    let api = Api::new();
    let (a, b) = (upstream(2), upstream(3));
    api.apply(echo_service());
    api.apply(slice("echo-a", &a, ready));
    let gw = gateway(&api, extra);
    api.wait_requests(1, |r| r.is_open_watch_of("endpointslices"));
    (api, a, b, gw)
}

#[test]
fn readiness_waits_for_the_first_list_then_traffic_reaches_the_pods() {
    let api = Api::new();
    let a = upstream(2);
    api.apply(echo_service());
    api.apply(slice("echo-a", &a, ready));
    api.server.set_available(false);
    let path = api.kubeconfig.to_str().unwrap();
    let mut gw = Gateway::start(&["--kubeconfig", path, "--cluster-id", "west"]);
    let line = wait_error(&mut gw, "unreachable");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("not ready until the first full list"),
        "{line}"
    );
    let (code, body) = gw.admin_get("/healthz/ready");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("west"),
        "readiness names the waiting source: {body}"
    );
    assert_eq!(gw.metric("eastwest_source_synced{source=\"west\"}"), 0.0);

    api.server.set_available(true);
    gw.wait_log(|v| v["message"] == "initial sync complete; route table loaded");
    assert_eq!(gw.admin_get("/healthz/ready").0, 200);
    assert_eq!(gw.metric("eastwest_source_synced{source=\"west\"}"), 1.0);
    assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);
    let line = routes(&gw);
    assert!(
        line.contains("outbound|80||echo.ns.svc.cluster.local"),
        "{line}"
    );
    assert!(
        line.contains(" west"),
        "the SOURCE column names the cluster: {line}"
    );
}

#[test]
fn scale_up_and_down_not_ready_terminating_and_deleted() {
    let api = Api::new();
    let (a, b) = (upstream(2), upstream(3));
    api.apply(echo_service());
    api.apply(slice("echo-a", &a, ready));
    let mut gw = gateway(&api, &[]);
    assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], SNI), 0);

    // Scale up: a second slice. Round robin then reaches both.
    api.apply(slice("echo-b", &b, ready));
    wait_endpoint(&gw, &b, true);
    let mut reached = [0; 2];
    for _ in 0..4 {
        reached[forwards_to_one_of(&mut gw, &[&a, &b], SNI)] += 1;
    }
    assert_eq!(reached, [2, 2], "round robin over both pods");

    // Not ready: no new connections to a.
    api.apply(slice("echo-a", &a, Endpoint::not_ready));
    wait_endpoint(&gw, &a, false);
    for _ in 0..3 {
        assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], SNI), 1);
    }
    // Ready again, then terminating: out again.
    api.apply(slice("echo-a", &a, ready));
    wait_endpoint(&gw, &a, true);
    api.apply(slice("echo-a", &a, Endpoint::terminating));
    wait_endpoint(&gw, &a, false);
    for _ in 0..3 {
        assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], SNI), 1);
    }
    a.assert_no_connection("a is terminating");

    // Scale down to zero: the route stays, with no ready endpoint.
    api.delete("endpointslices", "ns", "echo-a");
    api.delete("endpointslices", "ns", "echo-b");
    wait_endpoint(&gw, &b, false);
    refused(&mut gw, "no_ready_endpoint");

    // The Service deleted: no route at all.
    api.delete("services", "ns", "echo");
    wait_until("the route is gone", || {
        !routes(&gw).contains("echo.ns.svc.cluster.local")
    });
    refused(&mut gw, "no_route");
    assert_eq!(
        gw.metric("eastwest_connections_refused_total{listener=\"tls\",reason=\"no_route\"}"),
        1.0
    );
}

#[test]
fn cut_watches_and_410_gone_are_followed_by_a_rewatch_or_a_relist() {
    let api = Api::new();
    let (a, b, c) = (upstream(2), upstream(3), upstream(4));
    api.apply(echo_service());
    api.apply(slice("echo-a", &a, ready));
    let mut gw = gateway(&api, &[]);
    api.wait_requests(1, |r| r.is_open_watch_of("endpointslices"));

    // A cut watch: kube-rs re-watches from where it was; a change after that is seen.
    api.cut_watches_and_wait_for_rewatch();
    api.apply(slice("echo-b", &b, ready));
    wait_endpoint(&gw, &b, true);
    assert_eq!(
        gw.metric("eastwest_source_relists_total{source=\"west\",resource=\"endpointslices\"}"),
        0.0,
        "a cut watch resumes without a relist"
    );

    // 410: a later change elsewhere moves the resourceVersion on, history is compacted, the
    // watch is cut; resuming from the slices' old resourceVersion is Gone, so a relist follows.
    api.apply(
        fixtures::service("other", "bump")
            .tcp_port("tcp", 80, 80)
            .build(),
    );
    api.rt.block_on(api.server.compact());
    api.server.drop_watches();
    wait_error(&mut gw, "gone");
    gw.wait_log(|v| v["message"] == "relisting" && v["resource"] == "endpointslices");
    api.apply(slice("echo-c", &c, ready));
    wait_endpoint(&gw, &c, true);
    assert!(
        gw.metric("eastwest_source_relists_total{source=\"west\",resource=\"endpointslices\"}")
            >= 1.0
    );
    let mut reached = [0; 3];
    for _ in 0..3 {
        reached[forwards_to_one_of(&mut gw, &[&a, &b, &c], SNI)] += 1;
    }
    assert_eq!(reached, [1, 1, 1]);
}

#[test]
fn while_the_api_server_is_away_the_last_routes_keep_serving() {
    let (api, a, b, mut gw) = echo_watched();

    api.server.set_available(false);
    api.server.drop_watches();
    let line = wait_error(&mut gw, "unreachable");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("keeping the last good routes"),
        "{line}"
    );
    assert_eq!(gw.metric("eastwest_source_up{source=\"west\"}"), 0.0);
    assert!(
        gw.metric(
            "eastwest_source_errors_total{source=\"west\",resource=\"endpointslices\",kind=\"unreachable\"}"
        ) >= 1.0
    );
    for _ in 0..3 {
        assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);
    }
    assert_eq!(
        gw.admin_get("/healthz/ready").0,
        200,
        "still ready on the last routes"
    );

    // Back: the watcher's backoff retry gets through, and changes flow again.
    api.server.set_available(true);
    api.apply(slice("echo-b", &b, ready));
    wait_endpoint(&gw, &b, true);
    assert_eq!(gw.metric("eastwest_source_up{source=\"west\"}"), 1.0);
    assert!(
        gw.metric(
            "eastwest_source_watch_restarts_total{source=\"west\",resource=\"endpointslices\"}"
        ) >= 1.0
    );
}

/// The slice relist counter of source `west`.
fn slice_relists(gw: &Gateway) -> f64 {
    gw.metric("eastwest_source_relists_total{source=\"west\",resource=\"endpointslices\"}")
}

#[test]
fn a_watch_that_stalls_is_given_up_and_reopened_and_the_routes_catch_up() {
    // Watches end every 3 s; one silent for 3 + 5 s is stalled.
    let (api, a, b, mut gw) = echo_watched_with(&["--watch-timeout", "3s"]);
    let opened = api.open_slice_watches();

    // The open watches go silent with their connections up (and no longer end on time): a
    // change made now is not delivered by them.
    api.server.stall_watches();
    api.apply(slice("echo-b", &b, ready));
    assert_eq!(
        forwards_to_one_of(&mut gw, &[&a], SNI),
        0,
        "routes that worked"
    );

    // The gateway gives the silent watch up and resumes from where it was: the change arrives,
    // without a relist.
    api.wait_requests(opened + 1, |r| r.is_open_watch_of("endpointslices"));
    wait_endpoint(&gw, &b, true);
    assert_eq!(slice_relists(&gw), 0.0, "a re-opened watch resumes");
    let mut reached = [0; 2];
    for _ in 0..2 {
        reached[forwards_to_one_of(&mut gw, &[&a, &b], SNI)] += 1;
    }
    assert_eq!(reached, [1, 1]);
}

#[test]
fn an_api_server_that_takes_requests_and_never_answers_is_retried() {
    // Responses silent for 1 + 10 s are given up.
    let (api, a, b, mut gw) = echo_watched_with(&["--watch-timeout", "1s"]);

    // Every request is now held without an answer; the watches end and their re-opening hangs.
    api.server.set_delay(Duration::from_secs(3600));
    api.server.drop_watches();
    let line = wait_error(&mut gw, "timeout");
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("sent nothing for 11s"), "{message}");
    assert!(
        message.contains("keeping the last good routes"),
        "{message}"
    );
    assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);
    assert_eq!(gw.admin_get("/healthz/ready").0, 200);

    // Answering again: the retry gets through and changes flow.
    api.server.set_delay(Duration::ZERO);
    api.apply(slice("echo-b", &b, ready));
    wait_until_within(BACKOFF_WAIT, "echo-b listed", || {
        routes(&gw).contains(&b.addr().to_string())
    });
    assert!(
        gw.metric(
            "eastwest_source_errors_total{source=\"west\",resource=\"endpointslices\",kind=\"timeout\"}"
        ) >= 1.0
    );
}

/// Longest wait for a retry after a long fault: kube-rs's backoff tops out at 30 s (jittered).
const BACKOFF_WAIT: Duration = Duration::from_secs(45);

#[test]
fn a_minute_without_the_api_server_is_ridden_out_with_backoff() {
    let (api, a, b, mut gw) = echo_watched();
    let errors = "eastwest_source_errors_total{source=\"west\",resource=\"endpointslices\",\
                  kind=\"unreachable\"}";

    api.server.set_available(false);
    api.server.drop_watches();
    wait_error(&mut gw, "unreachable");
    // The outage itself: a minute, with a connection through the gateway every 2 s.
    let down = std::time::Instant::now();
    let mut served = 0;
    while down.elapsed() < Duration::from_secs(60) {
        assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);
        served += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(served >= 25, "{served} connections in the minute");
    assert_eq!(
        gw.admin_get("/healthz/ready").0,
        200,
        "ready on the last routes"
    );
    // Backoff (0.8 s doubling to 30 s) allows about 7 tries a minute; a spinning retry would
    // make thousands.
    let tries = gw.metric(errors);
    assert!(
        (3.0..=20.0).contains(&tries),
        "{tries} failed tries in a minute"
    );

    api.server.set_available(true);
    let up = std::time::Instant::now();
    api.apply(slice("echo-b", &b, ready));
    wait_until_within(BACKOFF_WAIT, "echo-b listed", || {
        routes(&gw).contains(&b.addr().to_string())
    });
    println!(
        "a minute down: {served} connections served, {tries} failed slice watch/list tries, \
         a change seen {:.1} s after the API server came back",
        up.elapsed().as_secs_f64()
    );
    assert_eq!(gw.metric("eastwest_source_up{source=\"west\"}"), 1.0);
    let mut reached = [0; 2];
    for _ in 0..2 {
        reached[forwards_to_one_of(&mut gw, &[&a, &b], SNI)] += 1;
    }
    assert_eq!(reached, [1, 1]);
}

#[test]
fn a_storm_of_410_gone_keeps_the_routes_and_ends_in_the_api_state() {
    let (api, a, _b, mut gw) = echo_watched();
    let pods: Vec<Upstream> = (10..20).map(upstream).collect();

    // Ten times in a row: a change, history compacted, watches cut. Each resume is Gone, and
    // the relists that follow are themselves cut by the next round.
    for (round, pod) in pods.iter().enumerate() {
        api.apply(slice(&format!("echo-{round}"), pod, ready));
        api.rt.block_on(api.server.compact());
        api.server.drop_watches();
        // Whatever the gateway knows at this moment, a connection lands on a live pod.
        let known: Vec<&Upstream> = std::iter::once(&a).chain(&pods[..=round]).collect();
        forwards_to_one_of(&mut gw, &known, SNI);
    }
    wait_error(&mut gw, "gone");
    // Afterwards the table is the API's: all eleven endpoints, no duplicates.
    for pod in &pods {
        wait_endpoint(&gw, pod, true);
    }
    let table = routes(&gw);
    assert_eq!(table.matches("127.0.0.").count(), 11, "{table}");
    assert!(slice_relists(&gw) >= 1.0);
}

#[test]
fn a_revoked_token_and_a_403_are_reported_and_the_routes_stay() {
    let (api, a, b, mut gw) = echo_watched();

    api.server.revoke_token(api.server.token());
    api.server.drop_watches();
    let line = wait_error(&mut gw, "unauthorized");
    assert!(
        line["message"].as_str().unwrap().contains("credentials"),
        "{line}"
    );
    assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);

    // The token is good again, but RBAC now refuses watching slices.
    api.server.forbid("endpointslices", "watch").unwrap();
    api.server.add_token(api.server.token(), api.server.user());
    let line = wait_error(&mut gw, "forbidden");
    let message = line["message"].as_str().unwrap();
    assert!(
        message.contains(
            "RBAC must allow verbs [get, list, watch] on resources [endpointslices] in apiGroups \
             [\"discovery.k8s.io\"] in all namespaces (deploy/base/rbac.yaml)"
        ),
        "{message}"
    );
    assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);
    assert!(
        gw.metric(
            "eastwest_source_errors_total{source=\"west\",resource=\"endpointslices\",kind=\"forbidden\"}"
        ) >= 1.0
    );

    api.server.allow_all();
    api.apply(slice("echo-b", &b, ready));
    wait_endpoint(&gw, &b, true);
}

#[test]
fn namespaces_limit_what_is_watched() {
    let api = Api::new();
    let (a, b) = (upstream(2), upstream(3));
    api.apply(echo_service());
    api.apply(slice("echo-a", &a, ready));
    api.apply(
        fixtures::service("other", "echo")
            .tcp_port("tcp", 80, "tcp")
            .build(),
    );
    api.apply(slice_of("other", "echo", "echo-b", &b, ready));
    let mut gw = gateway(&api, &["--namespace", "ns"]);
    assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], SNI), 0);
    let hello = rustls_client_hello("outbound_.80_._.echo.other.svc.cluster.local");
    assert_refused(&mut gw, "no_route", |c| send_tolerating_close(c, &hello));
    b.assert_no_connection("namespace other is not watched");
    let paths: Vec<String> = api
        .server
        .requests()
        .iter()
        .filter(|r| r.resource().is_some())
        .map(|r| r.path.clone())
        .collect();
    assert!(!paths.is_empty());
    for p in &paths {
        // Nodes are cluster-scoped (their region label), the one exception.
        assert!(
            p.contains("/namespaces/ns/") || p == "/api/v1/nodes",
            "a request outside ns: {p}"
        );
    }
}

#[test]
fn one_process_serves_two_clusters_each_through_its_own_listener() {
    let (west, east) = (Api::new(), Api::new());
    let (w, e) = (upstream(2), upstream(3));
    for (api, up) in [(&west, &w), (&east, &e)] {
        api.apply(echo_service());
        api.apply(slice("echo-a", up, ready));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&west.kubeconfig, dir.path().join("west.kubeconfig")).unwrap();
    std::fs::copy(&east.kubeconfig, dir.path().join("east.kubeconfig")).unwrap();
    let config = dir.path().join("eastwest.yaml");
    std::fs::write(
        &config,
        "clusters:\n  - name: west\n    kubeconfig: west.kubeconfig\n  - name: east\n    \
         kubeconfig: east.kubeconfig\nlisteners:\n  - name: west\n    listen: 127.0.0.1:0\n    \
         cluster: west\n  - name: east\n    listen: 127.0.0.1:0\n    cluster: east\n",
    )
    .unwrap();
    let mut gw = Gateway::start(&["--config", config.to_str().unwrap()]);
    // Either cluster may sync first; a line passed over is not seen again, so take both as
    // they come.
    let mut synced: Vec<String> = (0..2)
        .map(|_| {
            gw.wait_log(|v| v["message"] == "initial sync complete; route table loaded")["cluster"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    synced.sort();
    assert_eq!(synced, ["east", "west"]);
    wait_until("ready", || gw.admin_get("/healthz/ready").0 == 200);
    let listeners = gw.listen.clone();
    assert_eq!(listeners.len(), 2);
    for _ in 0..2 {
        gw.listen = vec![listeners[0]];
        assert_eq!(
            forwards_to_one_of(&mut gw, &[&w, &e], SNI),
            0,
            "west's listener"
        );
        gw.listen = vec![listeners[1]];
        assert_eq!(
            forwards_to_one_of(&mut gw, &[&w, &e], SNI),
            1,
            "east's listener"
        );
    }
    // One cluster's API going away leaves the other's untouched.
    east.server.set_available(false);
    east.server.drop_watches();
    wait_error(&mut gw, "unreachable");
    gw.listen = vec![listeners[1]];
    assert_eq!(forwards_to_one_of(&mut gw, &[&w, &e], SNI), 1);
    assert_eq!(gw.metric("eastwest_source_up{source=\"west\"}"), 1.0);
    assert_eq!(gw.metric("eastwest_source_up{source=\"east\"}"), 0.0);
}

#[test]
fn a_missing_kubeconfig_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.kubeconfig");
    let out = std::process::Command::new(support::bin())
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--kubeconfig")
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
}

#[test]
fn an_exec_credential_plugin_supplies_the_token() {
    let api = Api::new();
    let a = upstream(2);
    api.apply(echo_service());
    api.apply(slice("echo-a", &a, ready));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, api.server.ca_pem()).unwrap();
    // What `aws eks get-token` or `gke-gcloud-auth-plugin` print, with the double's token.
    let plugin = dir.path().join("get-token");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\necho '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\
             \"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{}\"}}}}'\n",
            api.server.token()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: exec\nclusters:\n- name: c\n  \
             cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: exec\n  \
             context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    exec:\n      \
             apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      \
             interactiveMode: Never\n",
            api.server.url(),
            ca.display(),
            plugin.display()
        ),
    )
    .unwrap();
    let mut gw = Gateway::start(&["--kubeconfig", kubeconfig.to_str().unwrap()]);
    gw.wait_log(|v| v["message"] == "initial sync complete; route table loaded");
    assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);
    assert!(
        api.server
            .requests()
            .iter()
            .any(|r| r.is_open_watch_of("endpointslices")
                && r.user.as_deref() == Some(api.server.user())),
        "the watch runs with the plugin's token"
    );
}

/// `ns/echo` with pod `echo-v1` at `a` and `echo-v2` at `b`, one slice each, pods labelled
/// `version`, as a Deployment per version makes them.
fn two_versions(api: &Api, a: &Upstream, b: &Upstream) {
    api.apply(echo_service());
    for (version, up, node, region) in [("v1", a, "n1", "us-1"), ("v2", b, "n2", "eu-1")] {
        let pod = format!("echo-{version}");
        let ip = up.addr().ip().to_string();
        api.apply(fixtures::node(
            node,
            &[("topology.kubernetes.io/region", region)],
        ));
        api.apply(fixtures::pod(
            "ns",
            &pod,
            &[("app", "echo"), ("version", version)],
            &ip,
        ));
        api.apply(slice(&format!("echo-{version}"), up, |e| {
            e.pod(&pod).node(node)
        }));
    }
}

fn sni_of(subset: &str) -> String {
    format!("outbound_.80_.{subset}_.echo.ns.svc.cluster.local")
}

#[test]
fn destination_rule_subsets_route_by_pod_labels_and_cluster_and_follow_changes() {
    let api = Api::with_istio();
    let (a, b) = (upstream(2), upstream(3));
    two_versions(&api, &a, &b);
    // As the seed's per-cluster subsets (topology.istio.io/cluster), plus versions.
    api.apply(fixtures::destination_rule(
        "ns",
        "echo",
        "echo.ns.svc.cluster.local",
        &[
            ("v1", &[("version", "v1")]),
            ("v2", &[("version", "v2")]),
            ("west", &[("topology.istio.io/cluster", "west")]),
            ("east", &[("topology.istio.io/cluster", "east")]),
        ],
    ));
    let mut gw = gateway(&api, &[]);
    for _ in 0..2 {
        assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], &sni_of("v1")), 0);
        assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], &sni_of("v2")), 1);
    }
    // Added while running: a subset by the region of the pod's node.
    let hello = rustls_client_hello(&sni_of("eu"));
    assert_refused(&mut gw, "no_route", |c| send_tolerating_close(c, &hello));
    api.apply(fixtures::destination_rule(
        "ns",
        "echo-regions",
        "echo",
        &[("eu", &[("topology.kubernetes.io/region", "eu-1")])],
    ));
    wait_until("the eu subset appears", || {
        routes(&gw).contains("outbound|80|eu|")
    });
    assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], &sni_of("eu")), 1);
    api.delete("destinationrules", "ns", "echo-regions");
    let mut reached = [0; 2];
    for _ in 0..2 {
        reached[forwards_to_one_of(&mut gw, &[&a, &b], &sni_of("west"))] += 1;
    }
    assert_eq!(
        reached,
        [1, 1],
        "the cluster subset holds every endpoint here"
    );
    let hello = rustls_client_hello(&sni_of("east"));
    assert_refused(&mut gw, "no_ready_endpoint", |c| {
        send_tolerating_close(c, &hello)
    });

    // Changed: v1 now selects the v2 pod.
    api.apply(fixtures::destination_rule(
        "ns",
        "echo",
        "echo",
        &[("v1", &[("version", "v2")])],
    ));
    wait_until("v1 moved to the v2 pod", || {
        routes(&gw)
            .lines()
            .any(|l| l.starts_with("outbound|80|v1|") && l.contains(&b.addr().to_string()))
    });
    assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], &sni_of("v1")), 1);
    // Removed: the subset is no route; the service still is.
    api.delete("destinationrules", "ns", "echo");
    wait_until("the subsets are gone", || {
        !routes(&gw).contains("outbound|80|v1|")
    });
    let hello = rustls_client_hello(&sni_of("v1"));
    assert_refused(&mut gw, "no_route", |c| send_tolerating_close(c, &hello));
    let mut reached = [0; 2];
    for _ in 0..2 {
        reached[forwards_to_one_of(&mut gw, &[&a, &b], SNI)] += 1;
    }
    assert_eq!(reached, [1, 1]);
}

#[test]
fn a_broken_destination_rule_is_reported_and_touches_nothing_else() {
    let api = Api::with_istio();
    let (a, b, c) = (upstream(2), upstream(3), upstream(4));
    two_versions(&api, &a, &b);
    api.apply(fixtures::destination_rule(
        "ns",
        "echo",
        "echo",
        &[("v1", &[("version", "v1")])],
    ));
    // Another service whose rule is broken (a subset without a name).
    api.apply(
        fixtures::service("ns", "other")
            .tcp_port("tcp", 80, "tcp")
            .build(),
    );
    api.apply(slice_of("ns", "other", "other-1", &c, ready));
    let mut broken = fixtures::destination_rule("ns", "other", "other", &[("v1", &[])]);
    broken["spec"]["subsets"][0]
        .as_object_mut()
        .unwrap()
        .remove("name");
    api.apply(broken);
    let mut gw = gateway(&api, &[]);
    let line = gw.wait_log(|v| {
        v["level"] == "WARN"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("DestinationRule ns/other is ignored"))
    });
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("spec.subsets[0].name is missing"),
        "{line}"
    );
    // The good rule's subset, the broken rule's service, and the listener all still work.
    assert_eq!(forwards_to_one_of(&mut gw, &[&a, &b], &sni_of("v1")), 0);
    assert_eq!(
        forwards_to_one_of(&mut gw, &[&c], "outbound_.80_._.other.ns.svc.cluster.local"),
        0
    );
    assert_eq!(gw.admin_get("/healthz/ready").0, 200);
    assert!(
        gw.metric(
            "eastwest_source_errors_total{source=\"west\",resource=\"destinationrules\",kind=\"invalid\"}"
        ) >= 1.0
    );
}

#[test]
fn without_istio_installed_it_routes_and_says_so_once() {
    let api = Api::new();
    let a = upstream(2);
    api.apply(echo_service());
    api.apply(slice("echo-a", &a, ready));
    let mut gw = gateway(&api, &[]);
    assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);
    let said = gw
        .seen
        .iter()
        .filter(|v| {
            v["resource"] == "destinationrules"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("not served"))
        })
        .count();
    assert_eq!(
        said, 2,
        "one line per DestinationRule version (v1, v1beta1)"
    );
    assert!(
        !gw.seen
            .iter()
            .any(|v| v["level"] == "WARN" && v["resource"] == "destinationrules"),
        "a missing Istio CRD is not a warning"
    );
}

#[test]
fn a_resource_unreadable_again_after_it_was_read_is_said_again() {
    let api = Api::new();
    let a = upstream(2);
    api.apply(echo_service());
    api.apply(slice("echo-a", &a, ready));
    // Nodes are the resource the gateway does without when RBAC refuses them.
    api.server.forbid("nodes", "list").unwrap();
    let mut gw = gateway(&api, &[]);
    let not_readable = |v: &Value| {
        v["resource"] == "nodes"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("not readable"))
    };
    if !gw.seen.iter().any(not_readable) {
        gw.wait_log(not_readable);
    }
    // Allowed: listed (the watcher's list comes before its watch on the same stream, so the
    // gateway has seen it readable by the time the watch fails), then refused again.
    api.server.allow_all();
    api.wait_requests(1, |r| r.is_open_watch_of("nodes"));
    api.server.forbid("nodes", "watch").unwrap();
    api.server.drop_watches();
    gw.wait_log(not_readable);
    assert_eq!(forwards_to_one_of(&mut gw, &[&a], SNI), 0);
}

#[test]
fn istio_mtls_only_refuses_non_istio_alpn_and_skips_plaintext_pods() {
    let api = Api::new();
    let (a, b) = (upstream(2), upstream(3));
    api.apply(echo_service());
    // a: a pod with the sidecar injector's label; b: a pod without a sidecar.
    for (pod, up, labels) in [
        (
            "echo-mesh",
            &a,
            &[("app", "echo"), ("security.istio.io/tlsMode", "istio")][..],
        ),
        ("echo-plain", &b, &[("app", "echo")][..]),
    ] {
        let ip = up.addr().ip().to_string();
        api.apply(fixtures::pod("ns", pod, labels, &ip));
        api.apply(slice(pod, up, |e| e.pod(pod)));
    }
    let mut gw = gateway(&api, &["--istio-mtls-only"]);
    assert!(
        !routes(&gw).contains(&b.addr().to_string()),
        "{}",
        routes(&gw)
    );
    let istio = support::rustls_client_hello_with_alpn(SNI, vec![b"istio".to_vec()]);
    for _ in 0..3 {
        let mut client = support::connect(gw.addr());
        std::io::Write::write_all(&mut client, &istio).unwrap();
        let (i, _) = Upstream::accept_any(&[&a, &b]);
        assert_eq!(i, 0, "only the pod with Istio mTLS");
        gw.wait_access();
    }
    for alpn in [vec![], vec![b"h2".to_vec(), b"http/1.1".to_vec()]] {
        let hello = support::rustls_client_hello_with_alpn(SNI, alpn);
        assert_refused(&mut gw, "not_istio_mtls", |c| {
            send_tolerating_close(c, &hello)
        });
    }
    assert_eq!(
        gw.metric("eastwest_connections_refused_total{listener=\"tls\",reason=\"not_istio_mtls\"}"),
        2.0
    );
    a.assert_no_connection("refused hellos reach no pod");
    b.assert_no_connection("the plaintext pod gets nothing");
}

#[test]
fn a_statefulset_pod_of_a_headless_service_is_reachable_by_its_own_name() {
    let api = Api::new();
    let (a, b) = (upstream(2), upstream(3));
    api.apply(
        fixtures::service("ns", "db")
            .headless()
            .tcp_port("tcp", 80, "tcp")
            .build(),
    );
    for (pod, up) in [("db-0", &a), ("db-1", &b)] {
        api.apply(slice_of("ns", "db", pod, up, |e| e.hostname(pod).pod(pod)));
    }
    let mut gw = gateway(&api, &[]);
    for _ in 0..2 {
        assert_eq!(
            forwards_to_one_of(
                &mut gw,
                &[&a, &b],
                "outbound_.80_._.db-1.db.ns.svc.cluster.local"
            ),
            1
        );
        assert_eq!(
            forwards_to_one_of(
                &mut gw,
                &[&a, &b],
                "outbound_.80_._.db-0.db.ns.svc.cluster.local"
            ),
            0
        );
    }
    // The Service name still balances over both.
    let mut reached = [0; 2];
    for _ in 0..2 {
        reached[forwards_to_one_of(
            &mut gw,
            &[&a, &b],
            "outbound_.80_._.db.ns.svc.cluster.local",
        )] += 1;
    }
    assert_eq!(reached, [1, 1]);
}

#[test]
fn a_fixed_passthrough_listener_sends_any_tls_to_istiod() {
    let api = Api::new();
    let (istiod, mesh) = (upstream(2), upstream(3));
    api.apply(
        fixtures::service("istio-system", "istiod")
            .tcp_port("grpc-xds", 15012, 15012)
            .build(),
    );
    // istiod has no sidecar: no tlsMode label, yet the fixed listener must reach it.
    api.apply(fixtures::pod(
        "istio-system",
        "istiod-1",
        &[("app", "istiod")],
        "127.0.0.2",
    ));
    api.apply(
        fixtures::endpoint_slice("istio-system", "istiod", "istiod-1")
            .endpoint(Endpoint::new("127.0.0.2").pod("istiod-1"))
            .tcp_port("grpc-xds", istiod.addr().port())
            .build(),
    );
    api.apply(echo_service());
    api.apply(slice("echo-a", &mesh, |e| e.pod("echo-plain")));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eastwest.yaml");
    std::fs::write(
        &config,
        "listeners:\n  - name: tls\n    listen: 127.0.0.1:0\n  - name: istiod-xds\n    \
         listen: 127.0.0.1:0\n    forward_to: istiod.istio-system.svc.cluster.local:15012\n",
    )
    .unwrap();
    let path = api.kubeconfig.to_str().unwrap();
    let mut gw = Gateway::start(&[
        "--config",
        config.to_str().unwrap(),
        "--kubeconfig",
        path,
        "--istio-mtls-only",
    ]);
    gw.wait_log(|v| v["message"] == "initial sync complete; route table loaded");
    let listeners = gw.listen.clone();
    gw.listen = vec![listeners[1]];
    // No SNI (an IP name), another SNI, a non-Istio ALPN: all reach istiod.
    for hello in [
        support::rustls_client_hello_with_alpn("127.0.0.1", vec![b"h2".to_vec()]),
        support::rustls_client_hello_with_alpn("istiod.istio-system.svc", vec![b"h2".to_vec()]),
        support::rustls_client_hello(SNI),
    ] {
        let mut client = support::connect(gw.addr());
        std::io::Write::write_all(&mut client, &hello).unwrap();
        let mut up = istiod.accept();
        let mut got = vec![0; hello.len()];
        std::io::Read::read_exact(&mut up, &mut got).unwrap();
        assert_eq!(got, hello, "istiod gets the hello untouched");
        drop((client, up));
        let line = gw.wait_access();
        assert_eq!(line["listener"], "istiod-xds", "{line}");
    }
    // Not TLS at all is still refused.
    assert_refused(&mut gw, "not_tls", |c| {
        send_tolerating_close(c, b"GET / HTTP/1.1\r\n\r\n")
    });
    // The mesh listener keeps its rules: the echo pod has no sidecar, so no endpoint.
    gw.listen = vec![listeners[0]];
    refused(&mut gw, "no_ready_endpoint");
    mesh.assert_no_connection("a plaintext pod behind --istio-mtls-only");
}

/// The whole mesh path with real mutual TLS: a sidecar-like east client calls subset v2 of
/// west's service through the gateway (learning its routes from the API, `--istio-mtls-only`),
/// the v2 replica answers with the caller's own SPIFFE ID, and v1 never sees the call.
#[test]
fn real_mtls_to_a_subset_keeps_the_callers_identity() {
    use eastwest::world::{Backend, Client};
    use eastwest_certs::{Ca, istio_spiffe_id, server_config};

    let root = Ca::new_root("eastwest-tests").unwrap();
    let (east, west) = (
        root.intermediate("east").unwrap(),
        root.intermediate("west").unwrap(),
    );
    let host = "echo.ns.svc.cluster.local";
    let server = west
        .workload(&istio_spiffe_id("cluster.local", "ns", "echo"), &[host])
        .unwrap();
    let caller_id = istio_spiffe_id("cluster.local", "east", "sleep");
    let caller = east.workload(&caller_id, &[]).unwrap();
    let api = Api::with_istio();
    let cfg = server_config(&server, server.root_store()).unwrap();
    let replicas = api.rt.block_on(async {
        [
            Backend::start("echo-v1", cfg.clone()).await.unwrap(),
            Backend::start("echo-v2", cfg).await.unwrap(),
        ]
    });
    api.apply(echo_service());
    for (version, backend) in [("v1", &replicas[0]), ("v2", &replicas[1])] {
        let pod = format!("echo-{version}");
        api.apply(fixtures::pod(
            "ns",
            &pod,
            &[("version", version), ("security.istio.io/tlsMode", "istio")],
            "127.0.0.1",
        ));
        api.apply(
            fixtures::endpoint_slice("ns", "echo", &pod)
                .endpoint(Endpoint::new("127.0.0.1").pod(&pod))
                .tcp_port("tcp", backend.addr.port())
                .build(),
        );
    }
    api.apply(fixtures::destination_rule(
        "ns",
        "echo",
        "echo",
        &[("v1", &[("version", "v1")]), ("v2", &[("version", "v2")])],
    ));
    let gw = gateway(&api, &["--istio-mtls-only"]);
    let client = Client::new(&caller, host).unwrap();
    for _ in 0..3 {
        let reply = api
            .rt
            .block_on(client.call(gw.addr(), &sni_of("v2"), b"ping"))
            .unwrap();
        assert_eq!(reply.replica, "echo-v2");
        assert_eq!(reply.caller, caller_id, "the gateway did not terminate TLS");
    }
    assert_eq!(replicas[0].served(), 0);
    assert_eq!(replicas[1].served(), 3);
}
