//! The admin HTTP server (Istio's status port, 15021): readiness, Prometheus metrics and a
//! route dump. It runs on the control runtime, never on a data-path worker, so a scrape cannot
//! delay forwarding.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::backoff::Backoff;
use crate::clock;
use crate::metrics::Metrics;
use crate::routes::Routes;
use crate::server::Lifecycle;

/// What the admin endpoints read.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// Every route source, each once (listeners may share one).
    pub sources: Vec<NamedRoutes>,
    pub lifecycle: Arc<Lifecycle>,
    /// The effective configuration as JSON, for `/debug/config` (made by whoever started us).
    pub config_json: String,
}

/// A route source's snapshots under the name logs and `/debug/routes` use (a cluster ID, or
/// `file`/`static`).
pub struct NamedRoutes {
    pub name: String,
    pub routes: Arc<Routes>,
}

/// Serves admin requests on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    serve_with(listener, state, route).await
}

/// Serves only the metrics (`/stats/prometheus`, `/metrics`) on `listener`, as Envoy's 15090
/// does for Prometheus scrape configs that expect it there.
pub async fn serve_stats(listener: TcpListener, state: Arc<AdminState>) {
    serve_with(listener, state, |req, state| {
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        }
        match req.uri().path() {
            "/stats/prometheus" | "/metrics" => metrics(state),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /stats/prometheus\n".into(),
            ),
        }
    })
    .await
}

type Router = fn(&Request<Incoming>, &AdminState) -> Response<Full<Bytes>>;

async fn serve_with(listener: TcpListener, state: Arc<AdminState>, router: Router) {
    let mut backoff = Backoff::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => {
                backoff.reset();
                s
            }
            Err(e) => {
                let pause = backoff.next();
                tracing::warn!("admin accept failed: {e}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(router(&req, &state)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds the admin address; the error names it.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on admin address {addr}: {e}"),
        )
    })
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn route(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/healthz/ready" => {
            let (status, body) = readiness(state);
            text(status, body)
        }
        "/healthz/live" => text(StatusCode::OK, "live\n".into()),
        "/stats/prometheus" | "/metrics" => metrics(state),
        "/debug/routes" => text(StatusCode::OK, dump_routes(state)),
        "/debug/clusters" => {
            let json = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "format=json"));
            let mut r = text(StatusCode::OK, dump_clusters(state, json));
            if json {
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
            }
            r
        }
        "/debug/config" => {
            let mut r = text(StatusCode::OK, format!("{}\n", state.config_json));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz/ready, /stats/prometheus, /debug/routes, /debug/clusters, \
             /debug/config\n"
                .into(),
        ),
    }
}

/// 200 once every listener is accepting and every route source has published; 503 before that
/// and while draining.
fn readiness(state: &AdminState) -> (StatusCode, String) {
    let lc = &state.lifecycle;
    if lc.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    if !lc.serving.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "listeners not ready\n".into(),
        );
    }
    let waiting: Vec<&str> = state
        .sources
        .iter()
        .filter(|s| !s.routes.is_loaded())
        .map(|s| s.name.as_str())
        .collect();
    if !waiting.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no route snapshot loaded yet from: {}\n",
                waiting.join(", ")
            ),
        );
    }
    (StatusCode::OK, "ready\n".into())
}

/// Our metrics, then Istio's standard TCP metrics, in one OpenMetrics exposition.
fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    refresh_route_gauges(state);
    let mut body = state.metrics.encode();
    let istio = istio_tcp_metrics(state);
    match body.rfind("# EOF") {
        Some(end) => body.insert_str(end, &istio),
        None => body.push_str(&istio),
    }
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    r
}

/// Istio's standard TCP metrics (`istio_tcp_connections_opened_total`, `…_closed_total`,
/// `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`) per route, with the labels
/// a gateway knows: `reporter="source"` (as Istio's gateways report), the destination service
/// (full name, name, namespace), cluster (the route source), port and subset. Read from the
/// routes' own atomics at scrape time, so the data path never touches a label map.
fn istio_tcp_metrics(state: &AdminState) -> String {
    const FAMILIES: [(&str, &str); 4] = [
        (
            "istio_tcp_connections_opened",
            "Connections opened to the destination",
        ),
        (
            "istio_tcp_connections_closed",
            "Connections to the destination closed",
        ),
        (
            "istio_tcp_sent_bytes",
            "Bytes sent to the client (responses)",
        ),
        (
            "istio_tcp_received_bytes",
            "Bytes received from the client (requests)",
        ),
    ];
    let mut rows: [Vec<String>; 4] = Default::default();
    for source in &state.sources {
        let Some(t) = source.routes.load_full() else {
            continue;
        };
        for (host, route) in t.iter() {
            let (name, namespace) = match host.split_once('.') {
                Some((name, rest)) if rest.contains(".svc.") => {
                    (name, rest.split('.').next().unwrap_or("unknown"))
                }
                _ => (host, "unknown"),
            };
            let labels = format!(
                "reporter=\"source\",destination_service=\"{host}\",destination_service_name=\"{name}\",\
                 destination_service_namespace=\"{namespace}\",destination_cluster=\"{}\",\
                 destination_port=\"{}\",destination_subset=\"{}\"",
                escape(&source.name),
                route.port,
                escape(&route.subset)
            );
            let s = &route.stats;
            let values = [
                s.opened.load(Ordering::Relaxed),
                s.closed.load(Ordering::Relaxed),
                s.sent.load(Ordering::Relaxed),
                s.received.load(Ordering::Relaxed),
            ];
            for (i, v) in values.into_iter().enumerate() {
                rows[i].push(format!("{}_total{{{labels}}} {v}\n", FAMILIES[i].0));
            }
        }
    }
    let mut out = String::new();
    for (i, (family, help)) in FAMILIES.iter().enumerate() {
        rows[i].sort();
        let _ = writeln!(out, "# HELP {family} {help}.");
        let _ = writeln!(out, "# TYPE {family} counter");
        for row in &rows[i] {
            out.push_str(row);
        }
    }
    out
}

/// A label value as the text format wants it.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\\', '"', '\n']) {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        s.into()
    }
}

fn refresh_route_gauges(state: &AdminState) {
    let (mut version, mut routes, mut endpoints) = (0, 0, 0);
    for source in &state.sources {
        if let Some(t) = source.routes.load().as_ref() {
            version = version.max(t.version());
            routes += t.route_count();
            endpoints += t.endpoint_count();
        }
    }
    state.metrics.route_table_version.set(version as i64);
    state.metrics.route_table_routes.set(routes as i64);
    state.metrics.route_table_endpoints.set(endpoints as i64);
    state
        .metrics
        .draining
        .set(state.lifecycle.draining.load(Ordering::Relaxed) as i64);
}

/// A route's endpoint (or `None` for a route with none) as the debug pages show it.
struct Row {
    cluster: String,
    endpoint: Option<(std::net::SocketAddr, bool, u32)>,
    source: String,
}

/// Every route of every source, one row per endpoint, sorted.
fn rows(state: &AdminState) -> Vec<Row> {
    let now = clock::now_ms();
    let mut rows = Vec::new();
    for source in &state.sources {
        let Some(t) = source.routes.load_full() else {
            continue;
        };
        for (host, route) in t.iter() {
            let cluster = format!("outbound|{}|{}|{}", route.port, route.subset, host);
            let row = |endpoint| Row {
                cluster: cluster.clone(),
                endpoint,
                source: source.name.clone(),
            };
            if route.endpoints.is_empty() {
                rows.push(row(None));
            }
            for ep in route.endpoints.iter() {
                rows.push(row(Some((ep.addr, ep.is_ejected(now), ep.active()))));
            }
        }
    }
    rows.sort_by(|a, b| (&a.cluster, a.endpoint).cmp(&(&b.cluster, b.endpoint)));
    rows
}

/// One row per endpoint, as `istioctl proxy-config endpoints` prints them: ENDPOINT, STATUS,
/// OUTLIER CHECK (`FAILED` while ejected), CLUSTER; or (`json`) an array of objects with those
/// fields plus the route source and the active connections.
fn dump_clusters(state: &AdminState, json: bool) -> String {
    let rows: Vec<(Row, std::net::SocketAddr, &str, u32)> = rows(state)
        .into_iter()
        .filter_map(|r| {
            let (addr, ejected, active) = r.endpoint?;
            Some((r, addr, if ejected { "FAILED" } else { "OK" }, active))
        })
        .collect();
    if json {
        let items: Vec<String> = rows
            .iter()
            .map(|(r, endpoint, outlier, active)| {
                format!(
                    "{{\"endpoint\":\"{endpoint}\",\"status\":\"HEALTHY\",\"outlier_check\":\"{outlier}\",\
                     \"cluster\":\"{}\",\"source\":\"{}\",\"active_connections\":{active}}}",
                    json_escape(&r.cluster),
                    json_escape(&r.source)
                )
            })
            .collect();
        return format!("[{}]\n", items.join(","));
    }
    let mut out = format!(
        "{:<40} {:<11} {:<17} CLUSTER\n",
        "ENDPOINT", "STATUS", "OUTLIER CHECK"
    );
    for (r, endpoint, outlier, _) in &rows {
        let _ = writeln!(
            out,
            "{:<40} {:<11} {outlier:<17} {}",
            endpoint.to_string(),
            "HEALTHY",
            r.cluster
        );
    }
    out
}

/// A string as a JSON string body.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `istioctl pc endpoints`-style lines: cluster, endpoint, status, active connections, and the
/// route source it came from.
fn dump_routes(state: &AdminState) -> String {
    let mut out = format!(
        "{:<60} {:<24} {:<8} {:<6} SOURCE\n",
        "CLUSTER", "ENDPOINT", "STATUS", "ACTIVE"
    );
    for r in rows(state) {
        let (endpoint, status, active) = match r.endpoint {
            Some((addr, true, active)) => (addr.to_string(), "EJECTED", active),
            Some((addr, false, active)) => (addr.to_string(), "HEALTHY", active),
            None => ("-".to_string(), "NONE", 0),
        };
        let _ = writeln!(
            out,
            "{:<60} {endpoint:<24} {status:<8} {active:<6} {}",
            r.cluster, r.source
        );
    }
    out
}
